"""Where a module-level value is visible: the replay.

One module global, ``value``, defined in the task module. Every process that imports the
module starts with its own copy at ``IMPORT_VALUE`` (0). The model replays a history of
operations on that global (model/history.py ``StateEvent``) and says, for every read,
which values it may return; model/state_properties.py judges the properties and
predicts, per pool, whether they hold.

Sources (celery-semantics.md section 6, "Module-level state and processes"):

- Task modules are imported once in the main worker process. Prefork children are forked
  from it by billiard (``os.fork``: a copy-on-write copy of the parent's memory at fork
  time), then ``worker_process_init`` fires in the child
  (celery/concurrency/prefork.py ``process_initializer``, last line).
- Each prefork child has its own module globals: a write in one child is invisible to the
  other children, to the main worker process and to the application that sent the task.
- A replacement child (after ``worker_max_tasks_per_child``, ``worker_max_memory_per_child``
  or a death) is forked fresh, so its module state is the parent's copy again. billiard's
  ``Worker.workloop`` (billiard/pool.py) runs tasks ``while completed < maxtasks`` and then
  exits with ``EX_RECYCLE``; the pool forks a replacement.
- threads (celery/concurrency/thread.py, a ``ThreadPoolExecutor``) and gevent
  (celery/concurrency/gevent.py, a ``gevent.pool.Pool``): one process, globals shared by
  every task, races possible. solo (celery/concurrency/solo.py): one process, one task at a
  time. The solo pool sends ``worker_process_init`` itself, in the main process, when it is
  created; threads and gevent never send it.
- ``task_always_eager`` runs tasks inline in the caller's process: state is shared with the
  caller (model/state_properties.py ``eager_verdict``).

Process names are roles (model/processes.py): ``w1`` the main worker process,
``w1.c1``, ``w1.c2`` prefork children in order of first use, a trailing ``'`` per
replacement (``w1.c1'``), ``app`` the sending application. A name is one incarnation: a
replacement child always has a new name, introduced by a ``ChildReplaced`` event.

Under controlled scheduling the history is a total order (the harness serialises
executions at scheduling points), so every read has exactly one allowed value; the model
still answers with a set, the shape of every other model's answer (model/locks.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from model.config import IMPORT_VALUE, RACY_SET_STORES, StateConfig
from model.history import (
    READS,
    WRITES,
    ChildReplaced,
    Killed,
    Read,
    ReadForUpdate,
    Write,
    WriteBack,
    WriteBegin,
)
from model.processes import Role, parse, role_of, unprimed, worker_of

SHARED = "shared"  # the one copy of a shared store, in the replay


class HistoryError(ValueError):
    """The history contradicts itself (a name the harness cannot have given, an event in a
    dead process, a child running more tasks than its pool lets it): a harness bug, not a
    finding about Celery."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"#{index}: {message}")
        self.index = index


def child_after(config: StateConfig, tasks_run: int) -> bool:
    """Whether a prefork child that has completed ``tasks_run`` tasks exits now and is
    replaced by a fresh fork: billiard's ``Worker.workloop`` runs
    ``while maxtasks is None or completed < maxtasks`` and returns ``EX_RECYCLE`` when
    ``completed == maxtasks`` (billiard/pool.py). Never for threads/solo/gevent."""
    if tasks_run < 0:
        raise ValueError(f"tasks_run {tasks_run} is negative")
    n = config.max_tasks_per_child
    return config.pool == "prefork" and n is not None and tasks_run >= n


# --- replay ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadVerdict:
    """What the model allows for one ``Read`` / ``ReadForUpdate``."""

    index: int
    task: str
    process: str
    expected: frozenset[int]
    observed: int
    why: str

    @property
    def ok(self) -> bool:
        return self.observed in self.expected

    def describe(self) -> str:
        allowed = " or ".join(str(v) for v in sorted(self.expected)) or "nothing"
        status = "ok" if self.ok else "MISMATCH"
        return (
            f"#{self.index} {self.task} in {self.process}: read {self.observed}, "
            f"expected {allowed} ({status}) — {self.why}"
        )


@dataclass(frozen=True)
class _Copy:
    value: int
    note: str  # how it came to hold ``value``: "t1 wrote 5 at #3"


def _unseen_write_reason(reader: str, writer: str) -> str:
    r, w = role_of(reader), role_of(writer)
    if "app" not in (r, w) and worker_of(reader) != worker_of(writer):
        return (
            f"{worker_of(reader)} and {worker_of(writer)} are two workers (one per queue): "
            "two processes, two copies"
        )
    if r == "app":
        return "the sending application has its own copy; tasks never change it"
    if w == "app":
        return "the application's writes stay in the application's process"
    if r == "child" and w == "child":
        if unprimed(reader) == unprimed(writer):
            return "a replacement child is forked fresh from the main worker process"
        return "each prefork child has its own copy of module globals"
    if r == "main" and w == "child":
        return "a child's writes never reach the main worker process"
    if r == "child" and w == "main":
        return "a child sees the main process's copy only as it was when the child was forked"
    return "another process's copy"  # main vs main: another worker, or a restarted one


class _Replay:
    def __init__(self, config: StateConfig) -> None:
        self.config = config
        self.copies: dict[str, _Copy] = {}  # live process -> its copy
        self.dead: dict[str, int] = {}  # process -> index of the event that ended it
        self.main_of: dict[str, str] = {}  # worker -> its latest main incarnation
        self.tasks: dict[str, list[str]] = {}  # child -> tasks seen running in it, in order
        self.last_write: tuple[int, str, str, int] | None = None  # (index, task, proc, value)
        self.writing: dict[tuple[str, str], int] = {}  # (task, process) -> index of WriteBegin
        # For racy stores: the values of completed writes that overlapped the write whose
        # value the store is taken to hold (either may be the one that landed).
        self.racing: dict[str, set[int]] = {}
        self.done: list[tuple[int, int, int]] = []  # completed writes: (begin, end, value)

    # -- births

    def _check_role(self, index: int, process: str) -> Role:
        try:
            role = role_of(process)
        except ValueError as exc:
            raise HistoryError(index, str(exc)) from None
        if role == "child" and self.config.pool != "prefork":
            raise HistoryError(
                index, f"{process} is a pool child, but the {self.config.pool} pool has none"
            )
        return role

    def _init(self, value: int, note: str) -> tuple[int, str]:
        if self.config.init_value is None:
            return value, note
        return self.config.init_value, (
            f"{note}, then worker_process_init set it to {self.config.init_value}"
        )

    def _fork_source(self, worker: str) -> tuple[int, str]:
        main = self.main_of.get(worker)
        if main is not None and main in self.copies:
            c = self.copies[main]
            return c.value, f"forked from {main} holding {c.value}"
        how = "a restarted" if main is not None else "the main process"
        return self.config.parent_value, (
            f"forked from {how} {worker} holding parent_value {self.config.parent_value}"
        )

    def _born(self, index: int, process: str) -> _Copy:
        role = self._check_role(index, process)
        cfg = self.config
        if role == "app":
            return _Copy(IMPORT_VALUE, f"app imported the module ({IMPORT_VALUE})")
        if role == "main":
            worker = worker_of(process)
            prior = self.main_of.get(worker)
            if prior is not None and prior in self.copies:
                raise HistoryError(
                    index, f"{process} appears while {prior}, the same worker's main, is alive"
                )
            self.main_of[worker] = process
            value, note = (
                cfg.parent_value,
                f"{process} started with parent_value {cfg.parent_value}",
            )
            if cfg.pool == "solo":  # celery/concurrency/solo.py TaskPool.__init__
                value, note = self._init(value, note)
            return _Copy(value, note)
        name = parse(process)
        slot = name.slot
        assert slot is not None
        if name.primes:
            raise HistoryError(
                index, f"{process} is a replacement child that no ChildReplaced introduced"
            )
        if slot > cfg.concurrency:
            raise HistoryError(
                index,
                f"{process}: a pool of {cfg.concurrency} forks children c1..c{cfg.concurrency}",
            )
        # Forked at pool start, before any task ran: the parent held parent_value.
        value, note = self._init(
            cfg.parent_value,
            f"{process} was forked at pool start from {worker_of(process)} holding "
            f"parent_value {cfg.parent_value}",
        )
        return _Copy(value, note)

    def key(self, process: str) -> str:
        """Whose copy ``process`` reads and writes: its own, or the shared store's."""
        return SHARED if self.config.shared else process

    def copy_of(self, index: int, process: str) -> _Copy:
        if process in self.dead:
            raise HistoryError(
                index, f"{process} was ended at #{self.dead[process]}: nothing runs in it"
            )
        if self.config.shared:
            self._check_role(index, process)
            if SHARED not in self.copies:
                self.copies[SHARED] = _Copy(
                    IMPORT_VALUE, f"nothing written to {self.config.store} yet (default)"
                )
            return self.copies[SHARED]
        if process not in self.copies:
            self.copies[process] = self._born(index, process)
        return self.copies[process]

    def _end(self, index: int, process: str) -> None:
        self.copies.pop(process, None)
        self.dead.setdefault(process, index)

    # -- events

    def note_task(self, index: int, task: str, process: str) -> None:
        if role_of(process) != "child":
            return
        seen = self.tasks.setdefault(process, [])
        if task in seen:
            return
        if child_after(self.config, len(seen)):
            raise HistoryError(
                index,
                f"{task} runs in {process} after {', '.join(seen)}: with "
                f"max_tasks_per_child={self.config.max_tasks_per_child} billiard recycles a "
                "child after that many tasks (billiard/pool.py Worker.workloop), so the "
                "history needs a ChildReplaced first",
            )
        seen.append(task)

    def replaced(self, index: int, ev: ChildReplaced) -> None:
        for p in (ev.old, ev.new):
            if self._check_role(index, p) != "child":
                raise HistoryError(index, f"ChildReplaced names {p}, which is not a pool child")
        if worker_of(ev.old) != worker_of(ev.new):
            raise HistoryError(index, f"{ev.new} cannot replace {ev.old}: another worker")
        if ev.new in self.copies or ev.new in self.dead:
            raise HistoryError(index, f"{ev.new} is already in use: a replacement is a new name")
        if unprimed(ev.new) != unprimed(ev.old) or len(ev.new) <= len(ev.old):
            raise HistoryError(
                index, f"{ev.old}'s replacement is named {ev.old}' (a trailing ' per respawn)"
            )
        self._end(index, ev.old)
        source, how = self._fork_source(worker_of(ev.new))
        value, note = self._init(source, f"{ev.new} replaced {ev.old} at #{index}, {how}")
        self.copies[ev.new] = _Copy(value, note)

    def killed(self, index: int, ev: Killed) -> None:
        role = self._check_role(index, ev.process)
        self._end(index, ev.process)
        worker = worker_of(ev.process)
        if role == "main" and self.main_of.setdefault(worker, ev.process) == ev.process:
            # The worker's current main (or, never seen yet, the one that forked the
            # children) died; set_pdeathsig('SIGKILL') in process_initializer takes its
            # children with it.
            for p in [p for p in self.copies if p != SHARED and role_of(p) == "child"]:
                if worker_of(p) == worker:
                    self._end(index, p)

    def begin(self, index: int, ev: WriteBegin) -> None:
        self.writing[(ev.task, ev.process)] = index

    def write(self, index: int, ev: Write | WriteBack) -> None:
        began = self.writing.pop((ev.task, ev.process), index)
        if self.config.store in RACY_SET_STORES:
            # Writes still in flight, and completed ones whose span overlaps this one.
            overlap = {v for _, e, v in self.done if e > began}
            self.done.append((began, index, ev.value))
            self.racing[SHARED] = overlap - {ev.value}
        self.copy_of(index, ev.process)
        self.note_task(index, ev.task, ev.process)
        verb = "wrote back" if isinstance(ev, WriteBack) else "wrote"
        note = f"{ev.task} {verb} {ev.value} in {ev.process} at #{index}"
        self.copies[self.key(ev.process)] = _Copy(ev.value, note)
        self.last_write = (index, ev.task, ev.process, ev.value)

    def read(self, index: int, ev: Read | ReadForUpdate) -> ReadVerdict:
        c = self.copy_of(index, ev.process)
        self.note_task(index, ev.task, ev.process)
        whose = self.config.store if self.config.shared else f"{ev.process}'s copy"
        why = f"{whose} holds {c.value}: {c.note}"
        lw = self.last_write
        if lw is not None and lw[2] != ev.process and lw[3] != c.value:
            j, task, proc, value = lw
            why += (
                f"; {task} wrote {value} in {proc} at #{j}, invisible here "
                f"({_unseen_write_reason(ev.process, proc)}; celery-semantics.md §6)"
            )
        allowed = {c.value}
        if self.config.shared and (others := self.racing.get(SHARED)):
            allowed |= others
            why += (
                f"; or {' or '.join(map(str, sorted(others)))}: a write that raced with it "
                f"(RACY_SET_STORES: {self.config.store}'s set can drop one of two racing sets)"
            )
        return ReadVerdict(index, ev.task, ev.process, frozenset(allowed), ev.observed, why)


def allowed_reads(config: StateConfig, events: Sequence[object]) -> list[ReadVerdict]:
    """Replay ``events`` and judge every ``Read`` / ``ReadForUpdate``: the value its
    process's copy holds at that point of the history. Events of other types (a mixed
    history's lock events) are skipped. Raises ``HistoryError`` for a history that
    cannot be right about itself."""
    replay = _Replay(config)
    out: list[ReadVerdict] = []
    for i, ev in enumerate(events):
        if isinstance(ev, READS):
            out.append(replay.read(i, ev))
        elif isinstance(ev, WRITES):
            replay.write(i, ev)
        elif isinstance(ev, WriteBegin):
            replay.begin(i, ev)
        elif isinstance(ev, ChildReplaced):
            if config.pool != "prefork":
                raise HistoryError(i, f"ChildReplaced on the {config.pool} pool, which has none")
            replay.replaced(i, ev)
        elif isinstance(ev, Killed):
            replay.killed(i, ev)
    return out


def mismatches(config: StateConfig, events: Sequence[object]) -> list[ReadVerdict]:
    """The reads whose observed value the model does not allow."""
    return [v for v in allowed_reads(config, events) if not v.ok]
