"""Presentation and verdict rules: pure functions over histories and outcomes."""

from __future__ import annotations

from pathlib import Path

from model import history as h
from model.config import LockConfig
from model.verdict import UNSAFE_WITHOUT_FENCING, accept
from properties.findings import Findings
from properties.outcome import Outcome
from properties.timeline import lanes, render


def test_timeline_names_who_did_what_where_and_marks_events() -> None:
    events = [
        h.Submitted("t1"),
        h.Started("t1", "t1", "w1.c1"),
        h.AcquireBegin("t1", "invoice:1"),
        h.Point("t1", "redis SET invoice:1"),
        h.AcquireEnd("t1", "invoice:1", True),
        h.Killed("w1.c1"),
        h.Expired("invoice:1"),
        h.InvoiceCount("o1", 0),
    ]
    text = render(events, marks=[4])
    lines = text.splitlines()
    assert len(lines) == len(events)
    assert "t1@w1.c1" in lines[1] and "starts in w1.c1" in lines[1]
    assert lines[4].startswith(">>") and "ACQUIRED" in lines[4]
    assert not lines[3].startswith(">>")
    assert "KILL w1.c1" in lines[5] and "EXPIRE invoice:1" in lines[6]
    assert "invoices for o1: 0" in lines[7]


def _outcome(lock: str, prop: str, expected: str, verdict: str) -> Outcome:
    return Outcome(prop, LockConfig(lock, "prefork", 2), expected, verdict, 10, 1.0)


def test_builtin_must_agree_with_the_model() -> None:
    assert accept(_outcome("cookbook-redis", "mutual-exclusion", "holds", "holds"))[0]
    assert accept(_outcome("cookbook-locmem", "mutual-exclusion", "violated", "violated"))[0]
    ok, why = accept(_outcome("cookbook-locmem", "mutual-exclusion", "violated", "holds"))
    assert not ok and "none found in 10 examples" in why
    assert not accept(_outcome("cookbook-redis", "mutual-exclusion", "holds", "violated"))[0]


def test_mismatch_and_harness_errors_never_pass() -> None:
    for verdict in ("model mismatch", "harness error"):
        assert not accept(_outcome("cookbook-redis", "mutual-exclusion", "holds", verdict))[0]
        assert not accept(_outcome("m:f", "invoice-under-expiry", "unknown", verdict))[0]


def test_plugin_fencing_failure_is_reported_not_broken() -> None:
    o = _outcome("m:f", "invoice-under-expiry", "unknown", "violated")
    assert accept(o) == (True, UNSAFE_WITHOUT_FENCING)
    assert o.row()["passed"] and o.row()["reason"] == UNSAFE_WITHOUT_FENCING
    for prop in ("mutual-exclusion", "lease-mutual-exclusion", "exactly-one-invoice",
                 "no-orphaned-lock"):  # fmt: skip
        assert accept(_outcome("m:f", prop, "unknown", "violated")) == (False, "broken")
        assert accept(_outcome("m:f", prop, "unknown", "holds"))[0]


def test_table_json_and_assertion_read_one_rule(tmp_path: Path) -> None:
    """A broken plug-in fails its check everywhere: the assertion (``passed``), the
    JSON row and the table's mark; a built-in that agrees is unmarked."""
    broken = _outcome("m:f", "mutual-exclusion", "unknown", "violated")
    agrees = _outcome("cookbook-locmem", "mutual-exclusion", "violated", "violated")
    report = Findings(tmp_path / "f.json")
    for o in (broken, agrees):
        report.add(o)
    report.receive(report.take(0))
    assert not broken.passed and broken.row()["passed"] is False
    assert broken.row()["reason"] == "broken"
    assert agrees.passed and agrees.row()["passed"] is True
    table = report.table().splitlines()
    row = next(line for line in table if line.startswith("mutual") and "m:f" in line)
    assert "<-- broken" in row
    assert "<--" not in next(line for line in table if "cookbook-locmem" in line)


def test_lanes_put_each_event_in_its_process_with_the_terminal_text() -> None:
    events = [
        h.Submitted("t1"),
        h.Received("t1", "w1"),
        h.Started("t1", "t1", "w1.c2"),
        h.AcquireEnd("t1", "invoice:1", True),
        h.Killed("w1.c2"),
        h.VisibilityTimeout(),
        h.InvoiceCount("o1", 2),
    ]
    rows = lanes(events, marks=[3])
    terminal = render(events, marks=[3]).splitlines()
    assert [r["lane"] for r in rows] == ["global", "w1", "w1.c2", "w1.c2", "w1.c2", "global",
                                         "global"]  # fmt: skip
    assert [r["kind"] for r in rows] == ["move", "broker", "step", "step", "fault", "fault",
                                         "result"]  # fmt: skip
    assert [r["marked"] for r in rows] == [False, False, False, True, False, False, False]
    assert rows[3]["who"] == "t1" and rows[0]["who"] == ""
    for row, line in zip(rows, terminal, strict=True):
        assert line.endswith(row["text"]) and row["index"] == int(line[2:6])
    respawn = lanes([h.Killed("w1.c2"), h.ChildReplaced("w1.c2", "w1.c2'")])
    assert [r["lane"] for r in respawn] == ["w1.c2", "w1"]  # the main process forks it
