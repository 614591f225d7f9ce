"""The controller: the test-process end of the control channel.

Every worker process keeps an *agent* connection (hello on start, EOF on death); every
thread that runs an execution keeps an *execution* connection on which it parks at each
scheduling point. Everything happens in the caller's thread: it reads the sockets
(harness/wire.py), applies the events and makes every decision (which execution to
release, when the system is quiescent), so there is no hand-off between threads on
the hot path. What a report adds to the history is harness/recorder.py's; the
accounting of each task's message is harness/accounting.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import ordering, recorder, timing
from harness.accounting import Message
from harness.errors import HarnessError, HarnessTimeout
from harness.wire import Wire
from model import history as h

# A wait this long means something is wrong (a lost message, a dead worker, a statement
# blocked on a lock held by a parked execution); it is never part of a scenario.
DEFAULT_TIMEOUT = 30.0


@dataclass
class Proc:
    """A worker process that said hello."""

    pid: int
    worker: str
    role: str  # main | child
    index: int | None
    conn: int
    name: str = ""  # given at first use in an example (see Controller._name)
    alive: bool = True
    paused: bool = False


@dataclass
class Execution:
    id: str  # t1, t1#2 for a second run of the same task
    task: str
    pid: int
    process: str
    conn: int
    state: str = "parked"  # parked | running | done | dead
    point: str = "start"
    phase: str = "start"  # start | acquiring | holding | refused | releasing | released
    acquiring_points: int = 0  # points reached inside the acquire call
    releasing_points: int = 0  # points reached inside the release call
    acquired: bool = False
    status: str | None = None  # how the body ended: ok | error
    stored: str | None = None  # the state Celery stored for it once it returned
    retried: int | None = None  # the retry level it published, if it called retry()
    exhausted: bool = False  # its retry() found max_retries used up
    holds_lock: bool = False  # holds its process's state lock (tasks/state.py)


@dataclass
class Gate:
    """A job held at a gate inside Celery's pool (tasks/patches/gates.py)."""

    task: str
    name: str  # accept (in the child) | accepted (in the main process)
    pid: int
    conn: int
    alive: bool = True


class Controller:
    def __init__(self) -> None:
        self.wire = Wire()
        self.address = self.wire.address

        self.clock = 0.0  # virtual seconds added by expiry moves
        self.procs: dict[int, Proc] = {}
        self.executions: dict[str, Execution] = {}
        self.history = h.History()
        self.aliases: dict[str, str] = {}  # celery worker name -> display alias (w1)
        self.expiries = 0
        self._accepting: set[str] = set()  # tasks the current example submitted
        # Pool children as their parent sees them (tasks/patches/child_order.py): taken
        # in, and jobs started in / results taken back from each, by pid.
        self.up: set[int] = set()
        self.started_on: dict[int, int] = {}
        self.freed_on: dict[int, int] = {}
        # Every key this example's tasks stored in memcached (tasks/instrument/memcache.py).
        self.memcached_keys: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._conn_exec: dict[int, str] = {}
        self._conn_pid: dict[int, int] = {}
        self._named: dict[str, int] = {}  # names handed out this example, per prefix
        self._deferred: list[tuple[int, dict[str, Any]]] = []
        self.anomalies: list[str] = []
        self.messages: dict[str, Message] = {}  # task id -> message, this example
        self._reports: list[h.Event] = []  # broker / backend reports not yet in history
        self.adopted: set[tuple[str, str]] = set()  # (worker, queue) it now consumes
        self.dropped: dict[str, int] = {}  # worker -> broker connections it was told to drop
        self._last_exec: dict[int, str] = {}  # channel -> the execution that ended on it
        # Delivery runs: several executions can start between two quiescent points
        # (a restore hands out several messages), their starts racing each other.
        self.defer_starts = False
        self._starts: list[h.Started] = []
        self._receipts: list[h.Received] = []
        self._fresh: list[Proc] = []  # processes first named since the last flush
        self.gates: set[tuple[str, str]] = set()  # (gate, task) to hold once this example
        self.held: dict[str, Gate] = {}  # task -> where its job is held

    def close(self) -> None:
        self.wire.close()

    # --- applying events (all in the caller's thread: no hand-off, one order) ----------

    def pump(self, timeout: float) -> bool:
        """Apply one event if one arrives within ``timeout``; False if none did."""
        events = self.wire.events
        if not events:
            self.wire.read(timeout)
            if not events:
                return False
        cid, msg = events.popleft()
        self._apply(cid, msg)
        return True

    def wait(
        self,
        done: Callable[[], bool],
        what: str | Callable[[], str],
        timeout: float = DEFAULT_TIMEOUT,
        check: Callable[[], None] | None = None,
        poll: float = 0.5,
    ) -> None:
        """Apply events until ``done()``; ``check()`` may raise to stop early. ``what``
        names what is awaited, in the timeout's message; a callable is asked only then.

        ``poll`` bounds the time between two looks at ``done()`` when it also reads
        state no event announces (a broker queue)."""
        with timing.phase("wait", scoped=True):
            deadline = time.monotonic() + timeout
            while not done():
                if check is not None:
                    check()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessTimeout(
                        f"timed out after {timeout:.0f}s waiting for "
                        f"{what() if callable(what) else what}; "
                        f"executions: {self.describe()}"
                    )
                self.pump(min(left, poll))

    def _apply(self, cid: int, msg: dict[str, Any] | None) -> None:
        if msg is None:
            self._closed(cid)
            return
        kind = msg.get("t")
        if kind in ("recv", "ack", "reject", "handled", "state", "skipped"):
            recorder.message_report(self, kind, msg, cid)
        elif kind == "adopted":
            self.adopted.add((msg["worker"], msg["queue"]))
        elif kind == "dropped":
            self.dropped[msg["worker"]] = self.dropped.get(msg["worker"], 0) + 1
        elif kind == "memcached-key":
            self.memcached_keys.add(msg["key"])
        elif kind == "up":
            self.up.add(msg["pid"])
        elif kind == "free":
            self.freed_on[msg["pid"]] = self.freed_on.get(msg["pid"], 0) + 1
        elif kind == "hello":
            self._hello(cid, msg)
        elif kind == "gate":
            self._gate(cid, msg)
        elif kind == "start":
            # Once per job, here: a start that waits for its process's hello is deferred
            # and goes through _start again.
            self.started_on[msg["pid"]] = self.started_on.get(msg["pid"], 0) + 1
            self._receipts_first()
            self._start(cid, msg)
        else:
            x = self._conn_exec.get(cid)
            ex = self.executions.get(x) if x else None
            if ex is None:
                return  # a message from an execution of an earlier example
            if kind == "point":
                ex.state, ex.point = "parked", msg["p"]
                if ex.phase == "acquiring":
                    ex.acquiring_points += 1
                elif ex.phase == "releasing":
                    ex.releasing_points += 1
                self.history.append(h.Point(ex.id, msg["p"]))
            elif kind == "rec":
                recorder.record(self, ex, msg)
            elif kind == "end":
                ex.state, ex.status = "done", msg["status"]
                self._last_exec[cid] = ex.id
                self.history.append(h.Finished(ex.id, msg["status"], msg.get("error")))
                del self._conn_exec[cid]

    def _gate(self, cid: int, msg: dict[str, Any]) -> None:
        """Hold the job if the scenario asked for it at this gate (once), else let it
        pass at once. A held job gets no answer: its process waits until it is killed."""
        m = self.messages.get(msg["id"])
        key = (msg["p"], m.task) if m is not None else None
        if key is None or key not in self.gates:
            self.wire.send(cid, {"go": True, "clock": self.clock})
            return
        self.gates.discard(key)
        self.held[key[1]] = Gate(key[1], key[0], int(msg["pid"]), cid)

    def _receipts_first(self) -> None:
        """Apply every receipt already sent before an execution's start.

        The main process reports a receipt before it hands the job to a pool child,
        so by the time the child's start arrives the receipt is in our socket buffer;
        a zero-timeout read takes it in, and the history says "received" before
        "starts" every time, whichever socket select() happens to list first."""
        self.wire.read(0)
        events = self.wire.events
        receipts = [ev for ev in events if ev[1] is not None and ev[1].get("t") == "recv"]
        for ev in receipts:
            events.remove(ev)
            self._apply(*ev)

    def flush(self) -> None:
        """Append what was deferred since the last quiescent point: receipts, then
        starts, then the broker and backend reports, each grouped by task.

        They come from several processes over several connections, so their arrival
        order is a race; each task's own reports keep their order (they are causally
        ordered), and tasks go in name order, so the history is the same every run."""
        receipts = ordering.receipts(self._receipts)
        starts = self._canonical_starts()
        self._receipts, self._starts = [], []
        self.history.events.extend(receipts)  # a receipt before the start it causes
        self.history.events.extend(starts)
        reports, self._reports = self._reports, []
        self.history.events.extend(ordering.by_task(reports))

    def _hello(self, cid: int, msg: dict[str, Any]) -> None:
        worker, role, index = msg["worker"], msg["role"], msg.get("index")
        proc = Proc(msg["pid"], worker, role, index, cid)
        self.procs[proc.pid] = proc
        self._conn_pid[cid] = proc.pid
        deferred, self._deferred = self._deferred, []
        for item in deferred:
            self._start(*item)

    def _start(self, cid: int, msg: dict[str, Any]) -> None:
        task = msg["x"]
        tid = msg.get("id")
        if not task and tid in self.messages:  # a plug-in canvas's task: named by its id
            task = self.messages[tid].task
        # Task names repeat across examples; a delivery run's task ids do not, so a
        # message left over from an earlier example is told so, not taken for this t1.
        stale = task not in self._accepting or (
            tid is not None and bool(self.messages) and tid not in self.messages
        )
        if stale:
            self.wire.send(
                cid, {"stale": True, "why": f"{task} ({tid}) is not part of this example"}
            )
            return
        pid = msg["pid"]
        if pid not in self.procs:  # its hello is still in flight on the agent connection
            self._deferred.append((cid, msg))
            return
        n = self._attempts.get(task, 0) + 1
        self._attempts[task] = n
        x = task if n == 1 else f"{task}#{n}"
        proc = self.procs[pid]
        if not proc.name and self.defer_starts:
            self._fresh.append(proc)
        self.name_of(proc)
        self.executions[x] = Execution(x, task, pid, proc.name, cid)
        self._conn_exec[cid] = x
        started = h.Started(
            x, task, proc.name, bool(msg.get("redelivered")), int(msg.get("level", 0))
        )
        if self.defer_starts:
            self._starts.append(started)
        else:
            self.history.append(started)

    def _canonical_starts(self) -> list[h.Started]:
        """Executions that started since the last quiescent point, renamed in a
        canonical order.

        Several can start between two quiescent points (a restore hands out several
        messages; a retry's message arrives while its parent runs), and which start
        message arrives first is a race, so the attempt numbers (t1#5, t1#6) and the
        first-use process names (w2.c1, w2.c2) given on arrival are too. They are
        handed out again here by task, retry level and redelivered flag; runs equal in
        all three are interchangeable, so arrival order decides only among equals."""
        starts = self._starts
        ranked, renamed = ordering.renumbered(starts)
        # Process names first given in this interval go to the runs in the new order.
        names: dict[tuple[str, str], list[str]] = {}
        for p in self._fresh:  # only swapped among processes of one worker and role
            names.setdefault((p.worker, p.role), []).append(p.name)
        for group in names.values():
            group.sort(key=ordering.name_order)
        by_pid = {p.pid: p for p in self._fresh}
        execs = {e.execution: self.executions.pop(e.execution) for e in starts}
        for e in ranked:
            ex = execs[e.execution]
            proc = by_pid.pop(ex.pid, None)
            if proc is not None:
                proc.name = names[(proc.worker, proc.role)].pop(0)
        out = []
        for e in ranked:
            ex = execs[e.execution]
            ex.id = renamed[e.execution]
            ex.process = self.procs[ex.pid].name
            self.executions[ex.id] = ex
            if self._conn_exec.get(ex.conn) == e.execution:
                self._conn_exec[ex.conn] = ex.id
            out.append(h.Started(ex.id, e.task, ex.process, e.redelivered, e.level))
        self._fresh = []
        return sorted(out, key=lambda e: ordering.natural(e.execution))

    def name_of(self, proc: Proc) -> str:
        """The process's name in this example, given now if it has none yet."""
        if not proc.name:
            proc.name = self._name(proc)
        return proc.name

    def _name(self, proc: Proc) -> str:
        alias = self.aliases.get(proc.worker, proc.worker)
        prefix = alias if proc.role == "main" else f"{alias}.c"
        n = self._named.get(prefix, 0) + 1
        self._named[prefix] = n
        return alias + "'" * (n - 1) if proc.role == "main" else f"{prefix}{n}"

    def _closed(self, cid: int) -> None:
        self.wire.forget(cid)
        pid = self._conn_pid.pop(cid, None)
        if pid is not None and pid in self.procs:
            self.procs[pid].alive = False
        for g in self.held.values():
            if g.conn == cid:
                g.alive = False
        x = self._conn_exec.pop(cid, None)
        if x is not None and x in self.executions:
            ex = self.executions[x]
            if ex.state != "done":
                ex.state = "dead"

    # --- the moves' primitives --------------------------------------------------------

    def begin_example(self) -> h.History:
        # Processes are named in the order the example first runs something in them
        # (w1.c1, w1.c2, ...; w1, w1' for a main process and its replacement). Which
        # pool child the parent picks is not ours to decide, but the order in which
        # executions start is, so the names, and the timelines, replay identically.
        self.forget_dead()
        self._named = {}
        for p in self.procs.values():
            p.name = ""
        self.history = h.History()
        self.executions = {}
        self._accepting = set()
        self.memcached_keys = set()
        self._attempts = {}
        self.expiries = 0
        self.anomalies = []
        self.messages = {}
        self._reports = []
        self._starts = []
        self._receipts = []
        self._fresh = []
        self.gates = set()
        self.held = {}
        return self.history

    def accept(self, task: str, task_id: str | None = None) -> None:
        """Executions of ``task`` belong to this example; ``task_id`` is its Celery id,
        for the delivery reports."""
        self._accepting.add(task)
        if task_id is not None:
            self.messages[task_id] = Message(task)

    def report(self, event: h.Event) -> None:
        """A broker-side event the runner observed: in the history at the next flush,
        with the reports of its task."""
        self._reports.append(event)

    def receipt(self, event: h.Received) -> None:
        """A worker received a task's message: in the history now, or, while starts
        are deferred, at the next flush, before the starts."""
        if self.defer_starts:
            self._receipts.append(event)
        else:
            self.history.append(event)

    def last_execution(self, cid: int) -> Execution | None:
        """The execution that last ended on channel ``cid``, if any."""
        return self.executions.get(self._last_exec.get(cid, ""))

    def command(self, proc: Proc, msg: dict[str, Any]) -> None:
        """Send a command to a worker's main process on its agent connection."""
        self.wire.send(proc.conn, msg)

    def release(self, x: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Let a parked execution run to its next point (or its end)."""
        ex = self.executions[x]
        if ex.state != "parked":
            raise HarnessError(f"cannot release {x}: it is {ex.state}")
        ex.state = "running"
        self.wire.send(ex.conn, {"go": True, "clock": self.clock})
        self.wait(lambda: ex.state != "running", f"{x} to reach its next scheduling point", timeout)

    def started(self, task: str) -> Execution | None:
        for ex in self.executions.values():
            if ex.task == task and ex.state != "dead":
                return ex
        return None

    def live(self) -> list[Execution]:
        return [e for e in self.executions.values() if e.state in ("parked", "running")]

    def procs_of(self, worker: str) -> list[Proc]:
        return [p for p in self.procs.values() if p.worker == worker and p.alive]

    def unsettled(self, procs: list[Proc]) -> list[Proc]:
        """The pool children among ``procs`` that the harness counts as free and their
        parent does not: not taken in yet (``up``), or a job's result not taken back
        (``free``) although the execution ended. Their parent would give the next job
        to another child (tasks/patches/child_order.py)."""
        busy = {e.pid for e in self.live()}
        return [
            p for p in procs
            if p.role == "child" and p.pid not in busy and (
                p.pid not in self.up
                or self.started_on.get(p.pid, 0) > self.freed_on.get(p.pid, 0)
            )
        ]  # fmt: skip

    def forget_dead(self) -> None:
        """Drop processes known to be gone (keeps the table small across examples)."""
        dead = {pid for pid, p in self.procs.items() if not p.alive}
        self.procs = {pid: p for pid, p in self.procs.items() if p.alive}
        # Only the dead: a parent's "up" may come before its child's hello.
        self.up -= dead
        for pid in dead:
            self.started_on.pop(pid, None)
            self.freed_on.pop(pid, None)

    def describe(self) -> str:
        parts = [f"{e.id}@{e.process}:{e.state}:{e.point}" for e in self.executions.values()]
        return ", ".join(parts) or "none"
