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
from typing import Any

from celery import Celery, signals

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
        "visibility_timeout": float(os.environ.get("SUITE_VISIBILITY_TIMEOUT", "3600")),
    },
    task_acks_late=_flag("SUITE_ACKS_LATE", False),
    task_reject_on_worker_lost=_flag("SUITE_REJECT_ON_WORKER_LOST", False),
    task_track_started=_flag("SUITE_TRACK_STARTED", False),
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
def _main_hello(**_: Any) -> None:
    _hello("main")


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
