"""The full-matrix ledger: one TSV line per findings row, errors counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from properties import ledger

ROW = {"area": "delivery", "property": "one-lineage", "label": "x/redis/c2",
       "expected": "violated", "verdict": "harness error", "passed": False,
       "reason": "harness error:\tFlaky\nmore", "examples": 3, "seconds": 1.5}  # fmt: skip
CLAIM = {"claim": "ack.early", "config": {"broker": "redis"}, "verdict": "confirmed"}


def test_a_row_and_a_claim_become_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report = tmp_path / "f.json"
    report.write_text(json.dumps([ROW, CLAIM]))
    assert ledger.main([str(report)]) == 0
    out, err = capsys.readouterr()
    lines = [x.split("\t") for x in out.splitlines()]
    assert lines[0] == list(ledger.COLUMNS) and all(len(x) == 8 for x in lines)
    assert lines[1][4:6] == ["harness error", "harness error: Flaky more"]  # one line
    assert lines[2][:5] == ["semantics", "ack.early", "redis", "confirmed", "confirmed"]
    assert "2 rows" in err and "1 harness errors, 0 other failures" in err


def test_a_file_that_is_not_a_report_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "f.json"
    bad.write_text("{}")
    assert ledger.main([str(bad)]) == 2
    assert capsys.readouterr().err.strip().endswith("not a findings report (a JSON list of rows)")
