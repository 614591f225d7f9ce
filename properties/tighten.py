"""A last, domain-aware shrink of a counterexample: drop moves while it still fails.

Hypothesis shrinks the choices it drew, but on real workers every shrink step costs a
whole scenario, so its budget runs out on long examples. This pass works on the move
list itself: it removes one move at a time (faults first, then submits, then steps),
replays the rest leniently — a move that is no longer enabled is skipped, and the run
is finished in the simplest order — and keeps the shorter list whenever the same
invariant still fails. Every kept list is the exact list of moves that ran, so the
printed reproduction stays exact.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.cluster import Cluster
from harness.runs.lock import LockRun, LockRunner
from model import lock_properties
from properties.schedule import lenient

Judge = Callable[[LockRun], object | None]


def _order(moves: list[str]) -> list[int]:
    """Indices to try removing: faults first, then submits, then steps; later first."""

    def rank(i: int) -> tuple[int, int]:
        verb = moves[i].split(" ", 1)[0]
        return ({"kill": 0, "pause": 0, "resume": 0, "expire": 0, "submit": 1}.get(verb, 2), -i)

    return sorted(range(len(moves)), key=rank)


def _candidates(moves: list[str]) -> list[list[str]]:
    """Shorter move lists to try, each with one move removed."""
    return [moves[:i] + moves[i + 1 :] for i in _order(moves)]


def size(moves: list[str]) -> tuple[int, int, int]:
    """Fewer tasks first, then fewer faults, then fewer moves."""
    faults = sum(m.split(" ", 1)[0] in ("kill", "pause", "expire") for m in moves)
    return moves.count("submit"), faults, len(moves)


def tighten(
    cluster: Cluster,
    run: LockRun,
    prop: str,
    still_fails: Callable[[LockRun], bool],
    budget: int = 60,
) -> LockRun:
    """The smallest run found within ``budget`` replays that still fails."""
    runner = LockRunner(cluster, run.config, frozenset(lock_properties.PROPERTIES[prop].moves))
    best = run
    spent = 0

    def attempt(candidate: list[str]) -> LockRun | None:
        """The run of ``candidate`` if it is smaller than the best and still fails."""
        nonlocal spent
        spent += 1
        tried = runner.run(candidate.count("submit"), lenient(candidate))
        return tried if size(tried.moves) < size(best.moves) and still_fails(tried) else None

    improved = True
    while improved and spent < budget:
        improved = False
        # The shortest prefix that still fails, the rest run in the simplest order.
        # Bisection: log2(n) replays where trying every cut took up to n (a prefix of
        # a failing prefix usually fails no longer, a longer one still does).
        lo, hi = 1, len(best.moves) - 1
        while lo < hi and spent < budget:
            mid = (lo + hi) // 2
            if (tried := attempt(best.moves[:mid])) is not None:
                best, improved = tried, True
                hi = min(mid, len(best.moves) - 1)
            else:
                lo = mid + 1
        if improved:
            continue
        for candidate in _candidates(best.moves):
            if spent >= budget:
                break
            if (tried := attempt(candidate)) is not None:
                best, improved = tried, True
                break
    return best
