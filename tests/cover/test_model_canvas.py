"""The canvas model (model/canvas.py) on hand-written chord histories."""

from __future__ import annotations

import pytest

from model import history as h
from model.canvas import (
    BODY,
    PROPERTIES,
    CanvasConfig,
    body_after_headers,
    body_args,
    body_once,
    check_join,
    fires_once,
    parse_label,
    rule,
)
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
        for p in PROPERTIES:
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
