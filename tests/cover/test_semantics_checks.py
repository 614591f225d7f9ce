"""The semantics rows' checks, on hand-written histories: each says "confirmed" for the
history the row describes and names what differs otherwise (no servers needed)."""

from __future__ import annotations

import pytest

from model import history as h
from model.config import DeliveryConfig
from properties import claim_checks as checks
from properties import claims
from properties.timeline import render

START = h.Started("t1", "t1", "w1.c1")
AGAIN = h.Started("t1#2", "t1", "w1.c2", redelivered=True)


def test_connection_loss_runs_twice_and_the_first_ack_fails_or_not() -> None:
    amqp = [
        START,
        h.ConnectionDropped("w1"),
        AGAIN,
        h.Finished("t1", "ok"),
        h.AckFailed("t1", "RecoverableConnectionError"),
        h.Finished("t1#2", "ok"),
        h.Acked("t1"),
    ]
    assert checks.run_twice("failed")(amqp, []) is None
    assert checks.run_twice("succeeded")(amqp, []) == "the first run's ack failed"
    redis = [e if not isinstance(e, h.AckFailed) else h.Acked("t1") for e in amqp]
    assert checks.run_twice("succeeded")(redis, []) is None
    # A second run that only starts once the first returned is not the overlap the row means.
    late = [START, h.Finished("t1", "ok"), AGAIN, h.Finished("t1#2", "ok")]
    assert "after the first returned" in str(checks.run_twice("succeeded")(late, []))
    assert "runs" in str(checks.run_twice("failed")([START, h.Finished("t1", "ok")], []))


def test_a_failed_run_is_acked_or_rejected_without_requeue() -> None:
    base = [START, h.Finished("t1", "error"), h.StateWritten("t1", "FAILURE")]
    acked = [*base, h.Acked("t1"), h.FinalState("t1", "FAILURE")]
    rejected = [*base, h.Rejected("t1", False), h.FinalState("t1", "FAILURE")]
    assert checks.failed_then("acked")(acked, []) is None
    assert checks.failed_then("rejected")(rejected, []) is None
    assert checks.failed_then("acked")(rejected, []) is not None
    assert checks.failed_then("rejected")(acked, []) is not None
    requeued = [*base, h.Rejected("t1", True), h.FinalState("t1", "FAILURE")]
    assert checks.failed_then("rejected")(requeued, []) is not None


def test_cold_shutdown_checks() -> None:
    lost = [
        START,
        h.Shutdown("w1", "cold"),
        h.StateWritten("t1", "RETRY"),
        h.FinalState("t1", "RETRY"),
    ]
    assert checks.lost_shown_retry(lost, []) is None
    assert checks.lost_shown_retry([*lost[:2], h.FinalState("t1", "FAILURE")], []) is not None
    back = [START, h.Shutdown("w1", "cold"), AGAIN, h.Acked("t1"), h.FinalState("t1", "SUCCESS")]
    assert checks.cold_back(back, []) is None
    acked_first = [START, h.Acked("t1"), h.Shutdown("w1", "cold"), AGAIN]
    assert checks.cold_back(acked_first, []) == "the cancelled run's message was acked"
    assert checks.cold_back([*back, h.StateWritten("t1", "RETRY")], []) is not None


def test_retry_claims() -> None:
    retry = h.Started("t1#2", "t1", "w1.c2", level=1)
    assert checks.retry_published_first([START, retry, h.Finished("t1", "ok")], []) is None
    assert checks.retry_published_first([START, h.Finished("t1", "ok"), retry], []) is not None
    assert checks.two_lineages([START, retry, AGAIN], []) is None
    assert checks.two_lineages([START, retry], []) is not None


def test_untested_rows_are_distinct_from_run_rows_and_say_why() -> None:
    ids = [c.id for c in claims.CLAIMS]
    assert len(set(ids)) == len(ids)
    for u in claims.UNTESTED:
        assert u.id not in ids and u.reason
        assert u.row()["verdict"] == "not tested"


def test_acks_on_failure_off_needs_acks_late() -> None:
    with pytest.raises(ValueError, match="acks_late"):
        DeliveryConfig("redis", "prefork", 2, acks_late=False, acks_on_failure=False)
    DeliveryConfig("redis", "prefork", 2, acks_late=True, acks_on_failure=False)


def test_timeline_shows_a_dropped_connection_and_a_failed_ack() -> None:
    text = render([h.ConnectionDropped("w1"), h.AckFailed("t1", "RecoverableConnectionError")])
    assert "BROKER CONNECTION of w1 DROPPED" in text
    assert "t1 ack FAILED (RecoverableConnectionError)" in text


def test_reserved_message_comes_back_to_the_next_worker() -> None:
    t2 = h.Started("t2", "t2", "w2.c1", redelivered=True)
    back = [
        h.Received("t1", "w1"), START, h.Received("t2", "w1"), h.Killed("w1"),
        h.Received("t2", "w2", redelivered=True), t2,
    ]  # fmt: skip
    assert checks.reserved_back(back, []) is None
    on_w1 = [*back[:3], h.Started("t2", "t2", "w1.c1"), h.Killed("w1")]
    assert "not given back" in str(checks.reserved_back(on_w1, []))
    never = [h.Received("t1", "w1"), START, h.Received("t2", "w2", redelivered=True), t2]
    assert "never reserved" in str(checks.reserved_back(never, []))


def test_cancelled_run_stores_retry_and_runs_again() -> None:
    cancelled = [
        START, h.ConnectionDropped("w1"), h.Finished("t1", "error", "SystemExit"), AGAIN,
        h.StateWritten("t1", "RETRY"), h.Finished("t1#2", "ok"), h.FinalState("t1", "SUCCESS"),
    ]  # fmt: skip
    assert checks.cancelled_then_again(cancelled, []) is None
    returned = [START, h.ConnectionDropped("w1"), AGAIN, h.Finished("t1", "ok")]
    assert "not cancelled" in str(checks.cancelled_then_again(returned, []))
    no_retry = [e for e in cancelled if not isinstance(e, h.StateWritten)]
    assert "no RETRY" in str(checks.cancelled_then_again(no_retry, []))


def test_dedup_skips_the_redelivery_of_a_success() -> None:
    skipped = [
        h.Received("t1", "w1"), START, h.Finished("t1", "ok"),
        h.Received("t1", "w1", redelivered=True), h.StateWritten("t1", "SUCCESS"),
        h.Skipped("t1", "w1"), h.FinalState("t1", "SUCCESS"),
    ]  # fmt: skip
    assert checks.skipped_once(skipped, []) is None
    ran = [e if not isinstance(e, h.Skipped) else AGAIN for e in skipped]
    assert "skipped 0" in str(checks.skipped_once(ran, []))
    assert "no redelivery" in str(checks.skipped_once(skipped[:3], []))
    assert "SKIPPED t1" in render(skipped)


def test_eta_restored_runs_twice_after_the_timeout() -> None:
    twice = [h.Received("t1", "w1"), h.VisibilityTimeout(), START, AGAIN]
    assert checks.twice_after_eta(twice, []) is None
    assert "no visibility timeout" in str(checks.twice_after_eta([START], []))
    early = [h.Received("t1", "w1"), START, h.VisibilityTimeout(), AGAIN]
    assert "before the visibility timeout" in str(checks.twice_after_eta(early, []))
    assert "not run twice" in str(checks.twice_after_eta(twice[:3], []))


def test_chord_fails_with_its_header() -> None:
    failed = [START, h.Killed("w1.c1"), h.FinalState("t1", "FAILURE")]
    assert checks.chord_failed([*failed, h.FinalState("chord(t1)", "FAILURE")], []) is None
    ran = [*failed, h.FinalState("chord(t1)", "SUCCESS")]
    assert "chord body SUCCESS" in str(checks.chord_failed(ran, []))


def test_the_delivery_model_refuses_settings_only_fixed_runs_check() -> None:
    from model.delivery import DeliveryModel

    fixed_only = (
        {"dedup": True}, {"cancel_on_loss": True}, {"countdown": 1.0}, {"chord": True},
        {"gate": "accept"}, {"results": "db"},
    )  # fmt: skip
    for extra in fixed_only:
        config = DeliveryConfig("redis", "prefork", 2, True, **extra)
        with pytest.raises(ValueError, match="predicts runs without"):
            DeliveryModel(config)


def test_a_job_held_before_accept_goes_to_another_child() -> None:
    held = [h.Received("t1", "w1"), h.Held("t1", "accept", "w1.c1"), h.Killed("w1.c1")]
    ran = [h.Started("t1", "t1", "w1.c2"), h.Acked("t1"), h.StateWritten("t1", "SUCCESS")]
    ok = [*held, *ran, h.FinalState("t1", "SUCCESS")]
    assert checks.given_to_another_child(ok, []) is None
    # Killed while running (no hold): WorkerLostError, the row's opposite.
    lost = [h.Received("t1", "w1"), START, h.Killed("w1.c1"), h.FinalState("t1", "FAILURE")]
    assert "held []" in str(checks.given_to_another_child(lost, []))
    again = [*held, h.Received("t1", "w2", redelivered=True), *ran, h.FinalState("t1", "SUCCESS")]
    assert "gave it out again" in str(checks.given_to_another_child(again, []))
    failed = [*held, *ran, h.StateWritten("t1", "FAILURE"), h.FinalState("t1", "FAILURE")]
    assert "final FAILURE" in str(checks.given_to_another_child(failed, []))
    also_held = [*held, h.Started("t1", "t1", "w1.c1"), h.FinalState("t1", "SUCCESS")]
    assert "not run by another child" in str(checks.given_to_another_child(also_held, []))


def test_a_kill_between_accept_and_ack_runs_the_task_again() -> None:
    head = [START, h.Held("t1", "accepted", "w1")]
    ok = [*head, h.Killed("w1"), AGAIN, h.Acked("t1"), h.FinalState("t1", "SUCCESS")]
    assert checks.partly_run_again(ok, []) is None
    acked = [START, h.Acked("t1"), h.Held("t1", "accepted", "w1"), h.Killed("w1")]
    assert "acked before the kill" in str(checks.partly_run_again(acked, []))
    lost = [*head, h.Killed("w1"), h.FinalState("t1", "STARTED")]
    assert "runs [('t1', False)]" in str(checks.partly_run_again(lost, []))


def test_a_retry_written_after_success_does_not_replace_it() -> None:
    states = [h.StateWritten("t1", s) for s in ("STARTED", "STARTED", "SUCCESS", "RETRY")]
    assert checks.success_kept([*states, h.FinalState("t1", "SUCCESS")], []) is None
    assert "RETRY replaced" in str(checks.success_kept([*states, h.FinalState("t1", "RETRY")], []))
    early = [states[0], states[3], states[2], h.FinalState("t1", "SUCCESS")]
    assert "no RETRY after SUCCESS" in str(checks.success_kept(early, []))
