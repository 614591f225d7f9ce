"""What happens to a task message when workers die: the delivery model.

Replays a delivery history (model/history.py) and says, event by event, what Celery
and the broker may do: how many times each message may still be delivered, whether
an execution is allowed to start, the ``redelivered`` flag it must see, which result
states are written, and the final state. Sources: ``../shared/reference/
celery-semantics.md`` sections 1-5 (celery/worker/request.py ``on_failure``,
``on_accepted``; kombu/transport/redis.py ``QoS``; celery/app/trace.py), and the
experiments recorded in the findings (``reports/findings.json``).

Processes are named by role (model/processes.py): ``w1`` is the first worker's main
process, ``w1.c2`` its second pool child, ``w2`` the standby that took the queue over
after ``w1`` died.

Redis keeps one unacked entry per *message*: a restored message keeps its delivery
tag, so every delivery of it shares the entry, and any holder's ack removes it
(kombu/transport/redis.py ``QoS.append`` keys the hash by tag; kombu #1800). AMQP
tracks each delivery on its channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from model import history as h
from model.config import DeliveryConfig
from model.processes import is_child, worker_of


@dataclass(frozen=True)
class Mismatch:
    index: int
    task: str
    expected: str
    observed: str
    why: str


@dataclass
class _Copy:
    """One published message. Two lineages can each publish ``retries=n`` of one task
    id: two copies, each with its own delivery tag and so its own Redis entry."""

    fresh: int = 1  # published, not yet delivered: will come with redelivered=False
    back: int = 0  # given back (requeue, dead holder, timeout): will come redelivered
    entry: bool = False  # Redis: the copy has an entry in the unacked hash


@dataclass
class _Delivery:
    worker: str  # the worker whose main process received it (w1, w2, ...)
    redelivered: bool
    copy: _Copy
    execution: str | None = None  # set when a pool slot starts it
    process: str = ""
    running: bool = False
    unacked: bool = True  # the broker still counts it as delivered, not acked


@dataclass
class _Message:
    """The messages of a task id at one ``retries`` level (a retry publishes a new
    one, so two lineages make two copies of one level)."""

    task: str
    level: int
    copies: list[_Copy] = field(default_factory=lambda: [_Copy()])
    deliveries: list[_Delivery] = field(default_factory=list)

    @property
    def owed(self) -> int:
        """Deliveries the broker must still make."""
        return sum(c.fresh + c.back for c in self.copies)

    def take(self, redelivered: bool) -> _Copy | None:
        """The copy a delivery with this flag comes from: given back, or fresh."""
        return next((c for c in self.copies if (c.back if redelivered else c.fresh) > 0), None)


@dataclass
class _Task:
    states: list[str] = field(default_factory=list)  # the writes the model expects
    succeeded: bool = False


class DeliveryModel:
    """Replays one history; ``mismatches`` collects every disagreement."""

    def __init__(self, config: DeliveryConfig) -> None:
        fixed_only = (
            config.dedup or config.cancel_on_loss or bool(config.countdown) or config.chord
            or config.gate is not None or config.consumer_timeout_ms is not None
            or config.heartbeat is not None
        )  # fmt: skip
        if fixed_only or config.results != "redis":
            # Those settings are checked by fixed runs (properties/claims.py) only.
            raise ValueError(
                "the delivery model predicts runs without dedup, cancel_on_loss, a "
                "countdown, a chord, a gate, a consumer timeout or a heartbeat, on the "
                "Redis result backend"
            )
        self.config = config
        self.tasks: dict[str, _Task] = {}
        self.messages: dict[tuple[str, int], _Message] = {}
        self.mismatches: list[Mismatch] = []
        self._by_execution: dict[str, tuple[_Message, _Delivery]] = {}
        self._retried: dict[str, str] = {}  # execution -> RETRY | FAILURE (exhausted)
        self._written: dict[str, list[str]] = {}  # task -> states written, in order

    def _flag(self, i: int, task: str, expected: str, observed: str, why: str) -> None:
        self.mismatches.append(Mismatch(i, task, expected, observed, why))

    def replay(self, events: Sequence[h.Event]) -> list[Mismatch]:
        written: dict[str, list[tuple[int, str]]] = {}
        finals: list[tuple[int, str, str]] = []
        for i, e in enumerate(events):
            match e:
                case h.Submitted(task=t):
                    self.tasks[t] = _Task()
                    self.messages[(t, 0)] = _Message(t, 0)
                case h.Received():
                    self._received(i, e)
                case h.Started():
                    self._started(i, e)
                case h.RetryPublished(execution=x, task=t, level=n):
                    self._retried[x] = "RETRY"
                    m = self.messages.setdefault((t, n), _Message(t, n, copies=[]))
                    m.copies.append(_Copy())  # two lineages can each publish retries=n
                case h.RetriesExhausted(execution=x):
                    self._retried[x] = "FAILURE"
                case h.Finished(execution=x, status=status):
                    self._finished(x, status)
                case h.Killed(process=p):
                    self._killed(p)
                case h.Shutdown(worker=w, kind="warm"):
                    self._warm_shutdown(w)
                case h.VisibilityTimeout():
                    self._visibility_timeout()
                case h.StateWritten(task=t, state=s):
                    written.setdefault(t, []).append((i, s))
                case h.FinalState(task=t, state=s):
                    finals.append((i, t, s))
                case _:
                    self._other(i, e)
        for t, task in self.tasks.items():
            self._states(t, task, written.get(t, []), len(events))
        for i, t, s in finals:
            self._final(i, t, s)
        for m in self.messages.values():
            if m.owed > 0:
                self._flag(
                    len(events), m.task, f"{m.owed} more delivery(ies) of retries={m.level}",
                    "none",
                    "the broker owed this message again (requeued, or given back when "
                    "its holder died or its visibility timeout passed) but it never came",
                )  # fmt: skip
        return self.mismatches

    # --- events ---------------------------------------------------------------------

    def _received(self, i: int, e: h.Received) -> None:
        m = self.messages.get((e.task, e.level))
        if m is None or m.owed <= 0:
            redis = self.config.broker == "redis"
            self._flag(
                i, e.task, "no further delivery",
                f"retries={e.level} delivered to {e.worker}",
                "nothing gave the message back to the broker: no requeue, no dead "
                "holder, no visibility timeout"
                + (" (Redis waits for the visibility timeout)" if redis else ""),
            )  # fmt: skip
            if m is None:
                m = self.messages[(e.task, e.level)] = _Message(e.task, e.level, copies=[])
        # A message handed out again carries the broker's redelivered flag; a fresh
        # one does not (kombu/transport/redis.py _do_restore_message; AMQP).
        copy = m.take(e.redelivered)
        if copy is None and m.owed > 0:
            self._flag(
                i, e.task, f"redelivered={not e.redelivered}", f"redelivered={e.redelivered}",
                "a message handed out again carries the broker's redelivered flag, a "
                "fresh one does not (kombu/transport/redis.py _do_restore_message; AMQP)",
            )  # fmt: skip
            copy = m.take(not e.redelivered)
        if copy is None:  # flagged above: an extra delivery; follow it as a copy of its own
            copy = _Copy(fresh=0)
            m.copies.append(copy)
        elif e.redelivered and copy.back > 0:
            copy.back -= 1
        elif copy.fresh > 0:
            copy.fresh -= 1
        else:
            copy.back -= 1
        m.deliveries.append(_Delivery(e.worker, e.redelivered, copy))
        # Early ack too: the message is unacked until a pool slot accepts it.
        copy.entry = True

    def _started(self, i: int, e: h.Started) -> None:
        m = self.messages.get((e.task, e.level))
        waiting = [
            d for d in (m.deliveries if m else [])
            if d.execution is None and d.worker == worker_of(e.process)
        ]  # fmt: skip
        if m is None or not waiting:
            self._flag(
                i, e.task, "no execution", f"{e.execution} started",
                f"{worker_of(e.process)} holds no delivery of {e.task} (retries={e.level}) "
                "it has not started",
            )  # fmt: skip
            return
        # The one it runs: the oldest waiting delivery with the flag the task saw.
        d = next((w for w in waiting if w.redelivered == e.redelivered), waiting[0])
        d.execution, d.process, d.running = e.execution, e.process, True
        if e.redelivered != d.redelivered:
            self._flag(
                i, e.task, f"redelivered={d.redelivered}", f"redelivered={e.redelivered}",
                "the task sees the flag its message was delivered with",
            )  # fmt: skip
        if not self.config.acks_late and self.config.pool != "solo":
            # Acked when the pool accepted it (Request.on_accepted). The ack itself is
            # deferred to the worker's event loop (Consumer.call_soon_ack); the solo
            # pool runs the task inside that loop, so there it waits for the return.
            d.unacked = False
            d.copy.entry = False  # one entry per message: any ack removes it
        self._by_execution[e.execution] = (m, d)
        if self.config.track_started:
            self.tasks[e.task].states.append("STARTED")

    def _finished(self, x: str, status: str) -> None:
        found = self._by_execution.get(x)
        if found is None:
            return
        m, d = found
        d.running = False
        if status != "ok":
            return
        task = self.tasks[m.task]
        end = self._end_state(x)
        if end == "SUCCESS":
            task.succeeded = True
        if end is not None:
            task.states.append(end)
        if d.unacked:  # acks_late (or early on solo): acked once it returned or failed
            d.unacked = False
            d.copy.entry = False

    def _end_state(self, x: str) -> str | None:
        """The state Celery writes after run ``x`` returned: SUCCESS, RETRY, FAILURE
        past max_retries; None if the run wrote it before its end."""
        return self._retried.get(x, "SUCCESS")

    def _other(self, i: int, e: h.Event) -> None:
        """An event this model does not read (an area built on it may)."""

    def _killed(self, process: str) -> None:
        main = not is_child(process)
        for m in self.messages.values():
            for d in m.deliveries:
                if main and d.worker == process and (d.running or d.execution is None):
                    # Running or waiting in the worker's buffer: gone with the worker.
                    d.running = False
                    d.execution = d.execution or "(lost unstarted)"
                    self._lost_with_worker(m, d)
                elif not main and d.running and d.process == process:
                    d.running = False
                    self._lost_child(m, d)

    def _warm_shutdown(self, worker: str) -> None:
        """SIGTERM: the worker stops consuming and finishes what runs (acked as
        usual); what it holds unstarted goes back to the broker when it closes its
        channel (AMQP) or restores its unacked messages at shutdown (Redis,
        kombu/transport/redis.py ``restore_at_shutdown``)."""
        for m in self.messages.values():
            for d in m.deliveries:
                if d.worker == worker and d.execution is None:
                    d.execution = "(given back at shutdown)"
                    d.unacked = False
                    d.copy.back += 1
                    d.copy.entry = False

    def _lost_child(self, m: _Message, d: _Delivery) -> None:
        """A prefork child died under the execution; its main process handles it
        (celery/worker/request.py ``on_failure`` with WorkerLostError)."""
        c = self.config
        task = self.tasks[m.task]
        if task.succeeded:
            # Another run already stored SUCCESS: the lost run is acked, nothing is
            # written, nothing requeued (celery/worker/request.py on_failure,
            # ``_success_was_stored``, Celery 5.7; seen by the suite first).
            pass
        elif c.acks_late and c.reject_on_worker_lost:
            # Rejected with requeue, no state written. Redis pushes the message back
            # only if its unacked entry is still there: a visibility timeout that
            # already restored it leaves nothing to push (kombu/transport/redis.py
            # ``QoS.restore_by_tag``).
            if c.broker == "amqp" or d.copy.entry:
                d.copy.back += 1
        else:
            task.states.append("FAILURE")  # acked (or already acked, early)
        d.unacked = False
        d.copy.entry = False

    def _lost_with_worker(self, m: _Message, d: _Delivery) -> None:
        """The main process died: nothing runs on_failure, nothing is written."""
        if not d.unacked:
            return  # early ack: acked at start, lost for good
        if self.config.broker == "amqp":
            d.copy.back += 1  # the channel closed: the broker requeues at once
            d.unacked = False
        # Redis: the entry stays until the visibility timeout passes.

    def _visibility_timeout(self) -> None:
        if self.config.broker != "redis":
            return
        for m in self.messages.values():
            for c in m.copies:
                if c.entry:  # one entry per message, whatever its deliveries
                    c.back += 1
                    c.entry = False

    # --- result states -------------------------------------------------------------------

    def _states(self, t: str, task: _Task, written: list[tuple[int, str]], end: int) -> None:
        """Which states, not their order across runs: a retry's new message can start
        (STARTED) before the old run's RETRY is written, and the harness has no point
        between Celery's publish and its write (celery-semantics.md section 4)."""
        seen = [s for _, s in written]
        self._written[t] = seen
        if sorted(seen) != sorted(task.states):
            where = written[0][0] if written else end
            self._flag(
                where, t, " -> ".join(task.states) or "nothing", " -> ".join(seen) or "nothing",
                "result states written: STARTED per run (track_started), SUCCESS per run "
                "that returned, RETRY per retry, FAILURE past max_retries and per child "
                "lost without requeue, nothing for a main process killed "
                "(celery/app/trace.py, celery/worker/request.py)",
            )  # fmt: skip

    def _final(self, i: int, t: str, state: str) -> None:
        task = self.tasks.get(t)
        if task is None:
            return
        seen = self._written.get(t, [])
        if task.succeeded:
            want = "SUCCESS"  # key-value backends refuse to overwrite SUCCESS
        elif seen:
            want = seen[-1]  # the last write, whichever run won the race to write it
        else:
            want = "PENDING"
        if state != want:
            self._flag(
                i, t, want, state,
                "the backend keeps the last state written, except that a stored SUCCESS "
                "is never overwritten (celery/backends/base.py _store_result)",
            )  # fmt: skip


def check_delivery(config: DeliveryConfig, events: Sequence[h.Event]) -> list[Mismatch]:
    return DeliveryModel(config).replay(events)
