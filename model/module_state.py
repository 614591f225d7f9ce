"""Where a module-level value is visible: a pure reference model.

One module global, ``value``, defined in the task module. Every process that imports the
module starts with its own copy at ``IMPORT_VALUE`` (0). The model replays a history of
operations on that global and says, for every read, which values it may return; and it
predicts, per pool, whether the state-sharing properties hold.

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
  caller (``eager_verdict``).

Process names are roles, as in model/history.py: ``w1`` the main worker process,
``w1.c1``, ``w1.c2`` prefork children in order of first use, a trailing ``'`` per
replacement (``w1.c1'``), ``app`` the sending application. A name is one incarnation: a
replacement child always has a new name, introduced by a ``ChildReplaced`` event.

Under controlled scheduling the history is a total order (the harness serialises
executions at scheduling points), so every read has exactly one allowed value; the model
still answers with a set, the shape of every other model's answer (model/locks.py).

This module is pure: no I/O, no Celery or Django import; of ours only model.history, whose
``Event`` its events extend so a worker run records them in the one history.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from model.history import Event
from model.invariants import Violation

StatePool = Literal["prefork", "threads", "solo", "gevent"]
STATE_POOLS: tuple[StatePool, ...] = ("prefork", "threads", "solo", "gevent")
# Where ``value`` lives. Per process: a module global, or Django's LocMemCache (a dict in
# the process: django/core/cache/backends/locmem.py ``_caches``). Shared: one server
# every process talks to (Django's RedisCache, PyMemcacheCache, DatabaseCache).
PER_PROCESS_STORES = ("module", "locmem")
SHARED_STORES = ("redis", "memcached", "db-postgres")
STORES = (*PER_PROCESS_STORES, *SHARED_STORES)
SHARED = "shared"  # the one copy of a shared store, in the replay
# Stores whose set is a read then a write, so two racing sets can drop one silently:
# Django's DatabaseCache ``_base_set`` (django/core/cache/backends/db.py, 5.2) runs
# SELECT, then UPDATE or INSERT, in one transaction, and returns False on any
# DatabaseError. Two first sets of a key both SELECT nothing; the second INSERT hits
# the primary key and is dropped, though ``set()`` returned normally. Found by the
# suite (read-your-writes on db-postgres/prefork/c2), then read in the source.
RACY_SET_STORES = ("db-postgres",)
Prediction = Literal["holds", "violated"]

IMPORT_VALUE = 0  # ``value = 0`` at module level: what every process starts with
APP = "app"


@dataclass(frozen=True)
class StateConfig:
    """One worker serving the scenario.

    ``init_value``: a ``worker_process_init`` handler sets ``value`` to this in every new
    pool child (prefork) or once in the main process (solo); None means no handler does.
    ``parent_value``: the main worker process's copy when it forks its children (the
    worker's start-up code may have written it after the import).
    ``max_tasks_per_child`` only acts on prefork: the other pools have no children.
    ``kills``: the scenarios may SIGKILL a task's process (a prefork child, which the pool
    replaces; the whole worker on the other pools, which is restarted).
    """

    pool: StatePool
    concurrency: int
    max_tasks_per_child: int | None = None
    init_value: int | None = None
    parent_value: int = IMPORT_VALUE
    store: str = "module"
    kills: bool = False

    def __post_init__(self) -> None:
        if self.store not in STORES:
            raise ValueError(f"unknown store {self.store!r}: choose one of {', '.join(STORES)}")
        if self.pool not in STATE_POOLS:
            known = ", ".join(STATE_POOLS)
            raise ValueError(f"unknown pool {self.pool!r}: choose one of {known}")
        if not 1 <= self.concurrency <= 4:
            raise ValueError(f"concurrency {self.concurrency} out of range 1..4")
        if self.pool == "solo" and self.concurrency != 1:
            raise ValueError("the solo pool runs one task at a time: concurrency must be 1")
        if self.shared and (self.init_value is not None or self.parent_value != IMPORT_VALUE):
            raise ValueError(
                "init_value and parent_value set a module global; a shared store "
                f"({self.store}) starts empty in every process"
            )
        if self.max_tasks_per_child is not None and self.max_tasks_per_child < 1:
            # billiard/pool.py Pool.__init__: "maxtasksperchild must be a positive int or None"
            raise ValueError(
                f"max_tasks_per_child {self.max_tasks_per_child} must be a positive int or None"
            )

    @property
    def shared(self) -> bool:
        """One copy for every process (a cache server), not one per process."""
        return self.store in SHARED_STORES

    @property
    def recycles(self) -> bool:
        """Whether children are replaced after a fixed number of tasks."""
        return self.pool == "prefork" and self.max_tasks_per_child is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "store": self.store, "pool": self.pool, "concurrency": self.concurrency,
            "max_tasks_per_child": self.max_tasks_per_child, "init_value": self.init_value,
            "kills": self.kills,
        }  # fmt: skip

    def label(self) -> str:
        """``prefork/c2/mtpc1``; a store other than the module global leads:
        ``redis/threads/c2``."""
        store = "" if self.store == "module" else f"{self.store}/"
        extra = ""
        if self.max_tasks_per_child is not None:
            extra += f"/mtpc{self.max_tasks_per_child}"
        if self.init_value is not None:
            extra += f"/init{self.init_value}"
        if self.parent_value != IMPORT_VALUE:
            extra += f"/parent{self.parent_value}"
        if self.kills:
            extra += "/kill"
        return f"{store}{self.pool}/c{self.concurrency}{extra}"


def parse_label(label: str) -> StateConfig:
    """The config ``StateConfig.label()`` printed:
    ``[store/]pool/cN[/mtpcK][/initV][/kill]``."""
    parts = label.split("/")
    store = parts.pop(0) if parts and parts[0] in STORES else "module"
    if len(parts) < 2 or parts[0] not in STATE_POOLS or not re.fullmatch(r"c\d+", parts[1]):
        raise ValueError(
            f"a state config reads '[store/]pool/cN[/mtpcK][/initV][/kill]', got {label!r}"
        )
    pool: StatePool = parts[0]
    kw: dict[str, int] = {}
    kills = parts[-1] == "kill" and len(parts) > 2
    for extra in parts[2 : len(parts) - kills]:
        m = re.fullmatch(r"(mtpc|init)(\d+)", extra)
        if not m:
            raise ValueError(f"unknown part {extra!r} of state config {label!r}")
        kw["max_tasks_per_child" if m[1] == "mtpc" else "init_value"] = int(m[2])
    return StateConfig(pool, int(parts[1][1:]), store=store, kills=kills, **kw)


# --- the events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateEvent(Event):
    """An event of the module-state history."""


@dataclass(frozen=True)
class Write(StateEvent):
    """``task`` set ``value`` in ``process``'s copy."""

    task: str
    process: str
    value: int


@dataclass(frozen=True)
class WriteBegin(StateEvent):
    """``task`` is about to write (a ``Write`` or ``WriteBack`` follows when it is done).
    Only a store whose set is not one atomic step (DatabaseCache) needs it."""

    task: str
    process: str


@dataclass(frozen=True)
class Read(StateEvent):
    task: str
    process: str
    observed: int


@dataclass(frozen=True)
class ReadForUpdate(StateEvent):
    """The read half of ``value += 1`` (the harness can park the task between the halves,
    which is how a threads-pool lost update becomes expressible)."""

    task: str
    process: str
    observed: int


@dataclass(frozen=True)
class WriteBack(StateEvent):
    """The write half of ``value += 1``: ``value`` is what the task wrote (observed + 1)."""

    task: str
    process: str
    value: int


@dataclass(frozen=True)
class ChildReplaced(StateEvent):
    """The pool forked ``new`` from the main worker process in place of ``old`` (old exited
    after max_tasks_per_child, or died). ``old`` is gone from here on."""

    old: str
    new: str


@dataclass(frozen=True)
class Killed(StateEvent):
    """SIGKILL of ``process``. Killing a main worker process kills its prefork children
    too: ``process_initializer`` sets ``platforms.set_pdeathsig('SIGKILL')``.

    Not model.history.Killed: this one names the process as the model does (slots and
    respawns, see harness/staterun.py); the runner records both."""

    process: str


StateOp = Write | Read | ReadForUpdate | WriteBack


def observed(kind: str, task: str, process: str, data: dict[str, Any]) -> StateOp | WriteBegin:
    """The event for a task's report (tasks/state.py): ``read``, ``write``, ``rfu``
    (the read of an increment) or ``wb`` (its write-back)."""
    if kind == "writing":
        return WriteBegin(task, process)
    if kind == "read":
        return Read(task, process, int(data["observed"]))
    if kind == "rfu":
        return ReadForUpdate(task, process, int(data["observed"]))
    if kind == "write":
        return Write(task, process, int(data["value"]))
    if kind == "wb":
        return WriteBack(task, process, int(data["value"]))
    raise ValueError(f"unknown state report {kind!r}")


_READS = (Read, ReadForUpdate)
_WRITES = (Write, WriteBack)


# --- process names ---------------------------------------------------------------------------

Role = Literal["app", "main", "child"]
_MAIN_RE = re.compile(r"(w\d+)('*)")
_CHILD_RE = re.compile(r"(w\d+)\.c(\d+)('*)")


class HistoryError(ValueError):
    """The history contradicts itself (a name the harness cannot have given, an event in a
    dead process, a child running more tasks than its pool lets it): a harness bug, not a
    finding about Celery."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"#{index}: {message}")
        self.index = index


def role_of(process: str) -> Role:
    """``app`` -> app, ``w1`` / ``w1'`` -> main, ``w1.c2`` / ``w1.c2'`` -> child."""
    if process == APP:
        return "app"
    if _MAIN_RE.fullmatch(process):
        return "main"
    if _CHILD_RE.fullmatch(process):
        return "child"
    raise ValueError(
        f"unknown process name {process!r}: expected 'app', 'w1' (main worker process) "
        "or 'w1.c2' (prefork child), with a trailing ' per respawn"
    )


def worker_of(process: str) -> str:
    """``w1.c2'`` -> ``w1`` (the same rule as model/invariants.py worker_of)."""
    return process.split(".", 1)[0].rstrip("'")


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
class Verdict:
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
    if r == "app":
        return "the sending application has its own copy; tasks never change it"
    if w == "app":
        return "the application's writes stay in the application's process"
    if r == "child" and w == "child":
        if worker_of(reader) == worker_of(writer) and reader.rstrip("'") == writer.rstrip("'"):
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
        m = _CHILD_RE.fullmatch(process)
        assert m is not None
        slot, primes = int(m.group(2)), m.group(3)
        if primes:
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
        if ev.new.rstrip("'") != ev.old.rstrip("'") or len(ev.new) <= len(ev.old):
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

    def read(self, index: int, ev: Read | ReadForUpdate) -> Verdict:
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
        return Verdict(index, ev.task, ev.process, frozenset(allowed), ev.observed, why)


def allowed_reads(config: StateConfig, events: Sequence[object]) -> list[Verdict]:
    """Replay ``events`` and judge every ``Read`` / ``ReadForUpdate``: the value its
    process's copy holds at that point of the history. Events of other types (a mixed
    history's lock events) are skipped. Raises ``HistoryError`` for a history that
    cannot be right about itself."""
    replay = _Replay(config)
    out: list[Verdict] = []
    for i, ev in enumerate(events):
        if isinstance(ev, _READS):
            out.append(replay.read(i, ev))
        elif isinstance(ev, _WRITES):
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


def mismatches(config: StateConfig, events: Sequence[object]) -> list[Verdict]:
    """The reads whose observed value the model does not allow."""
    return [v for v in allowed_reads(config, events) if not v.ok]


# --- invariants --------------------------------------------------------------------------------


def _ended_by(ev: object, process: str) -> bool:
    """Whether ``ev`` ends ``process``'s incarnation (kill, pdeathsig, replacement)."""
    if isinstance(ev, ChildReplaced):
        return ev.old == process
    if isinstance(ev, Killed):
        main_killed = ev.process != APP and "." not in ev.process
        return ev.process == process or (
            main_killed and "." in process and worker_of(ev.process) == worker_of(process)
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
        if isinstance(ev, _WRITES):
            latest = (i, ev.task, ev.process, ev.value)
        elif isinstance(ev, _READS) and latest is not None:
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
    slots = 1 if pool == "solo" else n
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
      kills, violated everywhere (a replacement child or restarted worker starts fresh).
    - sender-sees-task-writes: violated on every pool (the sender is another process).
    - no-lost-update-unsynchronized: violated iff threads or gevent with concurrency >= 2.
    - no-lost-update-locked: holds.
    """
    return _rule(config, prop, kills or config.kills)[0]


def why(config: StateConfig, prop: str, *, kills: bool = False) -> str:
    """The reason for ``expected_verdict(config, prop, kills=kills)``, with its sources."""
    return _rule(config, prop, kills or config.kills)[1]


def eager_verdict(prop: str) -> Prediction:
    """With ``task_always_eager`` every property holds: ``Task.apply_async`` calls
    ``Task.apply`` (celery/app/task.py), which runs the task inline, to completion, in the
    caller's process — one shared copy of the globals, one task at a time, no broker, no
    child. This is why eager tests pass where real workers fail (celery-semantics.md §6)."""
    _spec_of(prop)
    return "holds"


def eager_why(prop: str) -> str:
    _spec_of(prop)
    return (
        "task_always_eager: apply_async calls apply (celery/app/task.py), which runs the task "
        "inline in the caller's process, so the caller and every task share one copy of the "
        "module's globals and tasks run one at a time; real pools differ "
        f"({_S6}: eager tests can pass where real workers fail)"
    )
