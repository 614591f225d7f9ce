"""The worker tells the controller what it does with each message.

Received (in the main process, before the pool: a ``task_received`` receiver), acked,
rejected (kombu/message.py ``Message.ack``/``reject``), loss handled
(celery/worker/request.py ``Request.on_failure``), and every result state it asks the
backend to store (celery/backends/base.py ``Backend.store_result``). The harness waits
on these instead of sleeping, and the history records them.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from tasks import points
from tasks.patches import qos_order


def worker_lost(exc_info: Any) -> bool:
    """Whether ``Request.on_failure`` is handling the loss of the pool child that ran
    the job (billiard's WorkerLostError; billiard >= 4.3 may report the child's exit as
    SystemExit / KeyboardInterrupt first, which Celery treats the same unless it
    cancelled the job itself). A retry (``Retry``) and a task's own error come through
    ``on_failure`` too, from the main process, whenever it reads the child's result:
    counted as losses, a late one satisfied the harness's wait for a kill's handling
    before the kill's FAILURE was stored."""
    from billiard.exceptions import WorkerLostError

    exc = getattr(exc_info, "exception", None)
    exc = getattr(exc, "exc", exc)  # billiard.einfo.ExceptionWithTraceback
    return isinstance(exc, (WorkerLostError, SystemExit, KeyboardInterrupt))


def install(worker: str) -> None:
    """Report every delivery of this process, naming the worker ``worker``."""
    from celery.backends.base import Backend
    from celery.worker.request import Request
    from kombu.message import Message

    seq = qos_order.install()

    def received(request: Any, **_: Any) -> None:
        info = request.delivery_info or {}
        level = int((request._request_dict or {}).get("retries") or 0)
        tag = request.message.delivery_tag
        place, count = seq.appended.get(tag, (None, None))
        points.notify(
            "recv", id=request.id, worker=worker, redelivered=bool(info.get("redelivered")),
            level=level, tag=str(tag), seq=place, qos=count,
        )  # fmt: skip

    signals.task_received.connect(received, weak=False)

    # At the message, not at Celery's Request: Celery defers the broker call to its
    # event loop (call_soon), and the report must follow what the broker was told.
    ack, reject, on_failure = Message.ack, Message.reject, Request.on_failure

    def acknowledge(self: Any, multiple: bool = False) -> None:
        tid = (self.headers or {}).get("id")
        try:
            place, _, count = seq.settled(lambda: ack(self, multiple=multiple))
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
            points.notify(
                "ack", id=tid, worker=worker, tag=str(self.delivery_tag), seq=place, qos=count
            )

    def rejected(self: Any, requeue: bool = False) -> None:
        place, restored, count = seq.settled(lambda: reject(self, requeue=requeue))
        if (tid := (self.headers or {}).get("id")) is not None:
            # Whether a copy went back: RabbitMQ requeues what it is asked to; Redis
            # only what its unacked hash still held.
            back = requeue if place is None else restored > 0
            points.notify(
                "reject", id=tid, worker=worker, requeue=requeue, tag=str(self.delivery_tag),
                seq=place, back=back, qos=count,
            )  # fmt: skip

    def failed(self: Any, exc_info: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return on_failure(self, exc_info, *args, **kwargs)
        finally:
            points.notify("handled", id=self.id, worker=worker, lost=worker_lost(exc_info))

    Message.ack = acknowledge  # type: ignore[method-assign]
    Message.reject = rejected  # type: ignore[method-assign]
    Request.on_failure = failed

    store = Backend.store_result

    def store_result(self: Any, task_id: str, result: Any, state: str, *a: Any, **kw: Any) -> Any:
        stored = store(self, task_id, result, state, *a, **kw)
        points.notify("state", id=task_id, state=state)  # once a reader would see it
        return stored

    Backend.store_result = store_result
