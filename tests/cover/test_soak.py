"""The soak comparison: what counts as a change, and what as a false alarm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model import history as h
from properties import soak
from properties.timeline import canonical, render


def row(verdict: str = "holds", passed: bool = True, examples: int = 10, **kw: Any) -> dict:
    return {"property": "p", "config": {"pool": "prefork"}, "verdict": verdict,
            "passed": passed, "examples": examples, "counterexample": None,
            "seconds": 1.0, **kw}  # fmt: skip


def test_identical_runs_but_timings_are_no_change() -> None:
    assert soak.changes([[row()], [row(seconds=9.0)], [row()]]) == []


def test_a_changed_verdict_is_a_false_alarm() -> None:
    found = soak.changes([[row()], [row(verdict="harness error", passed=False)], [row()]])
    assert {c.field for c in found} == {"verdict", "passed"}
    verdict = next(c for c in found if c.field == "verdict")
    assert verdict.values == [([1, 3], "holds"), ([2], "harness error")]
    assert soak.false_alarms(found) == {verdict.row}
    assert "runs 1,3: 'holds'; runs 2: 'harness error'" in verdict.describe()


def test_passed_alone_changing_is_a_false_alarm_too() -> None:
    found = soak.changes([[row(verdict="violated", passed=True)], [row("violated", False)]])
    assert [c.field for c in found] == ["passed"] and len(soak.false_alarms(found)) == 1


def test_examples_or_counterexample_changing_is_a_change_not_a_false_alarm() -> None:
    a = row("violated", examples=12, counterexample="VIOLATED\n  #3 two holders")
    b = row("violated", examples=14, counterexample="VIOLATED\n  #5 two holders")
    found = soak.changes([[a], [b]])
    assert {c.field for c in found} == {"examples", "counterexample"}
    assert soak.false_alarms(found) == set()
    shown = next(c for c in found if c.field == "counterexample").describe()
    assert "'VIOLATED ...'" in shown  # the first line, not the whole timeline


def test_a_row_missing_from_a_run_is_a_change() -> None:
    other = row(config={"pool": "threads"})
    found = soak.changes([[row(), other], [row()]])
    assert [(c.field, c.values) for c in found] == [("present", [([1], True), ([2], False)])]


def test_claim_rows_are_compared_by_claim_and_config() -> None:
    c = {"claim": "ack.early", "config": {"broker": "redis"}, "verdict": "confirmed"}
    found = soak.changes([[c], [{**c, "verdict": "refuted"}]])
    assert [f.field for f in found] == ["verdict"] and "ack.early" in found[0].row


def test_the_command_is_the_ci_selection_plus_pass_through() -> None:
    cmd = soak.command(Path("reports/soak/run-1.json"), ["-k", "redis"])
    assert cmd[1:] == [
        "-m", "pytest", "tests/properties", "-q", "--matrix", "ci", "--hypothesis-profile",
        "ci", "-n", "2", "--dist", "loadfile", "--findings", "reports/soak/run-1.json",
        "-k", "redis",
    ]  # fmt: skip


@pytest.mark.parametrize(("env", "argv"), [("x", []), ("1", []), ("20", ["--runs", "1"])])
def test_bad_run_counts_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: str,
    argv: list[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("SOAK_RUNS", env)
    assert soak.main(argv) == 2
    assert capsys.readouterr().err.startswith("soak: ")


def test_runs_are_compared_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three fake pytest runs, the second flipping a verdict: exit 1 and the figure."""
    import json
    import subprocess

    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        flipped = len(calls) == 2
        r = row("violated", False) if flipped else row()
        Path(cmd[cmd.index("--findings") + 1]).write_text(json.dumps([r]))
        return subprocess.CompletedProcess(cmd, 1 if flipped else 0)

    monkeypatch.setattr(soak.subprocess, "run", fake_run)
    assert soak.main(["--runs", "3", "--dir", str(tmp_path), "--", "-k", "x"]) == 1
    out = capsys.readouterr().out
    assert "false alarms: 1 rows in 3 runs" in out
    assert all(c[-2:] == ["-k", "x"] for c in calls) and len(calls) == 3


def test_example_numbering_in_a_counterexample_is_no_change() -> None:
    # The same failure, found after other rows ran before it on that xdist worker.
    a = row("violated", counterexample="invoices for o12-t1: 2\nkey 4dcb1a-state:12, invoice:12")
    b = row("violated", counterexample="invoices for o40-t1: 2\nkey 9e0f3c-state:40, invoice:40")
    assert soak.changes([[a], [b]]) == []
    c = row("violated", counterexample="invoices for o40-t2: 2\nkey 9e0f3c-state:40, invoice:40")
    assert [x.field for x in soak.changes([[a], [c]])] == ["counterexample"]


def _timeline(*reports: h.Event) -> str:
    events = [h.Submitted("t2"), *reports, h.FinalState("t2", "SUCCESS")]
    acks = [i for i, e in enumerate(events) if isinstance(e, h.Acked)]
    return "VIOLATED\n" + render(events, marks=acks[:1])  # the mark goes with its event


def test_concurrent_reports_in_either_order_are_no_change() -> None:
    # Seen in a real soak: an ack on the broker channel and a state write on the
    # backend arrived in either order between two runs of one scenario.
    ack, started = h.Acked("t2"), h.StateWritten("t2", "STARTED")
    a, b = _timeline(ack, started), _timeline(started, ack)
    assert a != b and canonical(a) == canonical(b)
    found = soak.changes([[row("violated", counterexample=a)], [row("violated", counterexample=b)]])
    assert found == []


def test_reports_that_move_past_another_event_are_a_change() -> None:
    # Only adjacent reports are unordered: an ack before or after a run's step is not.
    ack, step = h.Acked("t2"), h.Point("t2", "p1")
    a, b = _timeline(ack, step), _timeline(step, ack)
    assert canonical(a) != canonical(b)
    assert canonical(_timeline(ack, ack)) != canonical(_timeline(ack))  # counts matter
