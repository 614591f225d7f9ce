"""The delivery model and the delivery properties, on hand-written histories."""

from __future__ import annotations

import pytest

from model import history as h
from model.config import DeliveryConfig
from model.delivery import DeliveryModel, check_delivery
from model.delivery_properties import (
    BUILTIN_EFFECTS,
    PROPERTIES,
    exactly_one_effect,
    expected,
    no_lost_message,
    one_lineage,
    why,
)


def cfg(broker: str = "redis", ack: str = "late", pool: str = "prefork") -> DeliveryConfig:
    return DeliveryConfig(
        broker,  # type: ignore[arg-type]
        pool,  # type: ignore[arg-type]
        1 if pool == "solo" else 2,
        acks_late=ack != "early",
        reject_on_worker_lost=ack == "late+requeue",
        track_started=True,
    )


def run(x: str, proc: str, redelivered: bool = False) -> list[h.Event]:
    """A delivery to ``proc``'s worker and its start."""
    task = x.split("#")[0]
    worker = proc.split(".")[0]
    return [
        h.Received(task, worker, redelivered),
        h.StateWritten(task, "STARTED"),
        h.Started(x, task, proc, redelivered),
    ]


def ok(x: str) -> list[h.Event]:
    task = x.split("#")[0]
    return [h.Finished(x, "ok"), h.StateWritten(task, "SUCCESS")]


def explain(config: DeliveryConfig, events: list[h.Event]) -> list[str]:
    return [f"{m.task}: {m.expected} / {m.observed}" for m in check_delivery(config, events)]


# --- a pool child killed mid-run ---------------------------------------------------------


def test_early_ack_child_kill_is_lost_with_failure() -> None:
    events = [
        h.Submitted("t1"), *run("t1", "w1.c1"), h.Killed("w1.c1"),
        h.StateWritten("t1", "FAILURE"), h.FinalState("t1", "FAILURE"),
    ]  # fmt: skip
    assert explain(cfg(ack="early"), events) == []
    assert [v.executions for v in no_lost_message(events)] == [("t1",)]


def test_late_ack_child_kill_is_acked_with_failure_not_redelivered() -> None:
    events = [
        h.Submitted("t1"), *run("t1", "w1.c1"), h.Killed("w1.c1"),
        h.StateWritten("t1", "FAILURE"), h.FinalState("t1", "FAILURE"),
    ]  # fmt: skip
    assert explain(cfg(ack="late"), events) == []
    # A redelivery there would contradict the model.
    again = [*events[:-1], *run("t1#2", "w1.c2", True), *ok("t1#2")]
    assert explain(cfg(ack="late"), again)


def test_reject_on_worker_lost_requeues_and_must_come_back() -> None:
    lost = [
        h.Submitted("t1"),
        *run("t1", "w1.c1"),
        h.Killed("w1.c1"),
        h.FinalState("t1", "STARTED"),
    ]
    assert explain(cfg(ack="late+requeue"), lost) == [
        "t1: 1 more delivery(ies) of retries=0 / none"
    ]
    back = [*lost[:-1], *run("t1#2", "w1.c2", True), *ok("t1#2"), h.FinalState("t1", "SUCCESS")]
    assert explain(cfg(ack="late+requeue"), back) == []
    assert no_lost_message(back) == []


def test_a_requeue_after_the_visibility_timeout_restored_the_message_adds_nothing() -> None:
    """Redis: the timeout already pushed the message back; the requeue of the lost
    child's delivery finds no unacked entry and pushes nothing (one redelivery, not
    two). RabbitMQ has no visibility timeout: its requeue always gives one back."""
    events = [
        h.Submitted("t1"), *run("t1", "w1.c1"), h.VisibilityTimeout(), h.Killed("w1.c1"),
        *run("t1#2", "w1.c2", True), *ok("t1#2"), h.FinalState("t1", "SUCCESS"),
    ]  # fmt: skip
    assert explain(cfg("redis", "late+requeue"), events) == []
    # Had the copy been taken before the kill, its entry would be back: one more.
    taken = [*events[:5], *run("t1#2", "w1.c2", True), h.Killed("w1.c1"), *ok("t1#2")]
    assert explain(cfg("redis", "late+requeue"), [*taken, h.FinalState("t1", "SUCCESS")]) == [
        "t1: 1 more delivery(ies) of retries=0 / none"
    ]


def test_a_lost_child_after_success_writes_nothing_and_requeues_nothing() -> None:
    # Celery 5.7 request.py on_failure: _success_was_stored().
    events = [
        h.Submitted("t1"), *run("t1", "w1.c1"), h.VisibilityTimeout(),
        *run("t1#2", "w1.c2", True), *ok("t1"), h.Killed("w1.c2"),
        h.FinalState("t1", "SUCCESS"),
    ]  # fmt: skip
    assert explain(cfg(ack="late+requeue"), events) == []


# --- the main process killed ------------------------------------------------------------------


def main_killed(broker: str, ack: str, vt: bool) -> list[h.Event]:
    events = [h.Submitted("t1"), *run("t1", "w1.c1"), h.Killed("w1"), h.Restarted("w2")]
    if vt:
        events.append(h.VisibilityTimeout())
    return events


def test_redis_redelivers_a_dead_workers_message_only_after_the_visibility_timeout() -> None:
    early = [*main_killed("redis", "late", vt=False), *run("t1#2", "w2.c1", True), *ok("t1#2")]
    assert explain(cfg("redis"), early) == ["t1: no further delivery / retries=0 delivered to w2"]
    after = [*main_killed("redis", "late", vt=True), *run("t1#2", "w2.c1", True), *ok("t1#2")]
    assert explain(cfg("redis"), after) == []
    never = main_killed("redis", "late", vt=True)
    assert explain(cfg("redis"), never) == ["t1: 1 more delivery(ies) of retries=0 / none"]


def test_amqp_redelivers_a_dead_workers_message_at_once() -> None:
    events = [*main_killed("amqp", "late", vt=False), *run("t1#2", "w2.c1", True), *ok("t1#2")]
    assert explain(cfg("amqp"), events) == []


def test_early_ack_main_kill_loses_the_message_and_writes_nothing() -> None:
    events = [*main_killed("redis", "early", vt=True), h.FinalState("t1", "STARTED")]
    assert explain(cfg("redis", "early"), events) == []
    assert no_lost_message(events)


def test_a_message_waiting_in_a_dead_workers_buffer_comes_back() -> None:
    events = [
        h.Submitted("t1"), h.Received("t1", "w1"), h.Killed("w1"), h.Restarted("w2"),
        *run("t1#2", "w2.c1", True), *ok("t1#2"),
    ]  # fmt: skip
    assert explain(cfg("amqp", "early"), events) == []


def test_a_visibility_timeout_while_running_hands_the_message_out_again() -> None:
    events = [
        h.Submitted("t1"), *run("t1", "w1.c1"), h.VisibilityTimeout(),
        *run("t1#2", "w1.c2", True), *ok("t1"), *ok("t1#2"), h.FinalState("t1", "SUCCESS"),
    ]  # fmt: skip
    assert explain(cfg("redis"), events) == []
    # Early ack: nothing is unacked while running, so nothing comes back.
    assert explain(cfg("redis", "early"), events)


def test_the_redelivered_flag_is_checked() -> None:
    events = [*main_killed("amqp", "late", vt=False), *run("t1#2", "w2.c1", False), *ok("t1#2")]
    assert any("redelivered=True" in line for line in explain(cfg("amqp"), events))


def test_a_start_without_a_delivery_is_a_mismatch() -> None:
    events = [h.Submitted("t1"), h.Started("t1", "t1", "w1.c1")]
    assert explain(cfg(), events)


def test_states_and_final_state_are_checked() -> None:
    events = [h.Submitted("t1"), *run("t1", "w1.c1"), *ok("t1"), h.FinalState("t1", "FAILURE")]
    assert explain(cfg(), events) == ["t1: SUCCESS / FAILURE"]
    missing = [h.Submitted("t1"), *run("t1", "w1.c1"), h.Finished("t1", "ok")]
    assert explain(cfg(), missing) == ["t1: STARTED -> SUCCESS / STARTED"]


# --- invariants and predictions -----------------------------------------------------------


def test_exactly_one_effect() -> None:
    done = [h.EffectDone("t1", "o1")]
    assert exactly_one_effect([*done, h.InvoiceCount("o1", 1)]) == []
    assert exactly_one_effect([*done, h.InvoiceCount("o1", 2)])
    assert exactly_one_effect([*done, h.InvoiceCount("o1", 0)])
    assert exactly_one_effect([h.InvoiceCount("o1", 0)]) == []


@pytest.mark.parametrize(
    ("ack", "pool", "prediction"),
    [
        ("early", "prefork", "violated"),
        ("late", "prefork", "violated"),
        ("late", "threads", "holds"),
        ("late+requeue", "prefork", "holds"),
    ],
)
def test_at_least_once_prediction(ack: str, pool: str, prediction: str) -> None:
    assert expected(cfg(ack=ack, pool=pool), "at-least-once") == prediction


def test_exactly_one_invoice_prediction() -> None:
    def pred(effect: str, broker: str = "redis", ack: str = "late") -> str:
        c = DeliveryConfig(broker, "threads", 2, ack != "early", False, effect=effect)  # type: ignore[arg-type]
        return expected(c, "exactly-one-invoice")

    assert pred("insert-on-conflict") == "holds"
    assert pred("insert-always") == "violated"
    assert pred("insert-always", ack="early") == "holds"
    assert pred("check-then-insert") == "violated"
    assert pred("check-then-insert", broker="amqp") == "holds"
    assert pred("pkg.mod:make_effect") == "unknown"


def test_every_prediction_has_a_reason() -> None:
    for effect in [*BUILTIN_EFFECTS, "pkg.mod:make"]:
        for broker in ("redis", "amqp"):
            for ack in ("early", "late", "late+requeue"):
                c = DeliveryConfig(
                    broker, "prefork", 2, ack != "early", ack == "late+requeue", effect=effect
                )
                for prop in PROPERTIES:
                    assert why(c, prop)


def test_config_rejects_requeue_without_acks_late() -> None:
    with pytest.raises(ValueError, match="acks_late"):
        DeliveryConfig("redis", "prefork", 2, acks_late=False, reject_on_worker_lost=True)
    with pytest.raises(ValueError, match="broker"):
        DeliveryConfig("kafka", "prefork", 2, acks_late=True)  # type: ignore[arg-type]


def test_a_heartbeat_is_an_amqp_setting_of_fixed_claims_only() -> None:
    with pytest.raises(ValueError, match="heartbeat is an AMQP setting"):
        DeliveryConfig("redis", "prefork", 2, acks_late=True, heartbeat=2.0)
    c = DeliveryConfig("amqp", "prefork", 2, acks_late=True, heartbeat=2.0)
    with pytest.raises(ValueError, match="or a heartbeat"):  # the model predicts none
        DeliveryModel(c)


def test_two_lineages_each_publish_a_fresh_retry_message() -> None:
    """acks_late, killed after publishing its retry: the old message comes back
    (redelivered) and publishes retries=1 again, a second fresh message."""
    c = DeliveryConfig("amqp", "prefork", 2, acks_late=True, retries=1)
    events = [
        h.Submitted("t1"), *run("t1", "w1.c1"),
        h.RetryPublished("t1", "t1", 1), h.Killed("w1"), h.Restarted("w2"),
        h.Received("t1", "w2", False, 1), h.Started("t1#2", "t1", "w2.c1", False, 1),
        h.Received("t1", "w2", True, 0), h.Started("t1#3", "t1", "w2.c2", True, 0),
        h.RetryPublished("t1#3", "t1", 1), h.Finished("t1#3", "ok"),
        h.Received("t1", "w2", False, 1), h.Started("t1#4", "t1", "w2.c2", False, 1),
        h.Finished("t1#2", "ok"), h.Finished("t1#4", "ok"),
    ]  # fmt: skip
    mismatches = [m for m in check_delivery(c, events) if "redelivered" in m.expected]
    assert mismatches == []
    assert one_lineage(events)  # the old message ran after publishing its retry


def test_two_lineages_publish_two_copies_of_one_level_each_with_its_own_redis_entry() -> None:
    """Found by the full matrix (Redis, threads/2, retries=2, acks_late, two kills): the
    model kept one unacked entry per (task id, level), so the ack of one lineage's
    retries=1 copy also "removed" the other lineage's, and the visibility timeout that
    brought that one back was called a mismatch. Each published copy has its own tag."""

    def deliver(x: str, worker: str, redelivered: bool, level: int) -> list[h.Event]:
        return [
            h.Received("t1", worker, redelivered, level),
            h.Started(x, "t1", worker, redelivered, level),
        ]

    events = [
        h.Submitted("t1"),
        *deliver("t1", "w1", False, 0),
        h.RetryPublished("t1", "t1", 1),  # lineage A's retries=1 (copy X)
        *deliver("t1#2", "w1", False, 1),
        h.Killed("w1"), h.Restarted("w2"), h.VisibilityTimeout(),
        *deliver("t1#3", "w2", True, 0),
        *deliver("t1#4", "w2", True, 1),  # copy X again
        h.RetryPublished("t1#3", "t1", 1),  # lineage B's retries=1 (copy Y)
        h.Finished("t1#3", "ok"),
        *deliver("t1#5", "w2", False, 1),  # copy Y
        h.RetryPublished("t1#4", "t1", 2),
        h.Finished("t1#4", "ok"),  # acks copy X: copy Y keeps its entry
        *deliver("t1#6", "w2", False, 2),
        h.Killed("w2"), h.Restarted("w3"), h.VisibilityTimeout(),
        *deliver("t1#7", "w3", True, 1),  # copy Y, restored by the timeout
        *deliver("t1#8", "w3", True, 2),
    ]  # fmt: skip
    config = DeliveryConfig("redis", "threads", 2, acks_late=True, retries=2)
    deliveries = [m for m in check_delivery(config, events) if "delivery" in m.expected]
    assert deliveries == []
    # Without lineage B's publish there is one copy at retries=1, acked by t1#4:
    # a delivery of it after the timeout is one too many.
    one_copy = [e for e in events if e != h.RetryPublished("t1#3", "t1", 1)]
    one_copy = [e for e in one_copy if not (isinstance(e, h.Started) and e.execution == "t1#5")]
    one_copy.remove(h.Received("t1", "w2", False, 1))
    flagged = [m for m in check_delivery(config, one_copy) if "delivery" in m.expected]
    assert [m.expected for m in flagged] == ["no further delivery"]


def test_early_ack_a_waiting_retry_restored_by_the_visibility_timeout_runs_twice() -> None:
    """Found by the full matrix of 2026-12-07 (Redis, threads/2, early ack, retries=2,
    max_retries=3), where the model had said one-lineage holds: t1's retry waits in
    the worker's buffer behind t1 and t2, unacked (early ack acks at the start); the
    visibility timeout hands it out again; both copies run and publish retries=2. The
    history is the real run's (``nox -s replay`` of the line in
    docs/findings/delivery.md); the delivery model allows it, the property catches it."""
    c = DeliveryConfig("redis", "threads", 2, acks_late=False, retries=2, max_retries=3)
    events = [
        h.Submitted("t1"), h.Received("t1", "w1"), h.Started("t1", "t1", "w1.t1"),
        h.Submitted("t2"), h.Received("t2", "w1"), h.Started("t2", "t2", "w1.t2"),
        h.RetryPublished("t1", "t1", 1), h.Received("t1", "w1", False, 1),
        h.VisibilityTimeout(), h.Received("t1", "w1", True, 1),
        h.Finished("t1", "ok"), h.Started("t1#2", "t1", "w1.t1", False, 1),
        h.RetryPublished("t1#2", "t1", 2), h.Received("t1", "w1", False, 2),
        h.Finished("t1#2", "ok"), h.Started("t1#3", "t1", "w1.t1", True, 1),
        h.RetryPublished("t1#3", "t1", 2), h.Received("t1", "w1", False, 2),
    ]  # fmt: skip
    assert [m for m in check_delivery(c, events) if "deliver" in m.expected] == []
    no_vt = [e for e in events if not isinstance(e, h.VisibilityTimeout)]
    assert "no further delivery" in [m.expected for m in check_delivery(c, no_vt)]
    assert [v.executions for v in one_lineage(events)] == [("t1#2", "t1#3"), ("t1#2", "t1#3")]


@pytest.mark.parametrize(
    ("broker", "pool", "max_retries", "prediction"),
    [
        ("redis", "threads", 3, "violated"),  # a level-1 copy publishes retries=2 again
        ("redis", "prefork", 3, "violated"),  # the main process's buffer, the same
        ("redis", "threads", 1, "holds"),  # both level-1 copies give up: no new retry
        ("amqp", "threads", 3, "holds"),  # no visibility timeout: a waiting retry stays
    ],
)
def test_one_lineage_prediction_under_early_ack(
    broker: str, pool: str, max_retries: int, prediction: str
) -> None:
    c = DeliveryConfig(broker, pool, 2, acks_late=False, retries=2, max_retries=max_retries)  # type: ignore[arg-type]
    assert expected(c, "one-lineage") == prediction
