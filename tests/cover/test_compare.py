"""The findings comparison: timings never count, anything else does."""

from __future__ import annotations

from properties.compare import differences

ROW = {"property": "p", "config": {"pool": "prefork"}, "verdict": "holds", "seconds": 1.0}


def test_same_rows_but_timings_do_not_differ() -> None:
    assert differences([ROW], [{**ROW, "seconds": 9.0}], {"seconds"}) == []


def test_a_changed_verdict_and_a_missing_row_are_differences() -> None:
    other = {**ROW, "config": {"pool": "threads"}}
    found = differences([ROW, other], [{**ROW, "verdict": "violated"}], {"seconds"})
    assert any("verdict: 'holds' != 'violated'" in line for line in found)
    assert any(line.startswith("only in the first") and "threads" in line for line in found)
