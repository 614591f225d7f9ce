"""The module-state area: where a value lives, per process or in one shared store.

Hypothesis draws the number of tasks and every move (which operation each task
does, which task runs next, where a process is killed). Each run is checked against
the model first (every read must return what model/state.py allows: a
difference is a *model mismatch*), then against the property's invariant. When the
search finds nothing, the ``Lockstep`` shape runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

from harness.cluster import Cluster
from harness.ordering import natural
from harness.runs.state import OPS, StateRun, StateRunner
from model import history as h
from model import state, state_properties
from model.config import StateConfig
from model.verdict import Prediction
from properties import matrix, profiles
from properties.engine import Area, Found, described
from properties.scenario import StateScenario


class Lockstep:
    """The attack shape played when the search finds nothing: two tasks of the
    property's first operation, stepped in turn one scheduling point at a time (every
    SQL statement and cache command is one), then one task of each other operation.
    Two writes interleaved statement by statement is where a racy set loses one
    (RACY_SET_STORES); the random search reaches it only now and then."""

    def __init__(self, ops: Sequence[str]) -> None:
        self.head = [f"submit {ops[0]}"] * 2
        self.tail = [f"submit {op}" for op in ops[1:]]
        self.last = ""
        self.tasks = len(self.head) + len(self.tail)

    def __call__(self, enabled: list[str]) -> str:
        steps = self._steps(enabled)
        if self.head and self.head[0] in enabled:
            return self.head.pop(0)
        if self.tail and self.tail[0] in enabled and not steps:  # once both are done
            return self.tail.pop(0)
        if steps:
            later = [m for m in steps if natural(m[5:]) > natural(self.last)]
            move = (later or steps)[0]
            self.last = move[5:]
            return move
        return enabled[0]

    @staticmethod
    def _steps(enabled: list[str]) -> list[str]:
        return sorted((m for m in enabled if m.startswith("step ")), key=lambda m: natural(m[5:]))


class StateArea(Area[StateConfig]):
    name = "state"
    digest = "state|"
    line = StateScenario
    config_type = StateConfig
    properties = tuple(state_properties.PROPERTIES)
    tasks = st.integers(min_value=1, max_value=4)

    def runner(self, cluster: Cluster, config: StateConfig, prop: str) -> StateRunner:
        return StateRunner(cluster, config, prop)

    def attacks(
        self, runner: Any, config: StateConfig, prop: str
    ) -> Iterator[tuple[str, StateRun]]:
        shape = Lockstep(OPS[prop])
        yield "lockstep", runner.run(shape.tasks, shape)

    def passed_note(self, attacks: int) -> list[str]:
        return ["the lockstep attack passed too"]

    def predict(self, config: StateConfig, prop: str) -> tuple[Prediction, str]:
        return state_properties.expected_verdict(config, prop), state_properties.why(config, prop)

    def mismatches(self, config: StateConfig, events: Sequence[h.Event]) -> Found:
        return described(state.mismatches(config, events))

    def violations(self, config: StateConfig, prop: str, events: Sequence[h.Event]) -> Found:
        return described(state_properties.violations(config, prop, events))

    def examples(self, config: StateConfig) -> dict[str, int]:
        return profiles.STATE_KILL_EXAMPLES if config.kills else profiles.STATE_EXAMPLES

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, StateConfig]]:
        return matrix.state_cases(matrix_)


AREA = StateArea()
