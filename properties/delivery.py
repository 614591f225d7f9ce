"""Hypothesis searches a delivery property of one config, on real workers and brokers.

The same loop as the lock search (properties/search.py): Hypothesis draws the number
of tasks, then every move from what the delivery runner offers; every run is checked
against the delivery model first (a difference is a *model mismatch*), then against
the property's invariant.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from harness.cluster import Cluster
from harness.runs.delivery import DeliveryRun, DeliveryRunner
from model import history as h
from model.config import DeliveryConfig
from model.delivery import check_delivery
from model.delivery_properties import PROPERTIES, expected, why
from properties import profiles
from properties.scenario import DeliveryScenario
from properties.search import (
    Failure,
    Outcome,
    ReplayDiverged,
    Tally,
    hypothesis_test,
    schedule,
    verdict_of,
)
from properties.timeline import render

TASKS = st.integers(min_value=1, max_value=3)


def judge(prop: str, config: DeliveryConfig, run: DeliveryRun) -> Failure | None:
    scenario = DeliveryScenario(prop, config, run.tasks, tuple(run.moves))
    events: Sequence[h.Event] = run.history.events
    crashed = [
        (i, e) for i, e in enumerate(events) if isinstance(e, h.Finished) and e.status == "error"
    ]
    if crashed:  # the effect itself failed: neither Celery nor the effect is judged
        lines = [f"#{i} {e.execution} raised {e.error}" for i, e in crashed]
        return Failure("task error", scenario, run, lines, [i for i, _ in crashed])
    mismatches = check_delivery(config, events)
    if mismatches:
        lines = [
            f"#{m.index} {m.task}: expected {m.expected}, observed {m.observed}: {m.why}"
            for m in mismatches
        ]
        return Failure("model mismatch", scenario, run, lines, [m.index for m in mismatches])
    violations = PROPERTIES[prop].check(config, events)
    if violations:
        lines = [f"#{v.index} {v.message}" for v in violations]
        return Failure("invariant violated", scenario, run, lines, [v.index for v in violations])
    return None


def _first_failure(exc: BaseException) -> str:
    """What failed first when Hypothesis could not make a failure happen again
    (FlakyFailure): the original error, with the timeline of the run that raised it."""
    subs = getattr(exc, "exceptions", None)
    if not subs:
        return ""
    first = subs[0]
    detail = first.report() if isinstance(first, Failure) else f"{type(first).__name__}: {first}"
    detail += "".join(f"\n{note}" for note in getattr(first, "__notes__", []))
    return f"\nThe first run failed with: {detail}"


def search(cluster: Cluster, config: DeliveryConfig, prop: str) -> Outcome:
    runner = DeliveryRunner(cluster, config, frozenset(PROPERTIES[prop].moves))

    def one(data: st.DataObject) -> None:
        try:
            run = runner.run(data.draw(TASKS, label="tasks"), schedule(data))
        except Exception as exc:  # kept for the report if a replay does not repeat it
            exc.add_note("Timeline:\n" + render(cluster.controller.history.events))
            raise
        failure = judge(prop, config, run)
        if failure is not None:
            raise failure

    prediction = expected(config, prop)
    tally = Tally()
    test = hypothesis_test(
        one, f"delivery|{prop}|{config.label()}", profiles.DELIVERY_EXAMPLES, tally,
        shrink=profiles.shrink_seconds(prediction, delivery=True),
    )  # fmt: skip
    started = time.monotonic()

    def outcome(verdict: str, **kw: Any) -> Outcome:
        return Outcome(
            prop, config, prediction, verdict, tally.calls, time.monotonic() - started,
            why=why(config, prop), **kw,
        )  # fmt: skip

    try:
        test()
    except Failure as failure:
        return outcome(
            verdict_of(failure), failure=failure, found_by="search",
            found_at=tally.first_failure,
        )  # fmt: skip
    except Exception as exc:  # a harness error is a verdict too, never a pass
        where = render(cluster.controller.history.events)
        first = _first_failure(exc)
        return outcome(
            "harness error", error=f"{type(exc).__name__}: {exc}{first}\nTimeline:\n{where}"
        )
    searched = tally.calls
    try:
        for name, tasks, attack in attacks(config, prop):
            tally.calls += 1
            run = runner.run(tasks, attack)
            if (found := judge(prop, config, run)) is not None:
                return outcome(
                    verdict_of(found), failure=found,
                    found_by=f"attack: {name}",
                    notes=[f"the random search found no counterexample in {searched} examples"],
                )  # fmt: skip
    except Exception as exc:
        where = render(cluster.controller.history.events)
        return outcome("harness error", error=f"attacks: {type(exc).__name__}: {exc}\n{where}")
    return outcome("holds", notes=[f"{tally.calls - searched} attack shapes passed too"])


class Attack:
    """A generic schedule shape, played when the random search finds nothing: it
    names moves by role (the first task, its redelivery), never an effect's SQL.

    ``head`` is played as far as its moves are enabled; then the steps go round-robin
    over the live executions (``interleave``) or to the lowest one, to the end."""

    def __init__(self, name: str, head: list[str], interleave: bool) -> None:
        self.name, self.head, self.interleave = name, head, interleave
        self._last = ""

    def __call__(self, enabled: list[str]) -> str:
        while self.head:
            move = self.head.pop(0)
            if move in enabled:
                return move
        steps = [m for m in enabled if m.startswith("step")]
        if not steps:
            calm = [m for m in enabled if m == "submit"]
            return calm[0] if calm else enabled[0]
        if self.interleave and len(steps) > 1:
            later = [m for m in steps if m > self._last]
            self._last = (later or steps)[0]
            return self._last
        return steps[0]


def attacks(config: DeliveryConfig, prop: str) -> list[tuple[str, int, Attack]]:
    """Shapes for the deep cases: two runs of one message overlapping at every
    point (a visibility timeout while the first runs), and a kill at each point of
    the first run (child and main), retried or not."""
    shapes: list[tuple[str, int, Attack]] = []
    moves = PROPERTIES[prop].moves
    for k in range(1, 5):
        if "vt" in moves and config.broker == "redis":
            head = ["submit", *["step t1"] * k, "vt"]
            shapes.append((f"overlap after {k} steps", 1, Attack("overlap", head, True)))
        if "kill" in moves:
            for kill in ("kill t1", "kill-main t1"):
                head = ["submit", *["step t1"] * k, kill, "vt"]
                shapes.append((f"{kill} after {k} steps", 1, Attack(kill, head, False)))
    return shapes


def replay(cluster: Cluster, scenario: DeliveryScenario) -> tuple[DeliveryRun, Failure | None]:
    """Run exactly the scenario's moves; a move that is not enabled is a divergence."""
    runner = DeliveryRunner(cluster, scenario.config, frozenset(PROPERTIES[scenario.prop].moves))
    queue = list(scenario.moves)

    def choose(enabled: list[str]) -> str:
        if not queue:
            calm = [m for m in enabled if m == "submit" or m.startswith("step")]
            return calm[0] if calm else enabled[0]
        move = queue.pop(0)
        if move not in enabled:
            raise ReplayDiverged(f"move {move!r} is not enabled; enabled: {enabled}")
        return move

    run = runner.run(scenario.tasks, choose)
    return run, judge(scenario.prop, scenario.config, run)
