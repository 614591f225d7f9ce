"""Invariants: small checkers over a history, in the style of Jepsen's checkers.

Each checker looks at the recorded events alone (no lock semantics) and returns the
places where the system did something unsafe. They apply to built-in and plug-in locks
alike; whether a violation is a finding or a test failure is decided by
``model.lock_properties``.

The critical section of the invoice task is the span between a successful
``AcquireEnd`` and the execution's ``ReleaseBegin``; a lease is the right to be there,
and it ends at the next ``Expired`` of its key (the TTL ran out: Celery's task cookbook,
docs/tutorials/task-cookbook.rst, "Ensuring a task is only executed one at a time").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from model.history import (
    AcquireBegin,
    AcquireEnd,
    Event,
    Expired,
    Finished,
    InvoiceCount,
    InvoiceCreated,
    Killed,
    Paused,
    ReleaseBegin,
    ReleaseEnd,
    Restarted,
    Started,
)
from model.processes import worker_of


@dataclass(frozen=True)
class Violation:
    invariant: str  # the checker's name: mutual_exclusion, exactly_one_invoice, ...
    index: int  # the event at which the violation became visible
    executions: tuple[str, ...]
    message: str

    def describe(self) -> str:
        return f"#{self.index} {self.invariant}: {self.message}"


# --- who runs where, who is dead ---------------------------------------------------------


class Executions:
    """Follows which process each execution runs in and when it died.

    ``Killed(p)`` ends every execution whose ``Started.process`` is ``p`` (a SIGKILL of a
    prefork child does not touch its siblings or the main process). ``Restarted(w)``
    comes after ``w``'s main process died; the worker's processes are new, so every
    execution still counted alive in one of ``w``'s processes is treated as dead too.
    """

    def __init__(self) -> None:
        self.process: dict[str, str] = {}
        self.died: dict[str, int] = {}  # execution -> index of the event that ended it

    def alive(self, execution: str) -> bool:
        return execution not in self.died

    def processes_erased(self, event: Event) -> set[str]:
        """Processes whose memory this event wipes (process-scope lock state)."""
        if isinstance(event, Killed):
            return {event.process}
        if isinstance(event, Restarted):
            known = set(self.process.values())
            return {p for p in known if worker_of(p) == event.worker}
        return set()

    def observe(self, index: int, event: Event) -> list[str]:
        """Apply ``event``; return the executions that died at it, in start order."""
        if isinstance(event, Started):
            self.process[event.execution] = event.process
            self.died.pop(event.execution, None)
            return []
        if isinstance(event, Killed):
            victims = [e for e, p in self.process.items() if p == event.process]
        elif isinstance(event, Restarted):
            victims = [e for e, p in self.process.items() if worker_of(p) == event.worker]
        else:
            return []
        victims = [e for e in victims if self.alive(e)]
        for e in victims:
            self.died[e] = index
        return victims


# --- (a) lease mutual exclusion ------------------------------------------------------------


def mutual_exclusion(events: Sequence[Event]) -> list[Violation]:
    """Never two executions inside the critical section on one key while both leases
    are unexpired. A new overlap can only start at a successful ``AcquireEnd``, so that
    is where it is checked; an execution leaves at ``ReleaseBegin``, ``Finished`` or
    its death."""
    lives = Executions()
    inside: dict[str, tuple[str, int]] = {}  # execution -> (key, index of its AcquireEnd)
    lapsed: set[str] = set()  # inside, but its lease has expired
    out: list[Violation] = []
    for i, ev in enumerate(events):
        for dead in lives.observe(i, ev):
            inside.pop(dead, None)
        if isinstance(ev, AcquireEnd) and ev.acquired:
            for other, (key, since) in inside.items():
                if key == ev.key and other != ev.execution and other not in lapsed:
                    where = lives.process.get(other, "?")
                    here = lives.process.get(ev.execution, "?")
                    out.append(
                        Violation(
                            "mutual_exclusion",
                            i,
                            (other, ev.execution),
                            f"{ev.execution} ({here}) acquired {key} at #{i} while {other} "
                            f"({where}) was inside the critical section since #{since} "
                            "with an unexpired lease",
                        )
                    )
            inside[ev.execution] = (ev.key, i)
            lapsed.discard(ev.execution)
        elif isinstance(ev, ReleaseBegin | Finished):
            inside.pop(ev.execution, None)
        elif isinstance(ev, Expired):
            lapsed.update(e for e, (key, _) in inside.items() if key == ev.key)
    return out


# --- (b) exactly one invoice -----------------------------------------------------------------


def exactly_one_invoice(events: Sequence[Event]) -> list[Violation]:
    """The final ``InvoiceCount`` of every order is 1. An order without a count is not
    judged (the harness reads every order back; a missing count is its bug to report)."""
    final: dict[str, tuple[int, int]] = {}  # order -> (index, count); the last one wins
    creators: dict[str, list[str]] = {}
    for i, ev in enumerate(events):
        if isinstance(ev, InvoiceCount):
            final[ev.order] = (i, ev.count)
        elif isinstance(ev, InvoiceCreated):
            creators.setdefault(ev.order, []).append(ev.execution)
    out: list[Violation] = []
    for order, (i, count) in final.items():
        if count == 1:
            continue
        made = creators.get(order, [])
        by = f"created by {', '.join(made)}" if made else "no execution reported creating one"
        out.append(
            Violation(
                "exactly_one_invoice",
                i,
                tuple(made),
                f"order {order} has {count} invoices, expected exactly 1 ({by})",
            )
        )
    return out


# --- (c) no orphaned lock -------------------------------------------------------------------


def _attempt_windows(events: Sequence[Event]) -> list[tuple[str, str, int, int, bool | None]]:
    """Every acquire attempt as (execution, key, begin, end, acquired). ``end`` is the
    ``AcquireEnd`` or, for an attempt cut short, the death of its execution or the end of
    the history (acquired is then None)."""
    lives = Executions()
    open_: dict[str, tuple[str, int]] = {}
    out: list[tuple[str, str, int, int, bool | None]] = []
    for i, ev in enumerate(events):
        for dead in lives.observe(i, ev):
            if dead in open_:
                key, begin = open_.pop(dead)
                out.append((dead, key, begin, i, None))
        if isinstance(ev, AcquireBegin):
            if ev.execution in open_:  # a second begin without an end: close the first
                key, begin = open_.pop(ev.execution)
                out.append((ev.execution, key, begin, i, None))
            open_[ev.execution] = (ev.key, i)
        elif isinstance(ev, AcquireEnd) and ev.execution in open_:
            key, begin = open_.pop(ev.execution)
            out.append((ev.execution, key, begin, i, ev.acquired))
    out.extend((e, key, begin, len(events), None) for e, (key, begin) in open_.items())
    return sorted(out, key=lambda a: a[2])


def _lease_spans(events: Sequence[Event]) -> list[tuple[str, str, int, int]]:
    """Every lease as (execution, key, from, to): from its successful ``AcquireEnd`` to
    its holder's ``ReleaseEnd`` or the next ``Expired`` of the key. A kill does not end
    it: an orphaned server-side entry stays until it expires (celery-semantics.md §7),
    and counting it keeps the check conservative for process-scope locks too."""
    out: list[tuple[str, str, int, int]] = []
    for i, ev in enumerate(events):
        if not (isinstance(ev, AcquireEnd) and ev.acquired):
            continue
        end = len(events)
        for j in range(i + 1, len(events)):
            later = events[j]
            if (isinstance(later, Expired) and later.key == ev.key) or (
                isinstance(later, ReleaseEnd)
                and later.execution == ev.execution
                and later.key == ev.key
            ):
                end = j
                break
        out.append((ev.execution, ev.key, i, end))
    return out


def no_orphaned_lock(events: Sequence[Event]) -> list[Violation]:
    """A lock whose holder died must come back once its lease expires.

    Armed when an execution is killed while holding the key (acquired, not yet past
    ``ReleaseEnd``) or while inside its acquire, and an ``Expired`` of the key follows the
    kill. The first acquire attempt that begins after that expiry and is uncontended —
    no other attempt's window overlaps its own, and no lease taken after the expiry is
    live at any time in its window — must return True. A successful acquire of the key
    by anyone disarms it (the lock is evidently usable again).
    """
    attempts = _attempt_windows(events)
    leases = _lease_spans(events)
    by_begin = {a[2]: a for a in attempts}
    lives = Executions()
    holding: dict[str, str] = {}  # execution -> key, AcquireEnd(True) .. ReleaseEnd
    acquiring: dict[str, str] = {}  # execution -> key, AcquireBegin .. AcquireEnd
    orphans: dict[str, tuple[str, int]] = {}  # key -> (victim, kill index), awaiting expiry
    armed: dict[str, tuple[str, int, int]] = {}  # key -> (victim, kill index, expiry index)
    out: list[Violation] = []
    for i, ev in enumerate(events):
        for dead in lives.observe(i, ev):
            for held in (holding.pop(dead, None), acquiring.pop(dead, None)):
                if held is not None:
                    orphans[held] = (dead, i)
        if isinstance(ev, Expired) and ev.key in orphans:
            victim, killed_at = orphans.pop(ev.key)
            armed[ev.key] = (victim, killed_at, i)
        elif isinstance(ev, AcquireBegin):
            acquiring[ev.execution] = ev.key
            if ev.key in armed:
                v = _judge_after_orphan(ev.execution, ev.key, by_begin[i], attempts, leases)
                if v is not None:
                    victim, killed_at, expired_at = armed.pop(ev.key)
                    out.append(
                        Violation(
                            "no_orphaned_lock",
                            v,
                            (victim, ev.execution),
                            f"{ev.execution} was refused {ev.key} at #{v} although {victim} "
                            f"was killed holding it at #{killed_at}, its lease expired at "
                            f"#{expired_at}, and nobody else held or wanted it meanwhile",
                        )
                    )
        elif isinstance(ev, AcquireEnd):
            acquiring.pop(ev.execution, None)
            if ev.acquired:
                holding[ev.execution] = ev.key
                armed.pop(ev.key, None)
        elif isinstance(ev, ReleaseEnd):
            holding.pop(ev.execution, None)
    return out


def _judge_after_orphan(
    execution: str,
    key: str,
    attempt: tuple[str, str, int, int, bool | None],
    attempts: Sequence[tuple[str, str, int, int, bool | None]],
    leases: Sequence[tuple[str, str, int, int]],
) -> int | None:
    """The index of the refusing ``AcquireEnd`` if this attempt is uncontended and was
    refused; None if it succeeded, was cut short, or was contended."""
    _, _, begin, end, acquired = attempt
    if acquired is None:
        return None
    for other, k, b, e, _ in attempts:
        if k == key and other != execution and b < end and e > begin:
            return None
    for _holder, k, start, stop in leases:
        # ``start < end`` leaves out the lease this very attempt produced.
        if k == key and start < end and stop > begin:
            return None
    return None if acquired else end


# --- the precondition of (b) -----------------------------------------------------------------


def outlived_lease(events: Sequence[Event]) -> bool:
    """Whether a kill, pause or expiry hit an execution while it held the lock
    (successful ``AcquireEnd`` .. ``ReleaseEnd``) or was inside its acquire. Without such
    a move no lock is asked to do more than plain mutual exclusion; with one, exactly one
    invoice needs a fencing token (Kleppmann, "How to do distributed locking", 2016)."""
    lives = Executions()
    busy: dict[str, str] = {}  # execution -> key, from AcquireBegin to ReleaseEnd
    for i, ev in enumerate(events):
        if isinstance(ev, Killed | Restarted | Paused):
            erased = {ev.process} if isinstance(ev, Killed | Paused) else lives.processes_erased(ev)
            if any(lives.process.get(e) in erased for e in busy):
                return True
            for dead in lives.observe(i, ev):
                busy.pop(dead, None)
            continue
        lives.observe(i, ev)
        if isinstance(ev, Expired) and ev.key in busy.values():
            return True
        if isinstance(ev, AcquireBegin):
            busy[ev.execution] = ev.key
        elif isinstance(ev, ReleaseEnd | Finished) or (
            isinstance(ev, AcquireEnd) and not ev.acquired
        ):
            busy.pop(ev.execution, None)
    return False


Checker = Callable[[Sequence[Event]], list[Violation]]

CHECKERS: dict[str, Checker] = {
    "mutual_exclusion": mutual_exclusion,
    "exactly_one_invoice": exactly_one_invoice,
    "no_orphaned_lock": no_orphaned_lock,
}
