"""Realistic findings rows for the HTML report's tests, made the way a run makes them:
``Outcome.row()`` with a real ``Failure`` over a real history, ``ClaimResult.row()``,
and a harness error."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from model import history as h
from model.config import DeliveryConfig, LockConfig
from properties import claims
from properties.outcome import Failure, Outcome
from properties.scenario import DeliveryScenario, Scenario

LOCK = LockConfig("cookbook-locmem", "prefork", 2)
DELIVERY = DeliveryConfig("redis", "prefork", 2, acks_late=True)
MARKED = 9  # the second ACQUIRED: the step mutual exclusion fails at
LOCK_EVENTS: list[h.Event] = [
    h.Submitted("t1"),
    h.Started("t1", "t1", "w1.c1"),
    h.AcquireBegin("t1", "invoice:o1"),
    h.AcquireEnd("t1", "invoice:o1", True),
    h.Submitted("t2"),
    h.Paused("w1.c1"),
    h.Expired("invoice:o1"),
    h.Started("t2", "t2", "w1.c2"),
    h.AcquireBegin("t2", "invoice:o1"),
    h.AcquireEnd("t2", "invoice:o1", True),
    h.Resumed("w1.c1"),
    h.InvoiceCreated("t1", "o1"),
    h.InvoiceCreated("t2", "o1"),
    h.InvoiceCount("o1", 2),
]
MOVES = ("submit", "step t1", "submit", "pause t1", "expire", "step t2", "resume t1")


def lock_failure() -> Failure:
    scenario = Scenario("mutual-exclusion", LOCK, 2, MOVES)
    run = SimpleNamespace(history=h.History(list(LOCK_EVENTS)))
    lines = [f"#{MARKED} t2 acquired invoice:o1 while t1 holds it"]
    return Failure("invariant violated", scenario, run, lines, [MARKED])


def rows() -> list[dict[str, Any]]:
    violated = Outcome(
        "mutual-exclusion", LOCK, "violated", "violated", 7, 3.25, failure=lock_failure(),
        found_by="search", found_at=4, why="LocMemCache is per process", area="locks",
    )  # fmt: skip
    holds = Outcome(
        "at-least-once", DELIVERY, "holds", "holds", 10, 12.5, why="acks_late", area="delivery"
    )
    events = [h.Submitted("t1"), h.Received("t1", "w1"), h.Killed("w1")]
    scenario = DeliveryScenario("at-least-once", DELIVERY, 1, ("submit", "kill-main t1"))
    mismatch = Outcome(
        "no-lost-message", DELIVERY, "holds", "model mismatch", 2, 0.5, area="delivery",
        failure=Failure("model mismatch", scenario, SimpleNamespace(history=h.History(events)),
                        ["#2 the model expected a redelivery"], [2]),
        found_by="search", found_at=2,
    )  # fmt: skip
    broken = Outcome(
        "exactly-one-invoice", LOCK, "holds", "harness error", 1, 60.0, area="locks",
        error="TimeoutError: w1 did not park\nTimeline:\n     0  -            submit t1",
    )  # fmt: skip
    claim = claims.ClaimResult(
        claims.CLAIMS[0], "redis", "refuted", "acked only after the task returned",
        timeline="     0  -   submit t1\n     1  -   broker: t1 acked", scenario="submit",
    )  # fmt: skip
    return [o.row() for o in (violated, holds, mismatch, broken)] + [claim.row()]
