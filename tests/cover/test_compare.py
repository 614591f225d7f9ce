"""The findings comparison: timings never count, anything else does."""

from __future__ import annotations

import json
from pathlib import Path

from properties.compare import DERIVED, differences, main

ROW = {"property": "p", "config": {"pool": "prefork"}, "verdict": "holds", "seconds": 1.0}


def test_same_rows_but_timings_do_not_differ() -> None:
    assert differences([ROW], [{**ROW, "seconds": 9.0}], {"seconds"}) == []


def test_a_changed_verdict_and_a_missing_row_are_differences() -> None:
    other = {**ROW, "config": {"pool": "threads"}}
    found = differences([ROW, other], [{**ROW, "verdict": "violated"}], {"seconds"})
    assert any("verdict: 'holds' != 'violated'" in line for line in found)
    assert any(line.startswith("only in the first") and "threads" in line for line in found)


def test_the_html_reports_derived_keys_are_not_differences(tmp_path: Path) -> None:
    """A report from before ``area``/``label``/``lanes`` compares clean with one after."""
    newer = {**ROW, "area": "locks", "label": "x", "messages": [], "lanes": [{"index": 0}]}
    assert differences([ROW], [newer], {"seconds", *DERIVED}) == []
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([ROW]))
    second.write_text(json.dumps([newer]))
    assert main([str(first), str(second)]) == 0
    second.write_text(json.dumps([{**newer, "verdict": "violated"}]))
    assert main([str(first), str(second)]) == 1
