"""The canvas model (model/canvas.py) on hand-written chord histories."""

from __future__ import annotations

import pytest

from model import history as h
from model.canvas import (
    CHORD_PROPERTIES,
    CLAIM,
    body_after_headers,
    body_args,
    body_once,
    check_join,
    fires_once,
)
from model.canvas_config import BODY, CanvasConfig, parse_label
from model.canvas_properties import rule
from model.canvas_steps import (
    chain_complete,
    chain_order,
    check_steps,
    group_complete,
    steps_once,
)
from model.canvas_unlock import UNLOCK, check_unlock
from properties.scenario import CanvasScenario, decode_any

EARLY = CanvasConfig()
LATE = CanvasConfig(acks_late=True)
REQUEUE = CanvasConfig(acks_late=True, reject_on_worker_lost=True)


def header(x: str, proc: str, upto: str = "counted", claims: bool = False) -> list[h.Event]:
    """A header run from its start to its point ``upto`` (and its end for "end")."""
    task = x.split("#")[0]
    out: list[h.Event] = [h.Started(x, task, proc)]
    for p in ("done", "count", "published", "counted"):
        if p == "published" and not claims:
            continue
        if p == "published":
            out.append(h.BodySent(x, BODY))
        out.append(h.Point(x, p))
        if p == upto:
            return out
    return [*out, h.Finished(x, "ok")]


def body(x: str, proc: str, results: tuple[str, ...]) -> list[h.Event]:
    return [h.Started(x, BODY, proc), h.BodyArgs(x, results), h.Point(x, "done"),
            h.Finished(x, "ok")]  # fmt: skip


def finals(**states: str) -> list[h.Event]:
    return [h.FinalState(t, s) for t, s in states.items()]


def chord_ok() -> list[h.Event]:
    """Two headers, the second's count completes the chord, the body runs once."""
    return [
        h.Submitted("t1"), h.Submitted("t2"),
        *header("t1", "w1.c1", "end"),
        *header("t2", "w1.c2", "end", claims=True),
        *body(BODY, "w1.c1", ("t1", "t2")),
        *finals(t1="SUCCESS", t2="SUCCESS", t9="SUCCESS"),
    ]  # fmt: skip


def test_a_clean_chord_holds_everything_and_agrees_with_the_join() -> None:
    ev = chord_ok()
    assert check_join(EARLY, ev) == []
    for check in (body_once, fires_once, body_after_headers, body_args):
        assert check(ev) == []


def test_the_join_says_which_count_publishes() -> None:
    # t1 "claims" although t2 has not counted: the model expects no publish.
    ev = [
        h.Submitted("t1"), h.Submitted("t2"),
        *header("t1", "w1.c1", "end", claims=True),
    ]  # fmt: skip
    found = check_join(EARLY, ev)
    assert any("t1 at 'counted'" in m.expected for m in found)


def test_a_child_killed_between_store_and_count_leaves_the_chord_stuck() -> None:
    """request.py on_failure: SUCCESS stored -> ack, nothing counted; body PENDING."""
    ev = [
        h.Submitted("t1"),
        *header("t1", "w1.c1", "count"),
        h.Killed("w1.c1"),
        *finals(t1="SUCCESS", t9="PENDING"),
    ]  # fmt: skip
    assert check_join(LATE, ev) == []
    (v,) = body_once(ev)
    assert "never ran" in v.message and "PENDING" in v.message


def test_a_child_killed_before_the_store_fails_the_chord_unless_requeued() -> None:
    ev = [h.Submitted("t1"), *header("t1", "w1.c1", "done"), h.Killed("w1.c1")]
    failed = [*ev, *finals(t1="FAILURE", t9="FAILURE")]
    assert check_join(EARLY, failed) == []
    assert body_once(failed) == []  # a header failed: nothing owed
    # The model expects FAILURE: a PENDING body is a mismatch.
    assert check_join(EARLY, [*ev, *finals(t1="FAILURE", t9="PENDING")])
    # Requeued: nothing counted, the body stays PENDING until the rerun.
    assert check_join(REQUEUE, [*ev, *finals(t1="PENDING", t9="PENDING")]) == []


def test_a_rerun_after_the_claim_expired_publishes_again() -> None:
    """Killed (main) between the body's publish and the cleanup; the visibility
    timeout passes (the 10 s claim with it); the rerun claims and publishes again."""
    ev = [
        h.Submitted("t1"),
        *header("t1", "w1.c1", "published", claims=True),
        h.Killed("w1"),
        h.VisibilityTimeout(),
        *header("t1#2", "w2.c1", "end", claims=True),
        *body(BODY, "w2.c2", ("t1",)),
        *body(f"{BODY}#2", "w2.c1", ("t1",)),
        *finals(t1="SUCCESS", t9="SUCCESS"),
    ]  # fmt: skip
    assert check_join(LATE, ev) == []
    assert "published its body 2 times" in fires_once(ev)[0].message
    assert "2 times" in body_once(ev)[0].message
    # Without the visibility timeout the dead run still holds the claim: no publish.
    held = [e for e in ev if not isinstance(e, h.VisibilityTimeout)]
    assert any("t1#2 at 'counted'" in m.expected for m in check_join(LATE, held))


def test_a_counted_header_is_not_counted_again() -> None:
    """t1 counted, killed before its ack, rerun: the done set keeps it once, so t2's
    count is still needed (a rerun claiming would be a mismatch)."""
    ev = [
        h.Submitted("t1"), h.Submitted("t2"),
        *header("t1", "w1.c1", "counted"), h.Killed("w1"), h.VisibilityTimeout(),
        *header("t1#2", "w2.c1", "end", claims=True),
    ]  # fmt: skip
    assert any("t1#2 at 'counted'" in m.expected for m in check_join(LATE, ev))


def test_body_after_headers_and_body_args_catch_an_early_or_doubled_body() -> None:
    early = [
        h.Submitted("t1"), h.Submitted("t2"),
        *header("t1", "w1.c1", "end"),
        *body(BODY, "w1.c2", ("t1", "t1")),
    ]  # fmt: skip
    (v,) = body_after_headers(early)
    assert "before t2" in v.message
    (a,) = body_args(early)
    assert "['t1', 't1']" in a.message


def test_predictions_say_why() -> None:
    assert rule(EARLY, "fires-once")[0] == "holds"
    assert rule(LATE, "fires-once")[0] == "violated"
    assert rule(REQUEUE, "fires-once")[0] == "violated"
    for c in (EARLY, LATE, REQUEUE):
        assert rule(c, "body-once")[0] == "violated"
        assert rule(c, "body-after-headers")[0] == "holds"
        assert rule(c, "body-args")[0] == "holds"
        for p in CHORD_PROPERTIES:
            assert "celery/" in rule(c, p)[1] or "early ack" in rule(c, p)[1]
    with pytest.raises(KeyError):
        rule(EARLY, "nonsense")


def test_config_label_and_scenario_line_round_trip() -> None:
    for c in (EARLY, LATE, REQUEUE, CanvasConfig(acks_late=True, join="list")):
        assert parse_label(c.label()) == c
    line = CanvasScenario("fires-once", LATE, 2, ("submit", "step t1", "kill-main t1", "vt"))
    assert decode_any(line.encode()) == line
    with pytest.raises(ValueError):
        parse_label("chord/redis/sometimes/zset/prefork/c2")
    with pytest.raises(ValueError):
        CanvasConfig(reject_on_worker_lost=True)
    with pytest.raises(ValueError):
        CanvasConfig(join="hash")  # type: ignore[arg-type]


# --- chains and groups (model/canvas_steps.py) ------------------------------------------------

CHAIN_EARLY = CanvasConfig(shape="chain")
CHAIN_LATE = CanvasConfig(acks_late=True, shape="chain")
CHAIN_REQUEUE = CanvasConfig(acks_late=True, reject_on_worker_lost=True, shape="chain")


def step(
    x: str, proc: str, upto: str = "end", publishes: str | None = None, arg: str | None = None,
    redelivered: bool = False,
) -> list[h.Event]:  # fmt: skip
    """A chain step's run, received by ``proc``'s worker, to its point ``upto``."""
    task = x.split("#")[0]
    out: list[h.Event] = [
        h.Received(task, proc.split(".")[0], redelivered),
        h.Started(x, task, proc, redelivered),
    ]
    if arg is not None:
        out.append(h.StepArgs(x, (arg,)))
    for p in ("done", "published", "stored"):
        if p == "published" and publishes is None:
            continue
        if p == "published":
            out.append(h.StepSent(x, publishes or "?"))
        out.append(h.Point(x, p))
        if p == "stored":
            out.append(h.StateWritten(task, "SUCCESS"))
        if p == upto:
            return out
    return [*out, h.Finished(x, "ok")]


def chain_ok() -> list[h.Event]:
    return [
        h.Submitted("t1"), h.Chained("t2", "t1"),
        *step("t1", "w1.c1", publishes="t2"),
        *step("t2", "w1.c2", arg="t1"),
        *finals(t1="SUCCESS", t2="SUCCESS"),
    ]  # fmt: skip


def test_a_clean_chain_agrees_with_the_model_and_holds_everything() -> None:
    ev = chain_ok()
    for c in (CHAIN_EARLY, CHAIN_LATE, CHAIN_REQUEUE):
        assert check_steps(c, ev) == []
    for check in (steps_once, chain_order, chain_complete):
        assert check(ev) == []


def test_a_step_that_stores_before_publishing_the_next_is_a_mismatch() -> None:
    ev = [
        h.Submitted("t1"), h.Chained("t2", "t1"),
        *step("t1", "w1.c1"),  # no publish of t2: the model wants 'published' out of 'done'
        *finals(t1="SUCCESS", t2="PENDING"),
    ]  # fmt: skip
    assert any("at 'published'" in m.expected for m in check_steps(CHAIN_LATE, ev))
    assert chain_complete(ev)  # and the chain's result stays PENDING


def test_a_step_killed_after_publishing_fails_but_its_successor_runs() -> None:
    """trace.py publishes the next step before mark_as_done; the lost run is stored
    FAILURE and _fail_chain stores FAILURE on t2, which then overwrites it."""
    ev = [
        h.Submitted("t1"), h.Chained("t2", "t1"),
        *step("t1", "w1.c1", "published", publishes="t2"),
        h.Received("t2", "w1"), h.Started("t2", "t2", "w1.c2"),
        h.Killed("w1.c1"), h.StateWritten("t1", "FAILURE"), h.StateWritten("t2", "FAILURE"),
        h.StepArgs("t2", ("t1",)), h.Point("t2", "done"), h.Point("t2", "stored"),
        h.StateWritten("t2", "SUCCESS"), h.Finished("t2", "ok"),
        *finals(t1="FAILURE", t2="SUCCESS"),
    ]  # fmt: skip
    assert check_steps(CHAIN_LATE, ev) == []
    assert check_steps(CHAIN_EARLY, ev) == []
    (v,) = chain_order(ev)
    assert "predecessor t1 ended FAILURE" in v.message
    assert chain_complete(ev) == []
    # reject_on_worker_lost requeues instead: FAILURE written is a mismatch, and the
    # message owed again is one too when it never comes.
    found = check_steps(CHAIN_REQUEUE, ev)
    assert any(m.task == "t1" and "FAILURE" in m.observed for m in found)
    assert any("more delivery" in m.expected for m in found)


def test_a_rerun_of_a_stored_step_publishes_the_next_again() -> None:
    """acks_late, kill-main at 'stored', the visibility timeout: t1 reruns, publishes
    t2 again; t2's first message is redelivered too: t2 completes twice."""
    ev = [
        h.Submitted("t1"), h.Chained("t2", "t1"),
        *step("t1", "w1.c1", "stored", publishes="t2"),
        h.Received("t2", "w1"), h.Started("t2", "t2", "w1.c2"),
        h.Killed("w1"), h.Restarted("w2"), h.VisibilityTimeout(),
        *step("t1#2", "w2.c1", publishes="t2", redelivered=True),
        *step("t2#2", "w2.c2", arg="t1", redelivered=True),
        *step("t2#3", "w2.c1", arg="t1"),
        *finals(t1="SUCCESS", t2="SUCCESS"),
    ]  # fmt: skip
    assert check_steps(CHAIN_LATE, ev) == []
    assert [v.message for v in steps_once(ev)] == [
        "t1 ran to completion 2 times",
        "t2 ran to completion 2 times",
    ]
    assert chain_order(ev) == [] and chain_complete(ev) == []
    # Early ack: nothing comes back after the kill, a redelivery is a mismatch.
    assert any("no further delivery" in m.expected for m in check_steps(CHAIN_EARLY, ev))


def test_early_ack_and_a_killed_main_leave_the_chain_pending() -> None:
    ev = [
        h.Submitted("t1"), h.Chained("t2", "t1"),
        h.Received("t1", "w1"), h.Started("t1", "t1", "w1.c1"), h.Point("t1", "done"),
        h.Killed("w1"), h.Restarted("w2"),
        *finals(t1="PENDING", t2="PENDING"),
    ]  # fmt: skip
    assert check_steps(CHAIN_EARLY, ev) == []
    (v,) = chain_complete(ev)
    assert "(t2) is PENDING for good" in v.message and "t1 PENDING" in v.message


def test_a_step_gets_its_predecessors_result_and_starts_only_once_published() -> None:
    ev = [
        h.Submitted("t1"), h.Chained("t2", "t1"),
        h.Started("t2", "t2", "w1.c2"), h.StepArgs("t2", ("t9",)),
    ]  # fmt: skip
    found = chain_order(ev)
    assert any("before a run of t1 published it" in v.message for v in found)
    assert any("expected ['t1']" in v.message for v in found)


def test_a_group_member_lost_with_an_early_acked_worker_never_ends() -> None:
    ev = [
        h.Submitted("t1"), h.Submitted("t2"),
        *step("t1", "w1.c1"),
        h.Received("t2", "w1"), h.Started("t2", "t2", "w1.c2"), h.Killed("w1"),
        *finals(t1="SUCCESS", t2="PENDING"),
    ]  # fmt: skip
    group = CanvasConfig(shape="group")
    assert check_steps(group, ev) == []
    (v,) = group_complete(ev)
    assert "t2 PENDING" in v.message
    assert steps_once(ev) == []


def test_chain_and_group_predictions_name_their_source() -> None:
    late_group = CanvasConfig(acks_late=True, shape="group")
    table = {
        ("chain-order", CHAIN_EARLY): "violated", ("chain-order", CHAIN_LATE): "violated",
        ("chain-order", CHAIN_REQUEUE): "holds",
        ("chain-once", CHAIN_EARLY): "holds", ("chain-once", CHAIN_LATE): "violated",
        ("chain-once", CHAIN_REQUEUE): "violated",
        ("chain-complete", CHAIN_EARLY): "violated", ("chain-complete", CHAIN_LATE): "holds",
        ("chain-complete", CHAIN_REQUEUE): "holds",
        ("group-once", late_group): "violated", ("group-complete", late_group): "holds",
    }  # fmt: skip
    for (prop, config), want in table.items():
        prediction, why = rule(config, prop)
        assert prediction == want, (prop, config.label())
        assert "celery/" in why or "early ack" in why
    with pytest.raises(KeyError):
        rule(CHAIN_LATE, "body-once")  # a chord's property


def test_chain_and_group_labels_round_trip() -> None:
    for c in (
        CHAIN_EARLY,
        CanvasConfig("amqp", acks_late=True, shape="chain", retry=True),
        CanvasConfig(acks_late=True, reject_on_worker_lost=True, shape="group"),
    ):
        assert parse_label(c.label()) == c
    assert CHAIN_EARLY.label() == "chain/redis/early/plain/prefork/c2"
    with pytest.raises(ValueError, match="variant"):
        parse_label("chain/redis/late/zset/prefork/c2")
    with pytest.raises(ValueError, match="chain's variant"):
        CanvasConfig(shape="group", retry=True)
    with pytest.raises(ValueError, match="join mode"):
        CanvasConfig(shape="chain", join="list")


def test_on_rabbitmq_a_redelivered_header_publishes_again_only_once_the_claim_expired() -> None:
    """RabbitMQ redelivers at once: the dead run's 10 s claim still holds (no publish);
    the ``expire`` move (the claim's TTL passed) lets the rerun claim and publish."""
    amqp = CanvasConfig("amqp", acks_late=True)
    head = [
        h.Submitted("t1"),
        *header("t1", "w1.c1", "published", claims=True),
        h.Killed("w1"),
    ]  # fmt: skip
    held = [*head, *header("t1#2", "w2.c1", "end")]
    assert check_join(amqp, held) == []
    expired = [*head, h.Expired(CLAIM), *header("t1#2", "w2.c1", "end", claims=True)]
    assert check_join(amqp, expired) == []
    # Once the claim expired, a rerun that does not publish disagrees with the model.
    silent = [*head, h.Expired(CLAIM), *header("t1#2", "w2.c1", "end")]
    assert any("t1#2 at 'published'" in m.expected for m in check_join(amqp, silent))
    assert rule(amqp, "fires-once")[0] == "violated"
    assert "RabbitMQ" in rule(amqp, "fires-once")[1]


# --- the database backend's chord_unlock (model/canvas_unlock.py) ------------------------------

DB_LATE = CanvasConfig(acks_late=True, join="db")


def poll(x: str, proc: str, does: str) -> list[h.Event]:
    """A chord_unlock run: started, stepped once, then a retry, the body or neither."""
    out: list[h.Event] = [h.Started(x, UNLOCK, proc)]
    if does == "retry":
        out.append(h.RetryPublished(x, UNLOCK, 1))
    elif does == "publish":
        out += [h.BodySent(x, BODY), h.Point(x, "published")]
    return [*out, h.Finished(x, "ok")]


def test_a_poll_retries_until_every_header_stored_then_publishes_once() -> None:
    ev = [
        h.Submitted("t1"),
        *poll(UNLOCK, "w1.c2", "retry"),
        *header("t1", "w1.c1", "end"),
        *poll(f"{UNLOCK}#2", "w1.c2", "publish"),
        *body(BODY, "w1.c1", ("t1",)),
        *finals(t1="SUCCESS", t9="SUCCESS"),
    ]  # fmt: skip
    assert check_unlock(DB_LATE, ev) == []
    assert body_once(ev) == [] and fires_once(ev) == []
    # A poll that publishes before the header stored its result disagrees.
    early = [h.Submitted("t1"), *poll(UNLOCK, "w1.c2", "publish")]
    (m,) = check_unlock(DB_LATE, early)
    assert "to retry" in m.expected and "publish the body" in m.observed


def test_a_failed_header_fails_the_chord_at_the_next_poll() -> None:
    ev = [
        h.Submitted("t1"),
        h.Started("t1", "t1", "w1.c1"), h.Point("t1", "done"), h.Killed("w1.c1"),
        *poll(UNLOCK, "w1.c2", "fail"),
        *finals(t1="FAILURE", t9="FAILURE"),
    ]  # fmt: skip
    assert check_unlock(DB_LATE, ev) == []
    assert check_unlock(DB_LATE, [*ev[:-1], h.FinalState(BODY, "PENDING")])
    # Requeued (reject_on_worker_lost): nothing stored, the poll must retry.
    requeue = CanvasConfig(acks_late=True, reject_on_worker_lost=True, join="db")
    assert any("to retry" in m.expected for m in check_unlock(requeue, ev))


def test_a_killed_poll_ends_the_polling_for_good() -> None:
    ev = [
        h.Submitted("t1"),
        h.Started(UNLOCK, UNLOCK, "w1.c2"), h.Killed("w1.c2"),
        *header("t1", "w1.c1", "end"),
        *finals(t1="SUCCESS", t9="PENDING"),
    ]  # fmt: skip
    assert check_unlock(DB_LATE, ev) == []
    (v,) = body_once(ev)
    assert "never ran" in v.message


def test_unlock_predictions() -> None:
    early = CanvasConfig(join="db")
    assert rule(early, "fires-once")[0] == "holds"
    assert rule(DB_LATE, "fires-once")[0] == "violated"
    for c in (early, DB_LATE):
        assert rule(c, "body-once")[0] == "violated"
        assert rule(c, "body-after-headers")[0] == "holds"
        assert "builtins.py" in rule(c, "body-args")[1]
    assert parse_label(DB_LATE.label()) == DB_LATE
    assert DB_LATE.label() == "chord/redis/late/db/prefork/c2"
