"""harness/timing.py's arithmetic, on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from harness import timing
from harness.timing import Timings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_nested_phase_is_taken_out_of_its_parent() -> None:
    clock = Clock()
    t = Timings(clock)
    with t.phase("move step"):
        clock.now = 2.0
        with t.phase("wait"):
            clock.now = 5.0
        clock.now = 6.0
    assert t.totals["move step"].seconds == pytest.approx(3.0)  # 0-2 and 5-6
    assert t.totals["wait"].seconds == pytest.approx(3.0)


def test_a_scoped_phase_is_named_after_its_parent() -> None:
    clock = Clock()
    t = Timings(clock)
    for parent, spent in (("move step", 1.0), ("move submit", 4.0), ("move step", 2.0)):
        with t.phase(parent), t.phase("wait", scoped=True):
            clock.now += spent
    with t.phase("wait", scoped=True):  # no parent: its own name
        clock.now += 0.5
    assert {k: (v.count, v.seconds) for k, v in t.totals.items()} == {
        "move step/wait": (2, 3.0),
        "move submit/wait": (1, 4.0),
        "move step": (2, 0.0),
        "move submit": (1, 0.0),
        "wait": (1, 0.5),
    }


def test_a_phase_that_raises_is_still_charged_and_its_parent_resumes() -> None:
    clock = Clock()
    t = Timings(clock)
    with t.phase("example"):
        with pytest.raises(RuntimeError), t.phase("send"):
            clock.now = 1.0
            raise RuntimeError
        clock.now = 4.0
    assert t.totals["send"].seconds == pytest.approx(1.0)
    assert t.totals["example"].seconds == pytest.approx(3.0)


def test_the_snapshot_is_ordered_by_time_and_its_shares_add_up() -> None:
    clock = Clock()
    t = Timings(clock)
    for name, spent in (("send", 1.0), ("reset", 3.0), ("send", 1.0)):
        with t.phase(name):
            clock.now += spent
    rows = t.snapshot()
    assert [r["phase"] for r in rows] == ["reset", "send"]
    assert rows[1] == {"phase": "send", "count": 2, "seconds": 2.0, "ms_each": 1000.0,
                       "share": 0.4}  # fmt: skip
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert "reset" in t.report().splitlines()[1]


def test_off_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "enabled", False)
    monkeypatch.setattr(timing, "timings", Timings())
    with timing.phase("send"):
        pass
    assert timing.phase("send") is timing.OFF
    assert timing.timings.totals == {}


def test_on_records_in_the_shared_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "enabled", True)
    monkeypatch.setattr(timing, "timings", Timings())
    with timing.phase("send"):
        pass
    assert timing.timings.totals["send"].count == 1
