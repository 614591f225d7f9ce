"""Progress of a long property run, one line per finished row: how many rows of how
many, what the row ended with, the violations and disagreements so far, and an
estimate of the time left (wall clock so far per finished row, so several xdist
workers are counted as they really run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def clock_text(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Progress:
    total: int = 0
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    violated: int = 0  # rows whose invariant failed (predicted or not)
    disagreements: int = 0  # rows that fail their check: a test failure
    running: set[str] = field(default_factory=set)
    _started: float | None = None

    def began(self, nodeid: str) -> None:
        if self._started is None:
            self._started = self.clock()
        self.running.add(nodeid)

    def finished(self, nodeid: str, rows: list[dict[str, Any]], failed: bool) -> str:
        """Count one finished test and say so in one line."""
        self.running.discard(nodeid)
        self.done += 1
        self.disagreements += failed
        verdicts = [r.get("row", r).get("verdict", "?") for r in rows]
        self.violated += sum(v == "violated" for v in verdicts)
        elapsed = self.clock() - (self._started if self._started is not None else self.clock())
        left = self.total - self.done
        eta = f", ~{clock_text(elapsed / self.done * left)} left" if left > 0 else ""
        what = ", ".join(verdicts) or ("failed" if failed else "passed")
        mark = "  <-- DISAGREES" if failed else ""
        width = len(str(self.total))
        return (
            f"[{self.done:>{width}}/{self.total}] {clock_text(elapsed)}{eta} | "
            f"{self.violated} violated, {self.disagreements} disagreeing | "
            f"{_short(nodeid)}: {what}{mark}"
        )


def _short(nodeid: str) -> str:
    """``tests/properties/test_locks.py::test_lock[mutual-exclusion-...]`` -> the id."""
    name = nodeid.rsplit("::", 1)[-1]
    return name[name.index("[") + 1 : -1] if "[" in name and name.endswith("]") else name
