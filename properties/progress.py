"""Progress of a long property run, one line per finished row: how many rows of how
many, what the row ended with, the violations and disagreements so far, and an
estimate of the time left.

The estimate weighs the rows by their seconds in ``.test_durations`` (pytest-split's
file, kept in the repository) and scales them by this run's wall clock so far per
estimated second done: it learns the machine's speed and the xdist workers'
parallelism from the run itself, and a slow row early does not skew it. A row the
file does not know counts as the mean row."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    estimates: dict[str, float] = field(default_factory=dict)  # nodeid -> seconds
    ids: list[str] = field(default_factory=list)  # every row of the run
    done: int = 0
    violated: int = 0  # rows whose invariant failed (predicted or not)
    disagreements: int = 0  # rows that fail their check: a test failure
    running: set[str] = field(default_factory=set)
    finished_ids: set[str] = field(default_factory=set)
    _started: float | None = None

    def began(self, nodeid: str) -> None:
        if self._started is None:
            self._started = self.clock()
        self.running.add(nodeid)

    def finished(self, nodeid: str, rows: list[dict[str, Any]], failed: bool) -> str:
        """Count one finished test and say so in one line."""
        self.running.discard(nodeid)
        self.finished_ids.add(nodeid)
        self.done += 1
        self.disagreements += failed
        verdicts = [r.get("row", r).get("verdict", "?") for r in rows]
        self.violated += sum(v == "violated" for v in verdicts)
        elapsed = self.clock() - (self._started if self._started is not None else self.clock())
        left = self.total - self.done
        eta = f", ~{clock_text(self.left(elapsed))} left" if left > 0 else ""
        what = ", ".join(verdicts) or ("failed" if failed else "passed")
        mark = "  <-- DISAGREES" if failed else ""
        width = len(str(self.total))
        return (
            f"[{self.done:>{width}}/{self.total}] {clock_text(elapsed)}{eta} | "
            f"{self.violated} violated, {self.disagreements} disagreeing | "
            f"{_short(nodeid)}: {what}{mark}"
        )

    def left(self, elapsed: float) -> float:
        """Seconds left: the estimated seconds of the rows not done, at this run's pace."""
        if not self.ids:  # no row list: every row the mean of those done
            return elapsed / self.done * (self.total - self.done)
        known = [self.estimates[i] for i in self.ids if i in self.estimates]
        mean = sum(known) / len(known) if known else 1.0
        cost = {i: self.estimates.get(i, mean) for i in self.ids}
        done = sum(cost[i] for i in self.finished_ids if i in cost)
        todo = sum(c for i, c in cost.items() if i not in self.finished_ids)
        return elapsed / done * todo if done > 0 else 0.0


def load_estimates(path: Path) -> dict[str, float]:
    """pytest-split's durations file; none (or an unreadable one) is no estimates."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def _short(nodeid: str) -> str:
    """``tests/properties/test_locks.py::test_lock[mutual-exclusion-...]`` -> the id."""
    name = nodeid.rsplit("::", 1)[-1]
    return name[name.index("[") + 1 : -1] if "[" in name and name.endswith("]") else name
