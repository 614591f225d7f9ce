"""Module-state properties: their checkers, and what the model predicts per config.

The checkers read the recorded events alone; the replay (model/state.py) says what
every read may return, and a read it does not allow is a model mismatch whatever the
property. ``_rule`` is the one decision tree: ``expected_verdict`` and ``why`` both
read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from model.config import RACY_SET_STORES, StateConfig
from model.history import (
    READS,
    WRITES,
    ChildReplaced,
    Killed,
    ReadForUpdate,
    StateEvent,
    Write,
    WriteBack,
)
from model.invariants import Violation
from model.processes import APP, is_child, worker_of
from model.state import SHARED
from model.verdict import Prediction


def _ended_by(ev: object, process: str) -> bool:
    """Whether ``ev`` ends ``process``'s incarnation (kill, pdeathsig, replacement)."""
    if isinstance(ev, ChildReplaced):
        return ev.old == process
    if isinstance(ev, Killed):
        main_killed = ev.process != APP and not is_child(ev.process)
        return ev.process == process or (
            main_killed and is_child(process) and worker_of(ev.process) == worker_of(process)
        )
    return False


@dataclass
class _Increment:
    task: str
    read_at: int
    observed: int
    status: Literal["reading", "live", "lost", "superseded"] = "reading"
    lost_at: int = -1
    lost_to: str = ""
    wrote: int = 0
    written_at: int = -1


def lost_updates(events: Sequence[object], *, shared: bool = False) -> list[Violation]:
    """No lost update within one process: every completed increment (``ReadForUpdate``
    then ``WriteBack`` by the same task in the same process) is still counted in the
    process's final value — which is then its starting value plus the number of completed
    increments.

    Each process's copy carries the set of increments its value includes. A
    ``WriteBack`` by J replaces it with the set J's read saw, plus J; an increment that
    falls out is lost (J read before its write landed: the "lost update" P4 of Berenson
    et al., "A Critique of ANSI SQL Isolation Levels", 1995). A later write-back whose read
    still included it brings it back. A plain ``Write`` sets an absolute value: the
    increments it overwrites are superseded, not lost. One violation per increment lost at
    the end (or when its process died), at the write-back that dropped it. Processes never
    share a copy (celery-semantics.md §6), so increments in two prefork children are
    never compared: the property is per process. With ``shared`` every process reads
    and writes one copy (a cache server): increments in two processes can then race,
    and a kill loses only the killed task's own unfinished increment.
    """
    included: dict[str, set[int]] = {}  # process -> ids of the increments its value includes
    pending: dict[tuple[str, str], tuple[int, set[int]]] = {}  # (task, proc) -> (id, seen)
    incs: list[_Increment] = []
    for i, ev in enumerate(events):
        if isinstance(ev, ChildReplaced | Killed):
            for proc in [p for p in included if _ended_by(ev, p) and p != SHARED]:
                del included[proc]
            for key in [k for k in pending if _ended_by(ev, k[1])]:
                del pending[key]  # died between its read and its write-back: never completed
            continue
        where = SHARED if shared and isinstance(ev, StateEvent) else getattr(ev, "process", "")
        if isinstance(ev, ReadForUpdate):
            inc = _Increment(ev.task, i, ev.observed)
            incs.append(inc)
            pending[(ev.task, ev.process)] = (len(incs) - 1, set(included.get(where, ())))
        elif isinstance(ev, WriteBack) and (ev.task, ev.process) in pending:
            me, seen = pending.pop((ev.task, ev.process))
            before = included.get(where, set())
            now = seen | {me}
            for k in before - now:
                incs[k].status, incs[k].lost_at, incs[k].lost_to = "lost", i, ev.task
            for k in now:
                incs[k].status = "live"
            incs[me].wrote, incs[me].written_at = ev.value, i
            included[where] = now
        elif isinstance(ev, Write | WriteBack):
            for k in included.get(where, ()):
                incs[k].status = "superseded"
            included[where] = set()
    out: list[Violation] = []
    for inc in incs:
        if inc.status != "lost":
            continue
        out.append(
            Violation(
                "lost_updates",
                inc.lost_at,
                (inc.task, inc.lost_to),
                f"{inc.task}'s increment ({inc.observed} -> {inc.wrote} at #{inc.written_at}) "
                f"was overwritten at #{inc.lost_at} by {inc.lost_to}, whose read came before "
                "it: the final value is less than the number of completed increments",
            )
        )
    return sorted(out, key=lambda v: (v.index, v.executions))


def _stale_reads(
    events: Sequence[object], invariant: str, judged: Callable[[str, str], bool]
) -> list[Violation]:
    """Reads that miss the latest write of the whole history, for the reader/writer pairs
    ``judged(reader, writer)`` selects. A single shared copy would make every read return
    the latest write; only reads after some selected write are judged."""
    latest: tuple[int, str, str, int] | None = None  # (index, task, process, value)
    out: list[Violation] = []
    for i, ev in enumerate(events):
        if isinstance(ev, WRITES):
            latest = (i, ev.task, ev.process, ev.value)
        elif isinstance(ev, READS) and latest is not None:
            j, task, proc, value = latest
            if judged(ev.process, proc) and ev.observed != value:
                out.append(
                    Violation(
                        invariant,
                        i,
                        (task, ev.task),
                        f"{ev.task} ({ev.process}) read {ev.observed} at #{i}, but {task} "
                        f"({proc}) wrote {value} at #{j}",
                    )
                )
    return out


def read_your_writes(events: Sequence[object]) -> list[Violation]:
    """A task reads the latest value any task wrote before it, wherever the two ran. Reads
    and writes of the ``app`` process are out of scope (sender_sees_task_writes)."""
    return _stale_reads(
        events, "read_your_writes", lambda reader, writer: APP not in (reader, writer)
    )


def sender_sees_task_writes(events: Sequence[object]) -> list[Violation]:
    """The sending application reads the latest value a task wrote (when the latest write
    is a task's, not its own)."""
    return _stale_reads(
        events, "sender_sees_task_writes", lambda reader, writer: reader == APP != writer
    )


Checker = Callable[[Sequence[object]], list[Violation]]


# --- properties and predictions ----------------------------------------------------------------


@dataclass(frozen=True)
class StateProperty:
    name: str
    statement: str
    check: Checker


PROPERTIES: dict[str, StateProperty] = {
    p.name: p
    for p in (
        StateProperty(
            "read-your-writes-across-tasks",
            "a value a task writes to a module global is read by every later task",
            read_your_writes,
        ),
        StateProperty(
            "sender-sees-task-writes",
            "the application that sent a task reads what the task wrote to a module global",
            sender_sees_task_writes,
        ),
        StateProperty(
            "no-lost-update-unsynchronized",
            "concurrent unsynchronized `value += 1` in one process loses no increment",
            lost_updates,
        ),
        StateProperty(
            "no-lost-update-locked",
            "`value += 1` under a per-process lock loses no increment",
            lost_updates,
        ),
    )
}


def violations(config: StateConfig, prop: str, events: Sequence[object]) -> list[Violation]:
    """``prop``'s invariant on ``events`` recorded under ``config`` (a shared store's
    increments are judged on its one copy)."""
    if _spec_of(prop).check is lost_updates:
        return lost_updates(events, shared=config.shared)
    return _spec_of(prop).check(events)


def _spec_of(prop: str) -> StateProperty:
    try:
        return PROPERTIES[prop]
    except KeyError:
        known = ", ".join(PROPERTIES)
        raise KeyError(f"unknown property {prop!r}: choose one of {known}") from None


_S6 = "celery-semantics.md §6"


_SHARED_WHY = (
    "one server holds the value for every process (django/core/cache/backends/redis.py, "
    "memcached.py, db.py: each get/set is a round trip to it), so a write that completed "
    "is what every later read returns"
)


def _shared_rule(config: StateConfig, prop: str) -> tuple[Prediction, str]:
    pool, n, store = config.pool, config.concurrency, config.store
    slots = (1 if pool == "solo" else n) * config.queues  # tasks that can run at once
    if prop in ("read-your-writes-across-tasks", "sender-sees-task-writes"):
        if store in RACY_SET_STORES and slots >= 2:
            return "violated", (
                f"{store} on {pool}/{n}: Django's DatabaseCache set is SELECT then INSERT or "
                "UPDATE (django/core/cache/backends/db.py _base_set); two tasks setting a new "
                "key at once both SELECT nothing, the second INSERT hits the primary key, and "
                "_base_set swallows the DatabaseError: set() returns normally, the write is "
                "gone, and later reads see the other task's value"
            )
        return "holds", (
            f"{store}: {_SHARED_WHY}, whichever process wrote and whichever reads, the "
            f"sending application included; a kill loses no completed write ({_S6})"
        )
    if slots == 1:
        return "holds", (
            f"{store} on {pool} with one slot: one task at a time, so an increment's get "
            "and set are never split by another task's"
        )
    if prop == "no-lost-update-unsynchronized":
        return "violated", (
            f"{store}: get then set is two round trips, and {n} tasks run at once ({pool}); "
            "two can get the same value and both set value + 1. A shared store shares the "
            "race too: it does not matter that they run in different processes"
        )
    if pool == "prefork":
        return "violated", (
            f"{store} on prefork/{n}: the threading.Lock is a module global, so each child "
            f"has its own ({_S6}); it serialises nothing across children, which all get and "
            "set the one shared value. A cross-process lock (the store's own, or an atomic "
            "INCR) is what this needs"
        )
    return "holds", (
        f"{store} on {pool}/{n}: every task runs in one process, and the threading.Lock "
        "held from get to set serialises them"
    )


def _rule(config: StateConfig, prop: str, kills: bool) -> tuple[Prediction, str]:
    _spec_of(prop)
    if config.shared:
        return _shared_rule(config, prop)
    pool, n = config.pool, config.concurrency
    if prop == "read-your-writes-across-tasks" and config.queues > 1:
        return "violated", (
            f"two workers, each consuming its own queue: a task sent to the other queue runs "
            f"in the other worker, another process with its own copy of the module's "
            f"globals, whatever the pool ({pool} shares one copy among one worker's tasks "
            f"at most; {_S6})"
        )
    if prop == "read-your-writes-across-tasks":
        if pool == "prefork":
            if n >= 2:
                return "violated", (
                    f"prefork with {n} children: task B may run in another child than task A, "
                    "and each child has its own copy of the module's globals, forked from the "
                    f"main worker process ({_S6}; billiard forks, celery/concurrency/prefork.py "
                    "process_initializer runs in the child), so B reads the value the child "
                    "was forked with, not A's write"
                )
            if config.max_tasks_per_child is not None:
                return "violated", (
                    f"prefork with one child, but max_tasks_per_child="
                    f"{config.max_tasks_per_child}: billiard recycles the child after that many "
                    "tasks (billiard/pool.py Worker.workloop returns EX_RECYCLE) and forks a "
                    "fresh one from the main worker process, whose copy never saw A's write, so "
                    f"B reads parent_value or the worker_process_init value ({_S6})"
                )
            if kills:
                return "violated", (
                    "prefork with one child, but a killed child is replaced by a fresh fork of "
                    f"the main worker process whose copy never saw A's write ({_S6})"
                )
            return "holds", (
                "prefork with one child and no replacement (no max_tasks_per_child, no kill): "
                "every task runs in the same child, one at a time, on the same copy of the "
                f"module's globals ({_S6})"
            )
        if kills:
            return "violated", (
                f"the {pool} pool runs every task in the main worker process, but a kill takes "
                "the whole worker down and the restarted worker imports the module afresh: B "
                f"reads the start-up value, not A's write ({_S6})"
            )
        return "holds", (
            f"the {pool} pool runs every task in one process, the main worker process, so all "
            f"tasks share one copy of the module's globals and a later task reads the latest "
            f"write ({_S6}; celery/concurrency/"
            f"{'thread' if pool == 'threads' else pool}.py runs tasks in-process)"
        )
    if prop == "sender-sees-task-writes":
        where = (
            "in pool children forked from the main worker process"
            if pool == "prefork"
            else "in the worker's own process"
        )
        return "violated", (
            f"the {pool} pool runs the task {where}, never in the application that sent it; "
            "the message carries arguments, not memory, so the sender's copy of the module's "
            f"globals keeps its own value ({_S6}). Only task_always_eager, which runs the "
            "task inline in the caller's process, would share it (see eager_verdict)"
        )
    if prop == "no-lost-update-unsynchronized":
        if pool in ("threads", "gevent") and n >= 2:
            how = (
                "threads preempt anywhere"
                if pool == "threads"
                else "greenlets switch at any I/O, and the suite's scheduling point between "
                "the read and the write-back is I/O (without a yield in between, gevent's "
                "cooperative switching could not split them)"
            )
            return "violated", (
                f"the {pool} pool runs {n} tasks at once in one process sharing one copy of "
                f"the global ({_S6}); `value += 1` is a read then a write, and {how}: two "
                "tasks read the same value and both write value + 1, losing an increment"
            )
        if pool == "prefork":
            return "holds", (
                "each prefork child runs one task at a time (billiard/pool.py Worker.workloop "
                "takes the next task only after the previous returned), and the property is "
                "per process: no two increments interleave on one copy. Across children the "
                f"increments land in separate copies ({_S6}), so their sum is not one counter, "
                "but that is read-your-writes, not a lost update"
            )
        one = "runs" if pool == "solo" else "with concurrency 1 runs"
        return "holds", (
            f"the {pool} pool {one} one task at a time (celery/concurrency/"
            f"{'thread' if pool == 'threads' else pool}.py, limit {n}), in one process whose "
            f"copy of the global no other process touches ({_S6}): an increment's read and "
            "write-back are never split by another task's"
        )
    # no-lost-update-locked
    return "holds", (
        "the read and the write-back run under one lock per process (threading.Lock, which "
        "gevent's monkey-patching turns into a greenlet lock), so no other increment in the "
        "process can fall between them; prefork children and solo run one task at a time "
        f"anyway, and the property is per process ({_S6})"
    )


def expected_verdict(config: StateConfig, prop: str, *, kills: bool = False) -> Prediction:
    """What the model predicts for ``prop`` on one worker with ``config``; ``kills``: the
    property's scenarios may kill worker processes. "violated" means some scenario breaks
    the property (the suite must find one); "holds" that none may.

    - read-your-writes-across-tasks: holds iff all tasks share one copy: threads, solo and
      gevent, and prefork with one child never replaced (no max_tasks_per_child); with
      kills, violated everywhere (a replacement child or restarted worker starts fresh);
      with two workers on two queues, violated on every pool.
    - sender-sees-task-writes: violated on every pool (the sender is another process).
    - no-lost-update-unsynchronized: violated iff threads or gevent with concurrency >= 2.
    - no-lost-update-locked: holds.
    """
    return _rule(config, prop, kills or config.kills)[0]


def why(config: StateConfig, prop: str, *, kills: bool = False) -> str:
    """The reason for ``expected_verdict(config, prop, kills=kills)``, with its sources."""
    return _rule(config, prop, kills or config.kills)[1]


def _eager_rule(prop: str) -> tuple[Prediction, str]:
    _spec_of(prop)
    return "holds", (
        "task_always_eager: apply_async calls apply (celery/app/task.py), which runs the task "
        "inline in the caller's process, so the caller and every task share one copy of the "
        "module's globals and tasks run one at a time; real pools differ "
        f"({_S6}: eager tests can pass where real workers fail)"
    )


def eager_verdict(prop: str) -> Prediction:
    """With ``task_always_eager`` every property holds: ``Task.apply_async`` calls
    ``Task.apply`` (celery/app/task.py), which runs the task inline, to completion, in the
    caller's process — one shared copy of the globals, one task at a time, no broker, no
    child. This is why eager tests pass where real workers fail (celery-semantics.md §6)."""
    return _eager_rule(prop)[0]


def eager_why(prop: str) -> str:
    return _eager_rule(prop)[1]
