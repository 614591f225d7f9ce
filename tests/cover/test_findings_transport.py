"""Rows travel from the test that found them to the process writing the report (the
test process, or pytest-xdist's controller) as JSON on the test reports."""

from __future__ import annotations

import json
from pathlib import Path

from model.config import LockConfig
from properties.findings import Findings
from properties.outcome import Outcome
from properties.progress import Progress, clock_text, load_estimates


def _outcome(lock: str, prop: str, expected: str, verdict: str) -> Outcome:
    return Outcome(prop, LockConfig(lock, "prefork", 2), expected, verdict, 10, 1.5)


def test_rows_from_two_workers_land_in_collection_order(tmp_path: Path) -> None:
    gw0, gw1 = Findings(tmp_path / "0.json"), Findings(tmp_path / "1.json")
    controller = Findings(tmp_path / "findings.json")
    gw1.add(_outcome("cookbook-locmem", "mutual-exclusion", "violated", "violated"))
    late = json.loads(json.dumps(gw1.take(7)))  # what xdist's serialization keeps
    gw0.add(_outcome("cookbook-redis", "mutual-exclusion", "holds", "holds"))
    early = json.loads(json.dumps(gw0.take(2)))
    assert not gw0.pending and not gw1.pending
    controller.receive(late)
    controller.receive(early)
    controller.write()
    rows = json.loads((tmp_path / "findings.json").read_text())
    assert [r["config"]["lock"] for r in rows] == ["cookbook-redis", "cookbook-locmem"]
    table = controller.table().splitlines()
    first = next(i for i, line in enumerate(table) if "cookbook-redis" in line)
    second = next(i for i, line in enumerate(table) if "cookbook-locmem" in line)
    assert first < second
    assert "2 findings: 1 holds, 1 violated" in controller.table()


def test_an_empty_report_is_falsy_and_writes_nothing(tmp_path: Path) -> None:
    f = Findings(tmp_path / "f.json")
    f.add(_outcome("cookbook-redis", "mutual-exclusion", "holds", "holds"))
    assert not f  # added, but not yet received from a report
    f.receive(f.take(0))
    assert f


def test_progress_counts_rows_violations_and_time_left() -> None:
    now = [100.0]
    p = Progress(total=4, clock=lambda: now[0])
    p.began("tests/properties/test_locks.py::test_lock[mutual-exclusion-a]")
    now[0] = 130.0
    row = {"row": {"verdict": "violated"}}
    line = p.finished("tests/properties/test_locks.py::test_lock[mutual-exclusion-a]", [row], False)
    assert line.startswith("[1/4] 30s, ~1m30s left")
    assert "1 violated, 0 disagreeing" in line and "mutual-exclusion-a: violated" in line
    now[0] = 160.0
    line = p.finished("t.py::test_lock[b]", [{"row": {"verdict": "holds"}}], True)
    assert line.startswith("[2/4] 1m00s, ~1m00s left") and line.endswith("<-- DISAGREES")
    assert "1 violated, 1 disagreeing" in line
    p.finished("t.py::c", [], False)
    assert "left" not in p.finished("t.py::d", [], False)


def test_clock_text() -> None:
    assert [clock_text(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_time_left_weighs_rows_by_their_durations_at_this_runs_pace() -> None:
    now = [0.0]
    p = Progress(clock=lambda: now[0], estimates={"a": 10.0, "b": 30.0, "c": 60.0})
    p.ids, p.total = ["a", "b", "c", "d"], 4  # d is unknown: the mean row, 33.3 s
    p.began("a")
    now[0] = 20.0  # twice as slow as the file says
    line = p.finished("a", [], False)
    assert "~4m07s left" in line  # (30 + 60 + 33.3) s x 2
    now[0] = 80.0
    assert "~3m07s left" in p.finished("b", [], False)  # (60 + 33.3) s x 80/40


def test_a_missing_or_unreadable_durations_file_is_no_estimates(tmp_path: Path) -> None:
    assert load_estimates(tmp_path / "none") == {}
    (tmp_path / "bad").write_text("[1, 2]")
    assert load_estimates(tmp_path / "bad") == {}
    (tmp_path / "ok").write_text('{"a": 1.5, "b": "x"}')
    assert load_estimates(tmp_path / "ok") == {"a": 1.5}
