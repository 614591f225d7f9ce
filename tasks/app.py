"""The Celery app the suite's workers run, configured from the run's environment.

Started by the harness as ``celery -A tasks.app worker ...``. Every process of a worker
(the main process, and each prefork child) opens an *agent* connection to the
controller and says hello: that is how the harness discovers processes by role, knows
the worker is ready, and sees a process die (its connection closes).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from contextlib import ExitStack, suppress
from typing import Any

from celery import Celery, Task, signals
from celery.contrib.django.task import DjangoTask

from tasks import django_setup, points

django_setup.configure()


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0") == "1"


app = Celery("suite")
app.conf.update(
    broker_url=os.environ.get("SUITE_BROKER_URL", "redis://127.0.0.1:6379/15"),
    result_backend=os.environ.get("SUITE_RESULT_URL") or None,
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        # Redis: the harness never lets this pass by itself (a scenario is far shorter);
        # its "vt" move ages the unacked entries instead, and every worker scans for
        # aged entries every 50 ms rather than every 100 s (kombu/transport/redis.py
        # ``unacked_restore_interval`` x ``unacked_restore_throttle``), so a restore
        # follows the move at once, by a consuming worker, as in production.
        "visibility_timeout": float(os.environ.get("SUITE_VISIBILITY_TIMEOUT", "3600")),
        "unacked_restore_interval": 0.05,
        "unacked_restore_throttle": 1,
    },
    task_acks_late=_flag("SUITE_ACKS_LATE", False),
    task_reject_on_worker_lost=_flag("SUITE_REJECT_ON_WORKER_LOST", False),
    task_acks_on_failure_or_timeout=_flag("SUITE_ACKS_ON_FAILURE", True),
    task_track_started=_flag("SUITE_TRACK_STARTED", False),
    worker_deduplicate_successful_tasks=_flag("SUITE_DEDUP", False),
    worker_cancel_long_running_tasks_on_connection_loss=_flag("SUITE_CANCEL_ON_LOSS", False),
    # One message per free slot: the controller only submits when a slot is free, so
    # nothing waits in a worker's prefetch buffer where a kill would strand it.
    worker_prefetch_multiplier=int(os.environ.get("SUITE_PREFETCH", "1")),
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_serializer="json",
    accept_content=["json"],
)


def _prompt_pool_maintenance() -> None:
    """Replace a killed prefork child in milliseconds, not seconds.

    The pool wakes when a child's sentinel pipe closes, but the kernel closes a dying
    process's files before it becomes reapable, so ``maintain_pool`` often finds no
    exit code yet and the replacement waits for the next periodic run, 5 s later
    (celery/concurrency/asynpool.py ``AsynPool.timers``). Measured here: 5 s in 4 of
    5 kills. A shorter period changes when, not whether, the child is replaced.
    """
    from celery.concurrency import asynpool

    period = float(os.environ.get("SUITE_POOL_MAINTAIN_PERIOD", "0.01"))
    asynpool.AsynPool.timers = property(lambda self: {self.maintain_pool: period})


_prompt_pool_maintenance()


def _expiring_queues() -> None:
    """On a shared RabbitMQ, queues the suite creates vanish once unused (x-expires),
    so a killed test run leaves nothing behind. Sender, workers and the harness all
    import this module, so every declaration of a queue carries the same arguments."""
    ms = int(os.environ.get("SUITE_QUEUE_EXPIRES_MS", "0"))
    if not ms:
        return
    from celery.app import amqp

    plain = amqp.Queues.new_missing

    def new_missing(self: Any, name: str) -> Any:
        queue = plain(self, name)
        queue.queue_arguments = {**(queue.queue_arguments or {}), "x-expires": ms}
        return queue

    amqp.Queues.new_missing = new_missing


_expiring_queues()


class _QosOrder:
    """Where kombu's virtual QoS took and let go of each delivery, in one order.

    Redis emulates prefetch in the worker (kombu/transport/virtual/base.py ``QoS``):
    ``append`` counts a delivery by its tag, ``ack``/``reject`` uncount the tag, and a
    restored copy keeps its tag, so whether the worker may take another message
    depends on the order of those calls. The threads pool acks in its own thread and
    reports on its own connection, so the reports reach the controller in any order;
    each carries its place in this process's order instead (a number taken under one
    lock with the QoS call itself)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next = 0
        self.appended: dict[Any, int] = {}  # tag -> place of its latest append
        self.local = threading.local()  # .last: this thread's latest ack or reject

    def take(self) -> int:
        self.next += 1
        return self.next

    def settled(self, call: Any) -> tuple[int | None, int]:
        """Run an ack or reject: its place, if it went through the virtual QoS
        (Redis: yes; RabbitMQ keeps its QoS in the broker), and how many messages it
        pushed back to the queue (Redis)."""
        self.local.last, self.local.restored = None, 0
        call()
        return self.local.last, self.local.restored


def _qos_order() -> _QosOrder:
    from kombu.transport import redis
    from kombu.transport.virtual import base as virtual

    order = _QosOrder()
    append, ack, reject = virtual.QoS.append, virtual.QoS.ack, virtual.QoS.reject

    def appended(self: Any, message: Any, delivery_tag: Any) -> None:
        with order.lock:
            append(self, message, delivery_tag)
            order.appended[delivery_tag] = order.take()

    def acked(self: Any, delivery_tag: Any) -> None:
        with order.lock:
            ack(self, delivery_tag)
            order.local.last = order.take()

    def rejected(self: Any, delivery_tag: Any, requeue: bool = False) -> None:
        with order.lock:
            reject(self, delivery_tag, requeue=requeue)
            order.local.last = order.take()

    def restore(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Called only when the unacked entry is still there: a reject with requeue
        # after the visibility timeout already restored the message pushes nothing
        # (kombu/transport/redis.py ``QoS.restore_by_tag``).
        order.local.restored = getattr(order.local, "restored", 0) + 1
        return do_restore(self, *args, **kwargs)

    do_restore = redis.Channel._do_restore_message
    redis.Channel._do_restore_message = restore  # type: ignore[method-assign]
    virtual.QoS.append = appended  # type: ignore[method-assign]
    virtual.QoS.ack = acked  # type: ignore[method-assign]
    virtual.QoS.reject = rejected  # type: ignore[method-assign]
    return order


def _report_deliveries() -> None:
    """The worker tells the controller what it does with each message: received (in
    the main process, before the pool), acked, rejected, loss handled, and every
    result state it asks the backend to store. The harness waits on these instead of
    sleeping, and the history records them (celery/worker/request.py)."""
    from celery.backends.base import Backend
    from celery.worker.request import Request
    from kombu.message import Message

    worker = os.environ.get("SUITE_WORKER", "?")
    seq = _qos_order()

    def received(request: Any, **_: Any) -> None:
        info = request.delivery_info or {}
        level = int((request._request_dict or {}).get("retries") or 0)
        tag = request.message.delivery_tag
        points.notify(
            "recv", id=request.id, worker=worker, redelivered=bool(info.get("redelivered")),
            level=level, tag=str(tag), seq=seq.appended.get(tag),
        )  # fmt: skip

    signals.task_received.connect(received, weak=False)

    # At the message, not at Celery's Request: Celery defers the broker call to its
    # event loop (call_soon), and the report must follow what the broker was told.
    ack, reject, on_failure = Message.ack, Message.reject, Request.on_failure

    def acknowledge(self: Any, multiple: bool = False) -> None:
        tid = (self.headers or {}).get("id")
        try:
            place, _ = seq.settled(lambda: ack(self, multiple=multiple))
        except Exception as exc:
            # The channel the delivery came on is gone (the connection dropped):
            # Celery logs "Couldn't ack"; the broker has given the message back.
            if tid is not None:
                points.notify(
                    "ack", id=tid, worker=worker, tag=str(self.delivery_tag),
                    failed=f"{type(exc).__name__}: {exc}",
                )  # fmt: skip
            raise
        if tid is not None:
            points.notify("ack", id=tid, worker=worker, tag=str(self.delivery_tag), seq=place)

    def rejected(self: Any, requeue: bool = False) -> None:
        place, restored = seq.settled(lambda: reject(self, requeue=requeue))
        if (tid := (self.headers or {}).get("id")) is not None:
            # Whether a copy went back: RabbitMQ requeues what it is asked to; Redis
            # only what its unacked hash still held.
            back = requeue if place is None else restored > 0
            points.notify(
                "reject", id=tid, worker=worker, requeue=requeue, tag=str(self.delivery_tag),
                seq=place, back=back,
            )  # fmt: skip

    def failed(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return on_failure(self, *args, **kwargs)
        finally:
            points.notify("handled", id=self.id, worker=worker)

    Message.ack = acknowledge  # type: ignore[method-assign]
    Message.reject = rejected  # type: ignore[method-assign]
    Request.on_failure = failed

    store = Backend.store_result

    def store_result(self: Any, task_id: str, result: Any, state: str, *a: Any, **kw: Any) -> Any:
        stored = store(self, task_id, result, state, *a, **kw)
        points.notify("state", id=task_id, state=state)  # once a reader would see it
        return stored

    Backend.store_result = store_result


_report_deliveries()


def _report_skips() -> None:
    """A delivery the tracer returns from without running the task (and without
    ``task_prerun``): ``worker_deduplicate_successful_tasks`` found the redelivered
    message already SUCCESS (celery/app/trace.py ``build_tracer``). Nothing else
    tells the harness, which would otherwise wait for a start that never comes.
    Wrapped where every pool builds its tracers: prefork's children import
    ``build_tracer`` from the module at init, the consumer holds its own reference."""
    from celery.app import trace
    from celery.worker.consumer import consumer

    build, worker, ran = trace.build_tracer, os.environ.get("SUITE_WORKER", "?"), threading.local()

    def prerun(**_: Any) -> None:
        ran.yes = True

    signals.task_prerun.connect(prerun, weak=False)

    def build_tracer(name: str, task: Any, *args: Any, **kwargs: Any) -> Any:
        tracer = build(name, task, *args, **kwargs)

        def traced(uuid: str, targs: Any, tkwargs: Any, request: Any = None) -> Any:
            ran.yes = False
            out = tracer(uuid, targs, tkwargs, request)
            if not ran.yes:
                points.notify("skipped", id=uuid, worker=worker)
            return out

        return traced

    trace.build_tracer = consumer.build_tracer = build_tracer


_report_skips()


def _gates() -> None:
    """Two scheduling points inside Celery's prefork pool, for the claims about the
    window between a job reaching a child and its message being acked:

    ``accept``: the child has read the job from its pipe and not yet sent the parent
    its ACK (billiard/pool.py ``Worker.workloop``: ``wait_for_job`` then
    ``put((ACK, ...))``), so the parent sees it written, not accepted.
    ``accepted``: the parent got that ACK and has not yet acked the message
    (celery/worker/request.py ``Request.on_accepted``, which acks when not acks_late).

    Each asks the controller, which holds only the job the scenario names; every
    other job passes at the cost of one round trip. Installed only in workers started
    with gates, before the pool forks its children."""
    if os.environ.get("SUITE_GATES") != "1":
        return
    from billiard import pool
    from celery.worker.request import Request

    make, accepted = pool.Worker._make_child_methods, Request.on_accepted

    def make_child_methods(self: Any, *args: Any, **kwargs: Any) -> None:
        make(self, *args, **kwargs)
        receive = self.wait_for_job

        def wait_for_job(*a: Any, **kw: Any) -> Any:
            req = receive(*a, **kw)
            if req:  # (TASK, (job, i, fun, args, kwargs)); args[1] is the task id
                targs = req[1][3]  # celery/worker/request.py ``execute_using_pool``
                if len(targs) > 1 and isinstance(targs[1], str):
                    points.gate("accept", targs[1])
            return req

        self.wait_for_job = wait_for_job

    def on_accepted(self: Any, pid: int, time_accepted: float) -> None:
        points.gate("accepted", self.id)
        accepted(self, pid, time_accepted)

    pool.Worker._make_child_methods = make_child_methods
    Request.on_accepted = on_accepted


_gates()

_agent: socket.socket | None = None


def _hello(role: str) -> None:
    """Open this process's agent connection and announce it to the controller."""
    global _agent
    if _agent is not None:  # inherited from the parent across fork: not ours
        _agent.close()
    address = points.control_address()
    if address is None:
        return
    index: Any = None
    if role == "child":
        from billiard.process import current_process

        index = getattr(current_process(), "index", None)
    _agent = socket.create_connection(address, timeout=10)
    _agent.settimeout(None)  # the command reader waits as long as the worker lives
    msg = {
        "t": "hello",
        "role": role,
        "pid": os.getpid(),
        "worker": os.environ.get("SUITE_WORKER", "?"),
        "index": index,
    }
    _agent.sendall(json.dumps(msg).encode() + b"\n")


@signals.worker_process_init.connect
def _child_hello(**_: Any) -> None:
    _hello("child")


@signals.worker_ready.connect
def _main_hello(sender: Any = None, **_: Any) -> None:
    _hello("main")
    if _agent is not None and sender is not None:
        threading.Thread(target=_commands, args=(sender, _agent), daemon=True).start()


def _commands(consumer: Any, agent: socket.socket) -> None:
    """The controller's commands to this worker, over the agent connection.

    ``adopt``: consume one more queue (a standby taking over a dead worker's queue).
    ``wake``: make the event loop look at its work now. ``drop``: lose the broker.
    The controller's own channel, not Celery's remote control: a broadcast sent just
    after the worker says it is ready can miss the pidbox (Redis PUB/SUB delivers to
    subscribers only), and the reply says when the consumer really consumes."""
    for line in agent.makefile("rb"):
        msg = json.loads(line)
        if msg.get("t") == "adopt":
            consumer.call_soon(_adopt, consumer, agent, msg["queue"])
        elif msg.get("t") == "wake":
            # From this thread the hub writes its waker: the loop runs what it has
            # ready and fires due timers now, not after its poll's timeout (up to
            # 10 s: kombu/asynchronous/hub.py fire_timers max_delay). A solo worker
            # on AMQP waits that long when it ran a task inside a ready callback
            # (_quick_drain at start, _adopt): the task's ack, queued with call_soon
            # from the loop thread, wakes nothing (celery/worker/loops.py asynloop).
            consumer.call_soon(_nothing)
        elif msg.get("t") == "drop":
            # In the event loop, like adopt: the loop is what reconnects, so no fd
            # listed here is closed or reused while the drop walks them.
            consumer.call_soon(_drop, consumer, agent)


def _nothing() -> None:
    pass


def _adopt(consumer: Any, agent: socket.socket, queue: str) -> None:
    consumer.app.amqp.queues[queue]  # declared as the sender declares it (x-expires)
    consumer.add_task_queue(queue)
    reply = {"t": "adopted", "queue": queue, "worker": os.environ.get("SUITE_WORKER", "?")}
    agent.sendall(json.dumps(reply).encode() + b"\n")


def _drop(consumer: Any, agent: socket.socket) -> None:
    """Lose the broker: shut down every TCP connection this process has to the broker's
    port, as a network failure or a broker-side close would. Celery and kombu see the
    error on their next read and reconnect on their own."""
    import psutil
    from kombu.utils.url import urlparse

    port = urlparse(consumer.app.conf.broker_url).port
    dropped = 0
    for conn in psutil.Process().net_connections(kind="tcp"):
        if conn.raddr and conn.raddr.port == port and conn.fd != -1:
            try:
                sock = socket.socket(fileno=conn.fd)
            except OSError:
                continue  # closed since it was listed
            try:
                sock.shutdown(socket.SHUT_RDWR)
                dropped += 1
            except OSError:
                pass  # already shut
            finally:
                sock.detach()  # the fd stays the library's
    worker = os.environ.get("SUITE_WORKER", "?")
    agent.sendall(json.dumps({"t": "dropped", "worker": worker, "n": dropped}).encode() + b"\n")


_locks: dict[str, Any] = {}
_resources: Any = None


def _lock(spec: str) -> Any:
    """The lock function for ``spec``, made once per process as the contract says."""
    global _resources
    if spec not in _locks:
        from tasks.locks.builtin import load_lock
        from tasks.resources import Resources

        if _resources is None:
            _resources = Resources()
        _locks[spec] = load_lock(spec)(_resources)
    return _locks[spec]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@app.task(name="suite.invoice", ignore_result=True)
def invoice(spec: dict[str, Any]) -> str:
    """Take the lock for the order; if acquired, create its invoice unless one exists."""
    from tasks.invoices.models import Invoice

    key, order, x = spec["key"], spec["order"], spec["execution"]
    try:
        with points.execution(x, spec["task"]):
            lock = _lock(spec["lock"])
            points.record("acq", key=key)
            try:
                cm = lock(key, float(spec["ttl"]))
                acquired = bool(cm.__enter__())
            except Exception as exc:
                points.record("acq_end", key=key, acquired=False, error=_error(exc))
                raise
            points.record("acq_end", key=key, acquired=acquired)
            try:
                if acquired:
                    points.point("cs")
                    if not Invoice.objects.filter(order=order).exists():
                        Invoice.objects.create(order=order, execution=x)
                        points.record("invoice", order=order)
            finally:
                if acquired:
                    points.record("rel", key=key)
                try:
                    cm.__exit__(None, None, None)
                except Exception as exc:
                    if not acquired:
                        raise
                    points.record("rel_end", key=key, error=_error(exc))
                else:
                    if acquired:
                        points.record("rel_end", key=key)
    except points.StaleExecution:
        return "stale"
    return "ok"


_effects: dict[str, Any] = {}


def _effect(spec: str) -> Any:
    """The effect function for ``spec``, made once per process (like a lock)."""
    global _resources
    if spec not in _effects:
        from tasks.effects.builtin import load_effect
        from tasks.resources import Resources

        if _resources is None:
            _resources = Resources()
        _effects[spec] = load_effect(spec)(_resources)
    return _effects[spec]


class Flaky(Exception):
    """What a task with ``autoretry_for=(Flaky,)`` raises to be retried."""


# An autoretry run's execution, left open when the body raises Flaky: Celery's
# autoretry wrapper publishes the retry after the body has returned
# (celery/app/autoretry.py: ``task.retry(exc=exc)``), and the run is not acked until
# after that, so the execution stays open across the publish to give that window the
# same ``retried`` point a ``self.retry()`` run has.
_autoretrying = threading.local()


class _DeliverTask(Task):
    def retry(self, *args: Any, **kwargs: Any) -> Any:
        open_run: ExitStack | None = getattr(_autoretrying, "run", None)
        _autoretrying.run = None
        if open_run is None:
            return super().retry(*args, **kwargs)
        try:
            return super().retry(*args, **kwargs)  # publishes, raises Retry
        finally:  # Retry, or past max_retries the Flaky itself
            with suppress(points.StaleExecution):  # over: Celery finishes anyway
                points.point("retried")
            open_run.close()  # ends the execution "ok", as a self.retry() run's


@app.task(
    name="suite.deliver", bind=True, base=_DeliverTask, autoretry_for=(Flaky,),
    retry_backoff=False,
    default_retry_delay=0,  # autoretry's countdown (180 s by default)
)  # fmt: skip
def deliver(self: Any, spec: dict[str, Any]) -> str:
    """Run the order's effect (create its invoice) between two scheduling points.

    ``start`` (parked before anything runs), the effect's own SQL points, then ``done``
    (the effect has committed; the task has not returned, so with acks_late the
    message is still unacked: a fault here is the classic "ran but not acked").

    With ``spec["retries"] = n`` the first n runs of the lineage ask to be retried
    after the effect: ``self.retry(countdown=0, max_retries=...)`` between the points
    ``retry`` (nothing published yet) and ``retried`` (the retry message is out, this
    one not acked yet), or, with ``spec["autoretry"]``, by raising ``Flaky``
    (``autoretry_for``) after the point ``retry``; Celery then publishes the retry and
    the same ``retried`` point follows (``_DeliverTask.retry``)."""
    from celery.exceptions import MaxRetriesExceededError, Retry

    order, task = spec["order"], spec["task"]
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    level = int(self.request.retries or 0)
    outcome: BaseException | None = None
    run = ExitStack()
    try:
        with run:
            run.enter_context(
                points.execution(task, task, redelivered, level, task_id=self.request.id)
            )
            _effect(spec["effect"])(order)
            points.record("effect", order=order)
            if level < int(spec.get("retries", 0)):
                points.point("retry")
                max_retries = int(spec.get("max_retries", 3))
                # Reported before retry() publishes (celery/app/task.py: past
                # max_retries when request.retries + 1 > max_retries), so the report
                # is in the history before the new message's receipt.
                points.record("retry" if level < max_retries else "exhausted", level=level + 1)
                if spec.get("autoretry"):
                    self.max_retries = max_retries  # what autoretry_for passes on
                    outcome = Flaky(f"asked to retry at level {level}")
                    _autoretrying.run = run.pop_all()  # closed by _DeliverTask.retry
                else:
                    try:
                        self.retry(countdown=0, max_retries=max_retries)
                    except (Retry, MaxRetriesExceededError) as exc:
                        outcome = exc
                    points.point("retried")
            else:
                points.point("done")
    except points.StaleExecution:
        return "stale"
    finally:
        if _resources is not None:  # no transaction of this run outlives it
            _resources.end_db_transaction()
    if outcome is not None:
        raise outcome  # Celery takes it from here: RETRY, or FAILURE past max_retries
    return "ok"


@app.task(name="suite.chord_body")
def chord_body(results: list[str]) -> int:
    """The body of the one-task chord a delivery claim may send ``suite.deliver`` in:
    Celery runs it once every header task has succeeded."""
    return len(results)


@signals.worker_process_init.connect
def _state_init(**_: Any) -> None:
    from tasks import state

    state.init_from_env()


@app.task(name="suite.state", ignore_result=True)
def state_op(spec: dict[str, Any]) -> str:
    """One read or write of the value the module-state properties watch (tasks/state.py)."""
    from tasks import state

    try:
        with points.execution(spec["execution"], spec["task"]):
            state.run(spec)
    except points.StaleExecution:
        return "stale"
    return "ok"


@app.task(name="suite.find_row", base=DjangoTask, ignore_result=True)
def find_row(spec: dict[str, Any]) -> str:
    """Look up the row the sender wrote before sending this task (tasks/publishing.py)."""
    from tasks import publishing

    try:
        with points.execution(spec["execution"], spec["task"]):
            points.record("looked", found=publishing.find(spec["key"]))
    except points.StaleExecution:
        return "stale"
    return "ok"
