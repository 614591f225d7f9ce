"""The history: what happened in one scenario, in the order it happened.

Under controlled scheduling only one execution runs between two quiescent states, so
the history is a total order. The harness appends events as it observes them; the model
and the checkers read them. Names, not pids: a process is named by its role
(``w1`` the main worker process, ``w1.c2`` pool child slot 2, a trailing ``'`` per
respawn, model/processes.py), an execution by its task (``t1``) and attempt (``t1#2``
for a second run). Every area's events are here: locks and delivery, module state, and
publishing inside a transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Event:
    def describe(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)]
        return f"{type(self).__name__}({', '.join(parts)})"


# --- the scenario's own moves -------------------------------------------------------


@dataclass(frozen=True)
class Submitted(Event):
    task: str


@dataclass(frozen=True)
class Expired(Event):
    """The lock's TTL elapsed now: every lease on ``key`` taken before this is over."""

    key: str


@dataclass(frozen=True)
class Killed(Event):
    """SIGKILL of a process; every execution running in it dies with it. Killing a main
    worker process kills its prefork children too (``process_initializer`` sets
    ``platforms.set_pdeathsig('SIGKILL')``): the module-state model ends them with it."""

    process: str


@dataclass(frozen=True)
class Paused(Event):
    process: str


@dataclass(frozen=True)
class Resumed(Event):
    process: str


@dataclass(frozen=True)
class Restarted(Event):
    """A worker came back after its main process died (new processes, fresh memory)."""

    worker: str


# --- what executions did --------------------------------------------------------------


@dataclass(frozen=True)
class Started(Event):
    execution: str
    task: str
    process: str
    redelivered: bool = False  # the broker's flag on the message this execution runs
    level: int = 0  # request.retries of that message: 0, then 1 for the first retry...


@dataclass(frozen=True)
class Received(Event):
    """A worker's main process took the task's message from the broker (it may wait
    in the worker's buffer before a pool slot starts it)."""

    task: str
    worker: str
    redelivered: bool = False
    level: int = 0  # request.retries of the message


@dataclass(frozen=True)
class VisibilityTimeout(Event):
    """On Redis: every message unacked so far has been unacked longer than the
    visibility timeout now; a consuming worker's scan restores it to its queue."""


@dataclass(frozen=True)
class Shutdown(Event):
    """SIGTERM (warm) or SIGQUIT (cold) to a worker's main process."""

    worker: str
    kind: str  # warm | cold


@dataclass(frozen=True)
class Point(Event):
    """The execution parked at a scheduling point (``cs``, ``redis SET``, ``sql INSERT``)."""

    execution: str
    name: str


@dataclass(frozen=True)
class AcquireBegin(Event):
    execution: str
    key: str


@dataclass(frozen=True)
class AcquireEnd(Event):
    execution: str
    key: str
    acquired: bool
    error: str | None = None


@dataclass(frozen=True)
class ReleaseBegin(Event):
    execution: str
    key: str


@dataclass(frozen=True)
class ReleaseEnd(Event):
    execution: str
    key: str
    error: str | None = None


@dataclass(frozen=True)
class InvoiceCreated(Event):
    execution: str
    order: str


@dataclass(frozen=True)
class EffectDone(Event):
    """The effect function returned: whatever it commits is committed."""

    execution: str
    order: str


@dataclass(frozen=True)
class RetryPublished(Event):
    """The run called ``self.retry()``: a new message with the same task id and
    ``retries=level`` was published (before Retry is raised, celery/app/task.py)."""

    execution: str
    task: str
    level: int


@dataclass(frozen=True)
class RetriesExhausted(Event):
    """The run's ``self.retry()`` found max_retries used up: the task fails."""

    execution: str
    task: str


@dataclass(frozen=True)
class Acked(Event):
    """The worker acknowledged the task's message (seen in the worker's main process)."""

    task: str


@dataclass(frozen=True)
class AckFailed(Event):
    """The worker's ack raised: the channel the delivery came on is gone."""

    task: str
    error: str


@dataclass(frozen=True)
class Skipped(Event):
    """A worker took a redelivered message and returned without running the task:
    ``worker_deduplicate_successful_tasks`` found it already succeeded
    (celery/app/trace.py ``build_tracer``, before ``task_prerun``)."""

    task: str
    worker: str


@dataclass(frozen=True)
class Held(Event):
    """The task's job stopped inside Celery's pool machinery, at a gate the scenario
    set: ``accept`` in the pool child that read the job, before it tells the parent it
    accepted it; ``accepted`` in the main process, told, before it acks (early ack).
    It stays there until its process is killed (fixed semantics claims)."""

    task: str
    gate: str
    process: str


@dataclass(frozen=True)
class ConsumerTimedOut(Event):
    """RabbitMQ's ``consumer_timeout`` passed for a worker's oldest unacked delivery:
    the broker closes that channel and requeues what was unacked on it."""

    worker: str


@dataclass(frozen=True)
class ConnectionDropped(Event):
    """A worker's connections to the broker were cut (it reconnects by itself)."""

    worker: str


@dataclass(frozen=True)
class HeartbeatGap(Event):
    """Wall time passed with every run parked, past the broker's heartbeat timeout
    for ``worker``'s connection: RabbitMQ closes a connection that sent no
    heartbeat in that time (a fixed claim's ``idle`` move)."""

    worker: str
    seconds: float


@dataclass(frozen=True)
class Rejected(Event):
    task: str
    requeue: bool
    # A copy went back to the queue. Redis pushes back only what its unacked hash
    # still holds: nothing after the visibility timeout restored the message.
    restored: bool = True


@dataclass(frozen=True)
class StateWritten(Event):
    """A result state the worker asked the backend to store for the task."""

    task: str
    state: str


@dataclass(frozen=True)
class Finished(Event):
    """The task body returned (``ok``) or raised (``error``)."""

    execution: str
    status: str
    error: str | None = None


# --- read back at the end ----------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceCount(Event):
    """The invoice store's row count for ``order`` once every execution has ended."""

    order: str
    count: int


@dataclass(frozen=True)
class FinalState(Event):
    """The task's state in the result backend once the scenario is over."""

    task: str
    state: str


# --- module state (model/state.py) ------------------------------------------------------------


@dataclass(frozen=True)
class StateEvent(Event):
    """An operation on the module-level value (model/state.py)."""


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


StateOp = Write | Read | ReadForUpdate | WriteBack
READS = (Read, ReadForUpdate)
WRITES = (Write, WriteBack)


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


# --- publishing inside a transaction (model/publishing.py) -----------------------------------


@dataclass(frozen=True)
class Inserted(Event):
    """The sender INSERTed ``task``'s row inside its open transaction."""

    task: str


@dataclass(frozen=True)
class Published(Event):
    """``task``'s message is being sent to the broker (Celery's ``before_task_publish``:
    recorded before any worker can receive it)."""

    task: str


@dataclass(frozen=True)
class Committed(Event):
    pass


@dataclass(frozen=True)
class RolledBack(Event):
    pass


@dataclass(frozen=True)
class Looked(Event):
    """The task's SELECT for its row returned (``found`` or not)."""

    execution: str
    found: bool


# --- beat (model/beat.py) ------------------------------------------------------------------


@dataclass(frozen=True)
class BeatEvent(Event):
    """Something one ``celery beat`` process did or had done to it. ``beat`` is its
    process name: ``b1``, ``b1'`` once restarted (the schedule file stays ``b1``'s)."""

    beat: str


@dataclass(frozen=True)
class BeatStarted(BeatEvent):
    """The process starts its scheduler now (reads its schedule file or Redis)."""


@dataclass(frozen=True)
class BeatTick(BeatEvent):
    """The scenario woke the beat from its sleep: the loop's next tick, or, for a
    redbeat standby, its next try of the lock."""


@dataclass(frozen=True)
class BeatLocked(BeatEvent):
    """redbeat's lock acquired (its ``beat_init`` handler returned with it)."""


@dataclass(frozen=True)
class BeatDue(BeatEvent):
    """The beat found ``entry`` due at clock slot ``due`` and is about to send it
    (parked before ``Scheduler.apply_async``)."""

    entry: str
    due: int


@dataclass(frozen=True)
class BeatSent(BeatEvent):
    """The beat published ``entry``'s message for the tick due at slot ``due``; the
    clock read ``at`` when it did (later than ``due`` if it was held in between)."""

    entry: str
    due: int
    at: int


@dataclass(frozen=True)
class BeatSaved(BeatEvent):
    """PersistentScheduler's ``sync``: its entries' ``last_run_at`` are on disk."""


@dataclass(frozen=True)
class BeatAsleep(BeatEvent):
    """The beat went to sleep: ``tick`` in the loop after a tick, ``lock`` between
    two tries of redbeat's lock."""

    gate: str


@dataclass(frozen=True)
class BeatExited(BeatEvent):
    """The process ended by itself (not killed by the scenario)."""

    error: str = ""


@dataclass(frozen=True)
class ClockAdvanced(Event):
    """The scenario clock moved to slot ``slot`` (one schedule period per slot)."""

    slot: int


@dataclass(frozen=True)
class BeatQueued(Event):
    """At the end: the broker holds ``count`` messages of ``entry``."""

    entry: str
    count: int


@dataclass(frozen=True)
class BeatWrote(BeatEvent):
    """django-celery-beat's ``DatabaseScheduler.sync`` saved ``entry``'s row: its
    ``last_run_at`` (a slot; None while empty) and ``total_run_count``."""

    entry: str
    last: int | None
    runs: int


@dataclass(frozen=True)
class BeatReloaded(BeatEvent):
    """``DatabaseScheduler`` read every row again (a schedule change, or five minutes
    since its last full read), after its ``sync``."""


@dataclass(frozen=True)
class BeatRow(Event):
    """At the end: ``entry``'s row in the database (``DatabaseScheduler``)."""

    entry: str
    last: int | None
    runs: int


# --- canvas: a chord's body (model/canvas.py) ----------------------------------------------


@dataclass(frozen=True)
class BodySent(Event):
    """A header run's ``on_chord_part_return`` published the chord's body (Celery's
    ``after_task_publish`` for the body, inside that run's count)."""

    execution: str
    task: str  # the body's task name in the scenario


@dataclass(frozen=True)
class BodyArgs(Event):
    """A run of the chord's body got the header results ``results`` as its argument."""

    execution: str
    results: tuple[str, ...]


# --- routing: which queue a task went to, and who took it (model/routing.py) ---------------


@dataclass(frozen=True)
class Routed(Event):
    """The sender published ``task``'s message to ``queue`` (Celery's
    ``before_task_publish`` in the sender: the routing key of an anonymous-exchange
    publish is the queue), with ``priority`` if it gave one."""

    task: str
    queue: str
    priority: int | None = None


@dataclass(frozen=True)
class SendRefused(Event):
    """Sending ``task`` raised ``error`` in the sender (``QueueNotFound``): nothing
    was published."""

    task: str
    error: str


@dataclass(frozen=True)
class RanFrom(Event):
    """A run took its message from ``queue`` (its delivery's routing key)."""

    execution: str
    queue: str


@dataclass(frozen=True)
class Stuck(Event):
    """Read from the broker once the system is quiescent and the scenario over:
    ``count`` messages wait in ``queue``, which no worker consumes."""

    queue: str
    count: int


# --- canvas: a chain's steps (model/canvas_steps.py) --------------------------------------


@dataclass(frozen=True)
class Chained(Event):
    """``task`` is a step of the submitted chain, after ``after``: nothing publishes it
    until a run of ``after`` returns."""

    task: str
    after: str


@dataclass(frozen=True)
class StepSent(Event):
    """A run of a chain step published the chain's next step ``task`` (Celery's
    ``after_task_publish`` inside that run, before its own result is stored)."""

    execution: str
    task: str


@dataclass(frozen=True)
class StepArgs(Event):
    """A run of a chain step got ``args`` (its predecessor's result) as its argument."""

    execution: str
    args: tuple[str, ...]


@dataclass
class History:
    events: list[Event] = field(default_factory=list)

    def append(self, event: Event) -> None:
        self.events.append(event)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)
