"""Where state lives: Hypothesis searches the module-state properties on real workers,
and the same scenarios under ``task_always_eager``.

The loop of properties/search.py: Hypothesis draws the number of tasks and every move
(which operation each task does, which task runs next). Each run is checked against
the model first (every read must return what model/module_state.py allows: a
difference is a *model mismatch*), then against the property's invariant.

Eager mode has no interleavings to choose: Hypothesis draws the operations only, and
the verdict is compared with ``eager_verdict``. An eager row that holds beside a
worker row that is violated is the finding: eager tests cannot show this bug.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from harness import eager
from harness.cluster import Cluster
from harness.ordering import natural
from harness.runs.publish import PublishRunner
from harness.runs.state import OPS, StateRun, StateRunner
from model import expectations
from model import history as h
from model import module_state as ms
from model import publishing as pub
from properties import profiles
from properties.scenario import Line, split_moves
from properties.search import (
    Failure,
    Outcome,
    ReplayDiverged,
    Tally,
    hypothesis_test,
    schedule,
    verdict_of,
)

TASKS = st.integers(min_value=1, max_value=4)
PUBLISH_TASKS = st.integers(min_value=1, max_value=2)
LOCK_TASKS = 3  # eager lock runs: enough for a second and third task to find the lock


@dataclass(frozen=True)
class EagerConfig:
    """A scenario run with ``task_always_eager``: ``kind`` state (``target`` a store) or
    lock (``target`` a built-in lock)."""

    kind: str
    target: str

    def label(self) -> str:
        return f"eager/{self.target}"

    def as_dict(self) -> dict[str, object]:
        return {"eager": True, self.kind if self.kind == "lock" else "store": self.target}


Config = ms.StateConfig | EagerConfig | pub.PublishConfig

_LINE = re.compile(
    r"(?P<prop>\S+) (?P<mode>state|eager|publish) (?P<label>\S+) tasks=(?P<n>\d+):(?P<m>.*)"
)


@dataclass(frozen=True)
class StateScenario(Line[Config]):
    """``read-your-writes-across-tasks state prefork/c2 tasks=2: submit write; ...``; the
    eager form has ``eager`` and a store or lock in place of ``state`` and a config; the
    publishing form ``task-finds-its-row publish in-transaction/prefork/c2 tasks=1: ...``."""

    def head(self) -> str:
        c = self.config
        mode, label = (
            ("eager", c.target)
            if isinstance(c, EagerConfig)
            else ("publish", c.label())
            if isinstance(c, pub.PublishConfig)
            else ("state", c.label())
        )
        return f"{self.prop} {mode} {label}"

    @classmethod
    def decode(cls, text: str) -> StateScenario:
        m = _LINE.fullmatch(text.strip())
        if not m:
            raise ValueError(
                "a state scenario reads '<property> state <config> tasks=<n>: <move>; ...' "
                "or '<property> eager|publish <store, lock or config> tasks=<n>: ...', "
                f"got {text!r}"
            )
        config: Config
        if m["mode"] == "state":
            config = ms.parse_label(m["label"])
        elif m["mode"] == "publish":
            config = pub.parse_label(m["label"])
        elif m["prop"] in expectations.PROPERTIES:
            config = EagerConfig("lock", m["label"])
        else:
            config = EagerConfig("state", m["label"])
        return cls(m["prop"], config, int(m["n"]), split_moves(m["m"]))


@dataclass
class _Run:
    """What a Failure needs of a run: its history (eager runs have no runner)."""

    history: h.History
    moves: list[str]


def judge(prop: str, config: Config, run: Any) -> Failure | None:
    scenario = StateScenario(prop, config, run.tasks, tuple(run.moves))
    events: Sequence[h.Event] = run.history.events
    crashed = [
        (i, e) for i, e in enumerate(events) if isinstance(e, h.Finished) and e.status == "error"
    ]
    if crashed:
        lines = [f"#{i} {e.execution} raised {e.error}" for i, e in crashed]
        return Failure("task error", scenario, run, lines, [i for i, _ in crashed])
    if isinstance(config, pub.PublishConfig):
        wrong_ = pub.mismatches(config, events)
        if wrong_:
            lines = [v.describe() for v in wrong_]
            return Failure("model mismatch", scenario, run, lines, [v.index for v in wrong_])
        seen = pub.violations(events)
        if seen:
            lines = [v.describe() for v in seen]
            return Failure("invariant violated", scenario, run, lines, [v.index for v in seen])
        return None
    if isinstance(config, EagerConfig) and config.kind == "lock":
        found = expectations.PROPERTIES[prop].check(events)
        if found:
            lines = [f"#{v.index} {v.message}" for v in found]
            return Failure("invariant violated", scenario, run, lines, [v.index for v in found])
        return None
    if isinstance(config, ms.StateConfig):
        wrong = ms.mismatches(config, events)
        if wrong:
            lines = [v.describe() for v in wrong]
            return Failure("model mismatch", scenario, run, lines, [v.index for v in wrong])
        found_ = ms.violations(config, prop, events)
    else:
        found_ = ms.violations(ms.StateConfig("solo", 1, store=config.target), prop, events)
    if found_:
        lines = [v.describe() for v in found_]
        return Failure("invariant violated", scenario, run, lines, [v.index for v in found_])
    return None


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


def _search(
    prop: str,
    config: Config,
    expected: str,
    why: str,
    one: Callable[[st.DataObject], None],
    attack: Callable[[], Failure | None] | None = None,
) -> Outcome:
    started = time.monotonic()
    tally = Tally()

    def outcome(verdict: str, **kw: Any) -> Outcome:
        seconds = time.monotonic() - started
        return Outcome(prop, config, expected, verdict, tally.calls, seconds, why=why, **kw)

    try:
        kills = getattr(config, "kills", False)
        examples = profiles.STATE_KILL_EXAMPLES if kills else profiles.STATE_EXAMPLES
        hypothesis_test(
            one, f"state|{prop}|{config.label()}", examples, tally,
            shrink=profiles.shrink_seconds(expected),
        )()  # fmt: skip
    except Failure as failure:
        return outcome(
            verdict_of(failure), failure=failure, found_by="search",
            found_at=tally.first_failure,
        )  # fmt: skip
    except Exception as exc:  # a harness error is a verdict too, never a pass
        return outcome("harness error", error=f"{type(exc).__name__}: {exc}")
    if attack is None:
        return outcome("holds")
    searched = tally.calls
    try:
        tally.calls += 1
        found = attack()
    except Exception as exc:
        return outcome("harness error", error=f"lockstep attack: {type(exc).__name__}: {exc}")
    if found is not None:
        return outcome(
            verdict_of(found), failure=found, found_by="attack: lockstep",
            notes=[f"the random search found no counterexample in {searched} examples"],
        )  # fmt: skip
    return outcome("holds", notes=["the lockstep attack passed too"])


def search(cluster: Cluster, config: ms.StateConfig, prop: str) -> Outcome:
    """Search ``prop`` on a real worker for ``config``."""
    runner = StateRunner(cluster, config, prop)

    def one(data: st.DataObject) -> None:
        run = runner.run(data.draw(TASKS, label="tasks"), schedule(data))
        if (failure := judge(prop, config, run)) is not None:
            raise failure

    def lockstep() -> Failure | None:
        shape = Lockstep(OPS[prop])
        return judge(prop, config, runner.run(shape.tasks, shape))

    expected = ms.expected_verdict(config, prop)
    return _search(prop, config, expected, ms.why(config, prop), one, lockstep)


def search_publish(cluster: Cluster, config: pub.PublishConfig) -> Outcome:
    """Search ``task-finds-its-row`` on a real worker, the sender's transaction in this
    process."""
    runner = PublishRunner(cluster, config)

    def one(data: st.DataObject) -> None:
        run = runner.run(data.draw(PUBLISH_TASKS, label="tasks"), schedule(data))
        if (failure := judge(pub.PROPERTY, config, run)) is not None:
            raise failure

    expected = pub.expected_verdict(config)
    return _search(pub.PROPERTY, config, expected, pub.why(config), one)


def eager_run(prop: str, config: EagerConfig, moves: Sequence[str]) -> Any:
    """Play ``moves`` (``submit <op>`` or, for a lock, ``submit``) eagerly."""
    ops = [m.partition(" ")[2] for m in moves]
    if config.kind == "lock":
        history = eager.lock_run(config.target, len(moves))
    else:
        history = eager.state_run(config.target, prop, ops)
    run = _Run(history, list(moves))
    run.tasks = len(moves)  # type: ignore[attr-defined]
    return run


def search_eager(config: EagerConfig, prop: str) -> Outcome:
    """Search ``prop`` with ``task_always_eager`` (no workers)."""
    ops = OPS.get(prop, ("",))

    def one(data: st.DataObject) -> None:
        if config.kind == "lock":
            moves = ["submit"] * data.draw(st.integers(2, LOCK_TASKS), label="tasks")
        else:
            drawn = data.draw(st.lists(st.sampled_from(ops), min_size=1, max_size=4), label="ops")
            moves = [f"submit {op}" for op in drawn]
        run = eager_run(prop, config, moves)
        if (failure := judge(prop, config, run)) is not None:
            raise failure

    if config.kind == "lock":
        why = (
            "task_always_eager: each task runs inline to its end before the next is sent "
            "(celery/app/task.py apply), so no two ever hold the lock at once, whatever "
            "the lock"
        )
    else:
        why = ms.eager_why(prop)
    return _search(prop, config, "holds", why, one)


def replay(cluster: Cluster, scenario: StateScenario) -> tuple[Any, Failure | None]:
    config = scenario.config
    if isinstance(config, EagerConfig):
        run = eager_run(scenario.prop, config, scenario.moves)
        return run, judge(scenario.prop, config, run)
    runner = (
        PublishRunner(cluster, config)
        if isinstance(config, pub.PublishConfig)
        else StateRunner(cluster, config, scenario.prop)
    )
    queue = list(scenario.moves)

    def choose(enabled: list[str]) -> str:
        if not queue:
            return next(m for m in enabled if m.startswith(("submit", "step", "commit")))
        move = queue.pop(0)
        if move not in enabled:
            raise ReplayDiverged(f"move {move!r} is not enabled; enabled: {enabled}")
        return move

    state_run: StateRun = runner.run(scenario.tasks, choose)
    return state_run, judge(scenario.prop, config, state_run)
