"""Delivery properties: their invariants and what the model predicts per config.

Every delivery scenario is also checked against the delivery model (model/delivery.py):
a run that differs from it is a *model mismatch*, whatever the property. The
properties add the user-level guarantees on top.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from model import history as h
from model.config import DeliveryConfig
from model.delivery import check_delivery
from model.invariants import Violation
from model.verdict import Prediction

# How a built-in effect behaves when it runs more than once for one order.
#   idempotent:     one statement keyed by the order (ON CONFLICT on a unique key);
#                   any number of runs, in any interleaving, leaves one row.
#   check-then-act: SELECT, then INSERT if absent, in one READ COMMITTED transaction:
#                   safe when runs follow each other, not when two overlap.
#   not-idempotent: INSERT every time.
EffectKind = Literal["idempotent", "check-then-act", "not-idempotent"]
BUILTIN_EFFECTS: dict[str, EffectKind] = {
    "insert-on-conflict": "idempotent",
    "upsert": "idempotent",
    "check-then-insert": "check-then-act",
    "insert-always": "not-idempotent",
}

DeliveryMove = Literal["kill", "vt", "term"]


def no_lost_message(events: Sequence[h.Event]) -> list[Violation]:
    """Every submitted task has a run that returned, once every redelivery has run."""
    ok = {e.execution for e in events if isinstance(e, h.Finished) and e.status == "ok"}
    runs: dict[str, list[str]] = {}
    for e in events:
        if isinstance(e, h.Started):
            runs.setdefault(e.task, []).append(e.execution)
    out = []
    for i, e in enumerate(events):
        if isinstance(e, h.Submitted) and not any(x in ok for x in runs.get(e.task, [])):
            out.append(
                Violation(
                    "no_lost_message",
                    i,
                    (e.task,),
                    f"{e.task} was submitted and never completed: the message is gone",
                )
            )
    return out


def exactly_one_effect(events: Sequence[h.Event]) -> list[Violation]:
    """At most one invoice per order; exactly one if some run's effect committed."""
    done = {e.order for e in events if isinstance(e, h.EffectDone)}
    out = []
    for i, e in enumerate(events):
        if isinstance(e, h.InvoiceCount):
            if e.count > 1:
                out.append(
                    Violation(
                        "exactly_one_effect",
                        i,
                        (),
                        f"order {e.order} has {e.count} invoices after its redeliveries ran",
                    )
                )
            elif e.count == 0 and e.order in done:
                out.append(
                    Violation(
                        "exactly_one_effect",
                        i,
                        (),
                        f"order {e.order} has no invoice although an effect committed",
                    )
                )
    return out


def one_lineage(events: Sequence[h.Event]) -> list[Violation]:
    """A task id never has two live lineages: no run of a message after that message
    already published its retry, and no retry level published twice."""
    out = []
    published: dict[tuple[str, int], str] = {}  # (task, level) -> execution that did
    for i, e in enumerate(events):
        if isinstance(e, h.RetryPublished):
            first = published.setdefault((e.task, e.level), e.execution)
            if first != e.execution:
                out.append(
                    Violation(
                        "one_lineage",
                        i,
                        (first, e.execution),
                        f"{e.execution} published retry {e.level} of {e.task} again "
                        f"({first} already had): two lineages",
                    )
                )
        elif isinstance(e, h.Started) and (e.task, e.level + 1) in published:
            parent = published[(e.task, e.level + 1)]
            out.append(
                Violation(
                    "one_lineage",
                    i,
                    (parent, e.execution),
                    f"{e.execution} runs {e.task}'s retries={e.level} message again after "
                    f"{parent} published its retry: two lineages",
                )
            )
    return out


def model_agrees(config: DeliveryConfig) -> Callable[[Sequence[h.Event]], list[Violation]]:
    def check(events: Sequence[h.Event]) -> list[Violation]:
        return [
            Violation(
                "delivery_model",
                m.index,
                (m.task,),
                f"{m.task}: expected {m.expected}, observed {m.observed}: {m.why}",
            )
            for m in check_delivery(config, events)
        ]

    return check


@dataclass(frozen=True)
class DeliveryProperty:
    name: str
    moves: frozenset[DeliveryMove]
    statement: str

    def check(self, config: DeliveryConfig, events: Sequence[h.Event]) -> list[Violation]:
        if self.name == "at-least-once":
            return no_lost_message(events)
        if self.name == "exactly-one-invoice":
            return exactly_one_effect(events)
        if self.name == "one-lineage":
            return one_lineage(events)
        return []  # "delivery-model": the model check that runs on every property


PROPERTIES: dict[str, DeliveryProperty] = {
    p.name: p
    for p in (
        DeliveryProperty(
            "at-least-once",
            frozenset({"kill"}),
            "no message is lost when a worker process is killed (any single kill)",
        ),
        DeliveryProperty(
            "exactly-one-invoice",
            frozenset({"kill", "vt"}),
            "after every redelivery has run, each order has exactly one invoice",
        ),
        DeliveryProperty(
            "one-lineage",
            frozenset({"kill", "vt"}),
            "a retried task id never has two live lineages",
        ),
        DeliveryProperty(
            "delivery-model",
            frozenset({"kill", "vt"}),
            "executions, redelivered flags and result states are what the delivery "
            "model allows (celery-semantics.md sections 1-5)",
        ),
    )
}


def _rule(config: DeliveryConfig, prop: str) -> tuple[Prediction, str]:
    """Does some scenario with the property's moves break it on ``config``, and why."""
    c = config
    if prop == "delivery-model":
        return "holds", "the model is the reference: any difference is a finding"
    if prop == "at-least-once":
        # Early ack: a run killed mid-task is acked already. acks_late alone: a lost
        # prefork child is acked with FAILURE; a dead main process's messages do come
        # back (AMQP at once, Redis after the visibility timeout).
        if not c.acks_late:
            # ...except on solo, where the early ack waits for the task to return and
            # a kill (of the one process) leaves the message unacked.
            if c.pool == "solo":
                return "holds", (
                    "solo: the early ack waits for the task to return; a killed run comes back"
                )
            return "violated", (
                "early ack: the message is acked when the run starts; a kill loses it"
            )
        if c.pool == "prefork" and not c.reject_on_worker_lost:
            return "violated", (
                "acks_late without reject_on_worker_lost acks a message whose child died"
            )
        return "holds", "acks_late: a killed run's message is requeued or given back"
    if prop == "one-lineage":
        if not c.retries:
            return "holds", "no retries: one message per task"  # no second message
        # A retry is published before the run returns; if its message is then given
        # back (acks_late: a dead worker, a requeue, a visibility timeout; solo: the
        # early ack waits for the return too), the old message runs again next to it.
        if c.acks_late or c.pool == "solo":
            return "violated", (
                "the retry is published before the ack: a fault in between gives the old "
                "message back while the retry runs (celery-semantics.md section 4)"
            )
        # Early ack acks at the start (celery/worker/request.py on_accepted), not at
        # receipt: a retry that waits in the prefetch buffer behind busy slots is
        # unacked, and the visibility timeout gives it back (kombu/transport/redis.py
        # restore_visible). Two copies run; each publishes the next retry if it has
        # one. Found by the full matrix of 2026-12-07 (docs/findings/delivery.md).
        waiting_retry_restored = c.broker == "redis" and c.concurrency >= 2
        if waiting_retry_restored and min(c.retries, c.max_retries) >= 2:
            return "violated", (
                "early ack acks when a run starts: a retry waiting behind busy slots is "
                "unacked, a visibility timeout hands it out again, both copies retry"
            )
        return "holds", (
            "early ack: a run's message is acked before it publishes its retry, and "
            + (
                "no retry is published twice (the copies of the last retry give up)"
                if waiting_retry_restored
                else "a waiting retry comes back only if its holder dies"
            )
        )
    if prop == "exactly-one-invoice":
        kind = BUILTIN_EFFECTS.get(c.effect)
        if kind is None:
            return "unknown", "plug-in effect: the suite reports what it finds"
        if kind == "idempotent":
            return "holds", "idempotent effect: one row whatever runs"
        if not c.acks_late and c.pool != "solo":  # solo acks early ones at return too
            # Early ack never runs a message twice (lost instead: see at-least-once).
            return "holds", "early ack runs each message at most once"
        if kind == "not-idempotent":
            # A kill after the effect, before the ack, runs it again.
            return "violated", (
                "acks_late runs a message again after a kill between its effect and its ack"
            )
        # check-then-act breaks only when two runs overlap: on Redis, a visibility
        # timeout that passes while the first still runs, with a free slot for the copy.
        if c.broker == "redis" and c.concurrency >= 2:
            return "violated", (
                "Redis hands a running message out again when its visibility timeout passes"
            )
        return "holds", (
            "runs of one message never overlap here, so check-then-insert sees the first row"
        )
    raise KeyError(prop)


def expected(config: DeliveryConfig, prop: str) -> Prediction:
    """Does some scenario with the property's moves break it on ``config``?"""
    return _rule(config, prop)[0]


def why(config: DeliveryConfig, prop: str) -> str:
    """The one-line reason for ``expected(config, prop)``, for the findings report."""
    return _rule(config, prop)[1]
