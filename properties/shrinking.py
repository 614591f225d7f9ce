"""Shrinking bounded by the number of scenarios it runs, not by seconds.

Hypothesis stops shrinking after ``MAX_SHRINKING_SECONDS``
(hypothesis/internal/conjecture/engine.py). On real workers every shrink step is a
whole scenario, so a time bound made the reported counterexample, and the example
count, depend on how fast the machine was that hour: two ci runs of the same code
printed different counterexamples for the same rows. A bound on shrink *calls* is
deterministic: the same failure, shrunk the same number of steps, is the same
counterexample on any machine. The time bound stays, far above what the call budget
takes, as a net for a scenario that hangs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis.internal.conjecture import engine

# Seconds: only a net. A shrink call costs about a second at most here, so the largest
# call budget (nightly) ends long before it.
TIME_NET = 1800

_budget: int | None = None  # shrink calls the running search may still make
_original = engine.ConjectureRunner.test_function


def _test_function(self: Any, data: Any) -> None:
    """Hypothesis's ``test_function``, ending the run once shrinking has spent its
    calls. Shrinking has begun once the engine set its shrinking deadline; a
    cached choice sequence is not a call (``cached_test_function`` answers it)."""
    if _budget is not None and self.finish_shrinking_deadline is not None:
        spent = self.__dict__.get("_suite_shrink_calls", 0)
        if spent >= _budget:
            self.exit_with(engine.ExitReason.max_shrinks)
        self._suite_shrink_calls = spent + 1
    _original(self, data)


engine.ConjectureRunner.test_function = _test_function  # type: ignore[method-assign]


@contextmanager
def bounded(calls: int) -> Iterator[None]:
    """Shrink a failure found inside this block with at most ``calls`` scenarios."""
    global _budget
    before = _budget, engine.MAX_SHRINKING_SECONDS
    _budget, engine.MAX_SHRINKING_SECONDS = calls, TIME_NET
    try:
        yield
    finally:
        _budget, engine.MAX_SHRINKING_SECONDS = before
