"""Report a delivery the tracer returns from without running the task.

With ``worker_deduplicate_successful_tasks`` the tracer returns without running the
task (and without ``task_prerun``) when the redelivered message is already SUCCESS
(celery/app/trace.py ``build_tracer``). Nothing else tells the harness, which would
otherwise wait for a start that never comes. Wrapped where every pool builds its
tracers: prefork's children import ``build_tracer`` from the module at init, the
consumer holds its own reference (celery/worker/consumer/consumer.py).
"""

from __future__ import annotations

import threading
from typing import Any

from celery import signals

from tasks import points


def install(worker: str) -> None:
    """Notify ``skipped`` for a traced delivery that ran no ``task_prerun``."""
    from celery.app import trace
    from celery.worker.consumer import consumer

    build, ran = trace.build_tracer, threading.local()

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
