"""How a search chooses moves: the swarm scheduler, exact replays, the simplest finish.

Every runner offers the enabled moves, sorted and named by task, and asks a chooser
for one (``harness`` runners' ``run(tasks, choose)``). Hypothesis is one chooser
(``Scheduler``); a scenario line played back is another (``exact``).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from harness.runs.base import Chooser

# Per example, how often the scheduler switches executions and injects faults: 1 in
# 2**k moves. Swarm testing (Groce et al., ISSTA 2012): examples differ in *kind*, so
# some run one execution deep into its critical section and others interleave finely.
SWITCHING = st.integers(min_value=0, max_value=3)
FAULTS = st.integers(min_value=1, max_value=4)
# Moves that only let the scenario go on; everything else is a fault to the scheduler.
PROGRESS = ("submit", "step", "resume")
# The simplest finish may also commit a sender's transaction.
CALM = (*PROGRESS, "commit")


def _one_in(data: st.DataObject, k: int) -> bool:
    """True with odds 1 in 2**k; shrinks to False."""
    n = (1 << k) - 1
    return n == 0 or data.draw(st.integers(0, n)) == n


class Scheduler:
    """Chooses each move from the enabled ones, drawing every decision from Hypothesis.

    Progress (submit, step, resume) sticks with the execution it last stepped unless a
    switch is drawn; a fault (kill, pause, expire) is drawn rarely. Every draw shrinks
    towards "no switch, no fault", so a shrunk counterexample keeps only the
    interleaving and the faults it needs.
    """

    def __init__(
        self,
        data: st.DataObject,
        switching: int,
        faults: int,
        calm: tuple[str, ...] = PROGRESS,
        sticky: tuple[str, ...] = ("step",),
    ) -> None:
        self.data, self.switching, self.faults = data, switching, faults
        self.calm, self.sticky = calm, sticky  # an area's progress moves, and which stick
        self.current: str | None = None

    def __call__(self, enabled: list[str]) -> str:
        calm = [m for m in enabled if m.startswith(self.calm)]
        faults = [m for m in enabled if m not in calm]
        if faults and (not calm or _one_in(self.data, self.faults)):
            return self.data.draw(st.sampled_from(faults))
        if self.current in calm and not _one_in(self.data, self.switching):
            move = self.current
        else:
            move = self.data.draw(st.sampled_from(calm))
        self.current = move if move.startswith(self.sticky) else None
        return move


def schedule(
    data: st.DataObject, calm: tuple[str, ...] = PROGRESS, sticky: tuple[str, ...] = ("step",)
) -> Scheduler:
    """A Scheduler with this example's switching and fault odds."""
    return Scheduler(
        data, data.draw(SWITCHING, label="switching"), data.draw(FAULTS, label="faults"),
        calm, sticky,
    )  # fmt: skip


def simplest(enabled: list[str]) -> str:
    """How a scenario cut short (hand-written, edited, tightened, an attack's tail) runs
    to its end: the first calm move in the runner's order (its lowest execution steps,
    tasks are submitted in order, a transaction commits), else the first move."""
    return next((m for m in enabled if m.startswith(CALM)), enabled[0])


class ReplayDiverged(Exception):
    """A replayed move is not enabled: the run went another way than the recorded one."""


def exact(moves: Sequence[str]) -> Chooser:
    """Play ``moves`` exactly, then finish the simplest way."""
    queue = list(moves)

    def choose(enabled: list[str]) -> str:
        if not queue:
            return simplest(enabled)
        move = queue.pop(0)
        if move not in enabled:
            raise ReplayDiverged(f"move {move!r} is not enabled; enabled: {enabled}")
        return move

    return choose


def watching(choose: Chooser, offered: list[list[str]]) -> Chooser:
    """``choose``, keeping each enabled set it is offered in ``offered``. Hypothesis
    draws a move as an index into that set, so two runs of the same choices that were
    offered different sets go different ways (FlakyStrategyDefinition) even where
    every move they played was enabled in both: the sets are what to compare."""

    def watched(enabled: list[str]) -> str:
        offered.append(list(enabled))
        return choose(enabled)

    return watched


def first_difference(a: Sequence[list[str]], b: Sequence[list[str]]) -> str:
    """Where two runs' enabled sets first differ ("" if they never do)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"at move {i + 1}: {x} against {y}"
    if len(a) != len(b):
        return f"one run was offered {len(a)} sets, the other {len(b)}"
    return ""


def lenient(moves: Sequence[str]) -> Chooser:
    """Play ``moves``, skipping any that is not enabled, then finish the simplest way."""
    queue = list(moves)

    def choose(enabled: list[str]) -> str:
        while queue:
            move = queue.pop(0)
            if move in enabled:
                return move
        return simplest(enabled)

    return choose
