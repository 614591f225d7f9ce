"""The eager twins: the module-state scenarios, and the LocMemCache lock's, run with
``task_always_eager``.

Eager mode has no interleavings to choose: Hypothesis draws the operations only, and
the verdict is compared with the model's eager prediction. An eager row that holds
beside a worker row that is violated is the finding: eager tests cannot show this
bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from harness import eager
from harness.cluster import Cluster
from harness.runs.state import OPS
from model import history as h
from model import lock_properties, state_properties
from model.config import EagerConfig, StateConfig
from model.verdict import Prediction
from properties import matrix, profiles
from properties.engine import Area, Found, described, judge, plain
from properties.outcome import Failure
from properties.scenario import Line, StateScenario

LOCK_TASKS = 3  # eager lock runs: enough for a second and third task to find the lock


@dataclass
class EagerRun:
    """What the engine needs of a run: its moves and history (no runner, no workers)."""

    tasks: int
    moves: list[str]
    history: h.History


def run_eagerly(prop: str, config: EagerConfig, moves: Sequence[str]) -> EagerRun:
    """Play ``moves`` (``submit <op>`` or, for a lock, ``submit``) eagerly."""
    ops = [m.partition(" ")[2] for m in moves]
    if config.kind == "lock":
        history = eager.lock_run(config.target, len(moves))
    else:
        history = eager.state_run(config.target, prop, ops)
    return EagerRun(len(moves), list(moves), history)


class _Eager:
    """The runner of one eager property: the config and property it plays."""

    def __init__(self, config: EagerConfig, prop: str) -> None:
        self.config, self.prop = config, prop


class EagerArea(Area[EagerConfig]):
    name = "eager"
    digest = "state|"
    line = StateScenario
    config_type = EagerConfig
    properties = (*state_properties.PROPERTIES, "mutual-exclusion")

    def runner(self, cluster: Cluster, config: EagerConfig, prop: str) -> _Eager:
        return _Eager(config, prop)

    def draw(self, data: st.DataObject, runner: Any) -> EagerRun:
        config, prop = runner.config, runner.prop
        if config.kind == "lock":
            moves = ["submit"] * data.draw(st.integers(2, LOCK_TASKS), label="tasks")
        else:
            ops = OPS.get(prop, ("",))
            drawn = data.draw(st.lists(st.sampled_from(ops), min_size=1, max_size=4), label="ops")
            moves = [f"submit {op}" for op in drawn]
        return run_eagerly(prop, config, moves)

    def predict(self, config: EagerConfig, prop: str) -> tuple[Prediction, str]:
        if config.kind == "lock":
            return lock_properties.eager_rule()
        return state_properties.eager_verdict(prop), state_properties.eager_why(prop)

    def violations(self, config: EagerConfig, prop: str, events: Sequence[h.Event]) -> Found:
        if config.kind == "lock":
            return plain(lock_properties.PROPERTIES[prop].check(events))
        store = StateConfig("solo", 1, store=config.target)
        return described(state_properties.violations(store, prop, events))

    def examples(self, config: EagerConfig) -> dict[str, int]:
        return profiles.STATE_EXAMPLES

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, EagerConfig]]:
        return matrix.eager_cases(matrix_)

    def replay(
        self, cluster: Cluster, scenario: Line[EagerConfig], offered: list[list[str]] | None = None
    ) -> tuple[Any, Failure | None]:
        # Inline runs: no enabled sets, nothing for ``offered``.
        run = run_eagerly(scenario.prop, scenario.config, scenario.moves)
        return run, judge(self, scenario.prop, scenario.config, run)


AREA = EagerArea()
