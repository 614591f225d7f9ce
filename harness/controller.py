"""The controller: the test-process end of the control channel.

Every worker process keeps an *agent* connection (hello on start, EOF on death); every
thread that runs an execution keeps an *execution* connection on which it parks at each
scheduling point. Everything happens in the caller's thread: it reads the sockets,
applies the events and makes every decision (which execution to release, when the
system is quiescent), so there is no hand-off between threads on the hot path.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import select
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError, HarnessTimeout
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
    acquired: bool = False
    status: str | None = None  # how the body ended: ok | error
    stored: str | None = None  # the state Celery stored for it once it returned
    retried: int | None = None  # the retry level it published, if it called retry()
    exhausted: bool = False  # its retry() found max_retries used up
    holds_lock: bool = False  # holds its process's state lock (tasks/state.py)


@dataclass
class Message:
    """What the workers said about one task's message (by its task id)."""

    task: str
    received: list[str] = field(default_factory=list)  # worker hostnames, per delivery
    settled_by: list[str] = field(default_factory=list)  # who acked or rejected a delivery
    handled: int = 0  # failures (a lost child included) the main process finished handling
    states: list[str] = field(default_factory=list)
    # (recv|settle, worker, tag, place in the worker's QoS order: Redis only)
    log: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    requeued: int = 0  # deliveries rejected with requeue: the broker owes one more each
    published: int = 0  # retry messages the task's runs published (same task id)
    closed: int = 0  # deliveries handed back by the broker itself (vt, dead connection)
    skipped: list[str] = field(default_factory=list)  # workers that skipped a delivery

    def outstanding(self, worker: str) -> int:
        """Deliveries ``worker`` received and has not acked or rejected."""
        return self.received.count(worker) - self.settled_by.count(worker)

    def held_by(self, worker: str) -> int:
        """How many of the task's messages (a retry publishes another) kombu's virtual
        QoS on ``worker`` counts against its prefetch: it keys deliveries by tag, and a
        redelivered Redis message keeps its tag, so any ack or reject of one delivery
        uncounts them all (kombu/transport/virtual/base.py ``QoS.can_consume``). The
        last call on a tag decides, in the order the worker made the calls (its
        reports arrive on several connections, in any order: tasks/app.py
        ``_QosOrder``)."""
        mine = [e for e in self.log if e[1] == worker]
        if all(e[3] is not None for e in mine):
            mine.sort(key=lambda e: e[3] or 0)
        held: dict[str, bool] = {}
        for kind, _who, tag, _place in mine:
            held[tag] = kind == "recv"
        return sum(held.values())

    def owed(self) -> int:
        """Deliveries the broker has yet to make: the first, one per requeue, one per
        delivery it took back, minus those made."""
        return 1 + self.published + self.requeued + self.closed - len(self.received)


@dataclass
class Gate:
    """A job held at a gate inside Celery's pool (tasks/app.py ``_gates``)."""

    task: str
    name: str  # accept (in the child) | accepted (in the main process)
    pid: int
    conn: int
    alive: bool = True


def natural(x: str) -> tuple[int, int]:
    """Execution order: t2 < t10; t1 < t1#2."""
    m = re.fullmatch(r"t(\d+)(?:#(\d+))?", x)
    return (int(m.group(1)), int(m.group(2) or 1)) if m else (10**9, 0)


def play(
    moves: list[str], enabled: Callable[[], list[str]], choose: Callable[[list[str]], str],
    apply: Callable[[str], None], limit: int,
) -> None:  # fmt: skip
    """Every runner's loop: offer the enabled moves, play the chosen one (recorded in
    ``moves``), until none is enabled; more than ``limit`` moves is a harness error."""
    while options := enabled():
        if len(moves) >= limit:
            raise HarnessError(f"scenario did not finish within {limit} moves")
        move = choose(options)
        moves.append(move)
        apply(move)


def _name_order(name: str) -> tuple[int, str]:
    """w2.c3 before w2.c10; a main process's primes count."""
    head, _, n = name.rpartition(".c")
    return (int(n) if n.isdigit() else name.count("'"), head)


class Controller:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.address = self._server.getsockname()
        self._server.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._server, selectors.EVENT_READ, None)
        self._events: collections.deque[tuple[int, dict[str, Any] | None]] = collections.deque()
        self._socks: dict[int, socket.socket] = {}
        self._buffers: dict[int, bytes] = {}
        self._next_conn = 0

        self.clock = 0.0  # virtual seconds added by expiry moves
        self.procs: dict[int, Proc] = {}
        self.executions: dict[str, Execution] = {}
        self.history = h.History()
        self.aliases: dict[str, str] = {}  # celery worker name -> display alias (w1)
        self.expiries = 0
        self._accepting: set[str] = set()  # tasks the current example submitted
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

    # --- reading (all in the caller's thread: no hand-off, one order of events) -----

    def _read(self, timeout: float) -> None:
        """Wait up to ``timeout`` for bytes; turn whatever arrived into events."""
        for key, _ in self._sel.select(timeout=timeout):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    sock, _addr = self._server.accept()
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    cid = self._next_conn
                    self._next_conn += 1
                    self._socks[cid] = sock
                    self._buffers[cid] = b""
                    self._sel.register(sock, selectors.EVENT_READ, cid)
                continue
            cid = key.data
            sock = self._socks[cid]
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self._sel.unregister(sock)
                sock.close()
                self._events.append((cid, None))
                continue
            *lines, self._buffers[cid] = (self._buffers[cid] + chunk).split(b"\n")
            self._events.extend((cid, json.loads(line)) for line in lines if line)

    def close(self) -> None:
        for sock in [self._server, *self._socks.values()]:
            with contextlib.suppress(OSError):
                sock.close()
        self._sel.close()

    # --- applying events ------------------------------------------------------------------

    def pump(self, timeout: float) -> bool:
        """Apply one event if one arrives within ``timeout``; False if none did."""
        if not self._events:
            self._read(timeout)
            if not self._events:
                return False
        cid, msg = self._events.popleft()
        self._apply(cid, msg)
        return True

    def wait(
        self,
        done: Callable[[], bool],
        what: str,
        timeout: float = DEFAULT_TIMEOUT,
        check: Callable[[], None] | None = None,
        poll: float = 0.5,
    ) -> None:
        """Apply events until ``done()``; ``check()`` may raise to stop early.

        ``poll`` bounds the time between two looks at ``done()`` when it also reads
        state no event announces (a broker queue)."""
        deadline = time.monotonic() + timeout
        while not done():
            if check is not None:
                check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessTimeout(
                    f"timed out after {timeout:.0f}s waiting for {what}; "
                    f"executions: {self.describe()}"
                )
            self.pump(min(left, poll))

    def _apply(self, cid: int, msg: dict[str, Any] | None) -> None:
        if msg is None:
            self._closed(cid)
            return
        kind = msg.get("t")
        if kind in ("recv", "ack", "reject", "handled", "state", "skipped"):
            self._delivery(kind, msg, cid)
        elif kind == "adopted":
            self.adopted.add((msg["worker"], msg["queue"]))
        elif kind == "dropped":
            self.dropped[msg["worker"]] = self.dropped.get(msg["worker"], 0) + 1
        elif kind == "hello":
            self._hello(cid, msg)
        elif kind == "gate":
            self._gate(cid, msg)
        elif kind == "start":
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
                self.history.append(h.Point(ex.id, msg["p"]))
            elif kind == "rec":
                self.record(ex, msg)
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
            self._reply(cid, {"go": True, "clock": self.clock})
            return
        self.gates.discard(key)
        self.held[key[1]] = Gate(key[1], key[0], int(msg["pid"]), cid)

    def _receipts_first(self) -> None:
        """Apply every receipt already sent before an execution's start.

        The main process reports a receipt before it hands the job to a pool child,
        so by the time the child's start arrives the receipt is in our socket buffer;
        a zero-timeout read takes it in, and the history says "received" before
        "starts" every time, whichever socket select() happens to list first."""
        self._read(0)
        receipts = [ev for ev in self._events if ev[1] is not None and ev[1].get("t") == "recv"]
        for ev in receipts:
            self._events.remove(ev)
            self._apply(*ev)

    def _delivery(self, kind: str, msg: dict[str, Any], cid: int) -> None:
        m = self.messages.get(msg["id"])
        if m is None:
            return  # a message of an earlier example, or of a lock scenario
        if kind in ("recv", "ack", "reject"):
            what = "recv" if kind == "recv" else "settle"
            m.log.append((what, msg["worker"], msg["tag"], msg.get("seq")))
        if kind == "recv":
            m.received.append(msg["worker"])
            alias = self.aliases.get(msg["worker"], msg["worker"])
            level = int(msg.get("level", 0))
            receipt = h.Received(m.task, alias, bool(msg.get("redelivered")), level)
            if self.defer_starts:
                self._receipts.append(receipt)
            else:
                self.history.append(receipt)
        elif kind == "ack":
            m.settled_by.append(msg["worker"])  # acked, or its ack failed: done with it
            failed = msg.get("failed")
            self._reports.append(h.AckFailed(m.task, failed) if failed else h.Acked(m.task))
        elif kind == "reject":
            m.settled_by.append(msg["worker"])
            back = bool(msg.get("back", msg["requeue"]))
            m.requeued += back
            self._reports.append(h.Rejected(m.task, bool(msg["requeue"]), back))
        elif kind == "handled":
            m.handled += 1
        elif kind == "skipped":
            m.skipped.append(msg["worker"])
            alias = self.aliases.get(msg["worker"], msg["worker"])
            self._reports.append(h.Skipped(m.task, alias))
        else:
            m.states.append(msg["state"])
            self._reports.append(h.StateWritten(m.task, msg["state"]))
            ex = self.executions.get(self._last_exec.get(cid, ""))
            if ex is not None and ex.state == "done" and ex.task == m.task:
                ex.stored = msg["state"]  # the result of a run that returned

    def flush(self) -> None:
        """Append what was deferred since the last quiescent point: receipts, then
        starts, then the broker and backend reports, each grouped by task.

        They come from several processes over several connections, so their arrival
        order is a race; each task's own reports keep their order (they are causally
        ordered), and tasks go in name order, so the history is the same every run."""
        receipts = sorted(
            self._receipts, key=lambda e: (natural(e.task), e.level, e.redelivered, e.worker)
        )
        starts = self._canonical_starts()
        self._receipts, self._starts = [], []
        self.history.events.extend(receipts)  # a receipt before the start it causes
        self.history.events.extend(starts)
        reports, self._reports = self._reports, []
        order = {t: i for i, t in enumerate(sorted({getattr(e, "task", "") for e in reports}))}
        reports.sort(key=lambda e: order[getattr(e, "task", "")])
        self.history.events.extend(reports)

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
        # Task names repeat across examples; a delivery run's task ids do not, so a
        # message left over from an earlier example is told so, not taken for this t1.
        stale = task not in self._accepting or (
            tid is not None and bool(self.messages) and tid not in self.messages
        )
        if stale:
            self._reply(cid, {"stale": True, "why": f"{task} ({tid}) is not part of this example"})
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
        order = {e.execution: i for i, e in enumerate(starts)}
        ranked = sorted(
            starts, key=lambda e: (natural(e.task), e.level, e.redelivered, order[e.execution])
        )
        numbers: dict[str, list[int]] = {}
        for e in starts:
            numbers.setdefault(e.task, []).append(natural(e.execution)[1])
        for nums in numbers.values():
            nums.sort(reverse=True)
        renamed: dict[str, str] = {}
        for e in ranked:
            n = numbers[e.task].pop()
            renamed[e.execution] = e.task if n == 1 else f"{e.task}#{n}"
        # Process names first given in this interval go to the runs in the new order.
        names: dict[tuple[str, str], list[str]] = {}
        for p in self._fresh:  # only swapped among processes of one worker and role
            names.setdefault((p.worker, p.role), []).append(p.name)
        for group in names.values():
            group.sort(key=_name_order)
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
        return sorted(out, key=lambda e: natural(e.execution))

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

    def record(self, ex: Execution, msg: dict[str, Any]) -> None:
        """The history event for an execution's report (``points.record``)."""
        k = msg["k"]
        if k == "acq":
            ex.phase = "acquiring"
            self.history.append(h.AcquireBegin(ex.id, msg["key"]))
        elif k == "acq_end":
            ok = bool(msg["acquired"])
            if ok:
                ex.acquired = True
            ex.phase = "holding" if ok else "refused"
            self.history.append(h.AcquireEnd(ex.id, msg["key"], ok, msg.get("error")))
        elif k == "rel":
            ex.phase = "releasing"
            self.history.append(h.ReleaseBegin(ex.id, msg["key"]))
        elif k == "rel_end":
            ex.phase = "released"
            self.history.append(h.ReleaseEnd(ex.id, msg["key"], msg.get("error")))
        elif k == "invoice":
            self.history.append(h.InvoiceCreated(ex.id, msg["order"]))
        elif k == "effect":
            self.history.append(h.EffectDone(ex.id, msg["order"]))
        elif k == "retry":
            ex.retried = int(msg["level"])
            for m in self.messages.values():
                if m.task == ex.task:
                    m.published += 1
            self.history.append(h.RetryPublished(ex.id, ex.task, int(msg["level"])))
        elif k == "exhausted":
            ex.exhausted = True
            self.history.append(h.RetriesExhausted(ex.id, ex.task))
        elif k in ("read", "write", "rfu", "wb", "writing"):
            self.history.append(h.observed(k, ex.id, ex.process, msg))
        elif k == "looked":
            self.history.append(h.Looked(ex.id, bool(msg["found"])))
        elif k in ("locked", "unlocked"):
            ex.holds_lock = k == "locked"
        else:
            self.anomalies.append(f"unknown record {k!r} from {ex.id}")

    def _closed(self, cid: int) -> None:
        self._socks.pop(cid, None)
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

    def _reply(self, cid: int, msg: dict[str, Any]) -> None:
        sock = self._socks.get(cid)
        if sock is None:
            return
        data = json.dumps(msg).encode() + b"\n"
        # The socket stays non-blocking (the reader thread owns its reads); a reply
        # is a few dozen bytes, so waiting for room is the rare case.
        with contextlib.suppress(OSError):  # the process died; its EOF is on the way
            while data:
                try:
                    data = data[sock.send(data) :]
                except BlockingIOError:
                    select.select([], [sock], [], 5.0)

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

    def command(self, proc: Proc, msg: dict[str, Any]) -> None:
        """Send a command to a worker's main process on its agent connection."""
        self._reply(proc.conn, msg)

    def release(self, x: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Let a parked execution run to its next point (or its end)."""
        ex = self.executions[x]
        if ex.state != "parked":
            raise HarnessError(f"cannot release {x}: it is {ex.state}")
        ex.state = "running"
        self._reply(ex.conn, {"go": True, "clock": self.clock})
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

    def forget_dead(self) -> None:
        """Drop processes known to be gone (keeps the table small across examples)."""
        self.procs = {pid: p for pid, p in self.procs.items() if p.alive}

    def describe(self) -> str:
        parts = [f"{e.id}@{e.process}:{e.state}:{e.point}" for e in self.executions.values()]
        return ", ".join(parts) or "none"
