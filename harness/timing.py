"""Where a scenario's time goes, by phase: ``SUITE_PROFILE_MOVES=1``.

The harness marks its phases with ``phase(name)``: an example, each move by kind, the
quiescence waits, a send, the reset between examples. Each phase is charged its own
time only (a wait inside a move counts as the wait, not the move), so the shares add
up to the time measured. A wait is named after the phase it waits in (``move
step/wait``): the same wait costs differently after a step than after a submit.

With the variable unset, ``phase`` returns one shared no-op context manager: no
clock is read and nothing is stored. With it set, the totals print to stderr when
the process exits and ``properties.bench`` puts them in its rows (``snapshot``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

ENV = "SUITE_PROFILE_MOVES"


@dataclass
class Total:
    count: int = 0
    seconds: float = 0.0


class Timings:
    """Exclusive time per phase. ``clock`` is injectable so the arithmetic is testable
    without sleeping."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.totals: dict[str, Total] = {}
        # Open phases: [key, time charged to it so far, when it was last resumed].
        self._stack: list[list[Any]] = []

    @contextlib.contextmanager
    def phase(self, name: str, scoped: bool = False) -> Iterator[None]:
        now = self.clock()
        key = name
        if self._stack:
            parent = self._stack[-1]
            parent[1] += now - parent[2]  # the parent is paused while this one runs
            if scoped:
                key = f"{parent[0]}/{name}"
        frame: list[Any] = [key, 0.0, now]
        self._stack.append(frame)
        try:
            yield
        finally:
            end = self.clock()
            self._stack.pop()
            total = self.totals.setdefault(key, Total())
            total.count += 1
            total.seconds += frame[1] + end - frame[2]
            if self._stack:
                self._stack[-1][2] = end  # the parent resumes

    def reset(self) -> None:
        self.totals.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        """Rows by time spent, most first: phase, count, seconds, ms each, share."""
        spent = sum(t.seconds for t in self.totals.values()) or 1.0
        rows = sorted(self.totals.items(), key=lambda kv: -kv[1].seconds)
        return [
            {
                "phase": key,
                "count": t.count,
                "seconds": round(t.seconds, 3),
                "ms_each": round(1000 * t.seconds / t.count, 2),
                "share": round(t.seconds / spent, 3),
            }
            for key, t in rows
        ]

    def report(self) -> str:
        lines = [f"{'phase':<32} {'count':>7} {'seconds':>9} {'ms each':>9} {'share':>6}"]
        for r in self.snapshot():
            lines.append(
                f"{r['phase']:<32} {r['count']:>7} {r['seconds']:>9.3f} "
                f"{r['ms_each']:>9.2f} {100 * r['share']:>5.1f}%"
            )
        return "\n".join(lines)


enabled = os.environ.get(ENV) == "1"
timings = Timings()
OFF: AbstractContextManager[None] = contextlib.nullcontext()


def phase(name: str, scoped: bool = False) -> AbstractContextManager[None]:
    """Charge the time inside the ``with`` block to ``name`` (see the module doc)."""
    if not enabled:
        return OFF
    return timings.phase(name, scoped)


def snapshot() -> list[dict[str, Any]]:
    return timings.snapshot()


def _print_at_exit() -> None:
    if timings.totals:
        print(f"\n{ENV}: time by phase (pid {os.getpid()})\n{timings.report()}", file=sys.stderr)


if enabled:
    atexit.register(_print_at_exit)
