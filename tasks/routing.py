"""The routing area's task and settings: ``suite.routed`` and how an app routes it.

``register(app, text)`` (``tasks.app`` calls it in every worker; the routing runner in
its own sender app) applies the routing settings ``text`` (JSON, ``Settings.routing``;
empty for the other areas' workers, which then change nothing) and registers
``suite.routed``. Queue names in the settings are the model's (``qr``, ``qt``,
``celery``, model/routing.py); every app prefixes them with the run id, the default
queue included, so concurrent runs on one RabbitMQ never share a queue.

Settings: ``prefix`` (the run id), ``routes`` (``task_routes`` sends the task there),
``attr`` (the task's own ``queue`` attribute), ``create_missing``
(``task_create_missing_queues``), ``declared`` (``task_queues`` when that is off),
``max_priority`` (``task_queue_max_priority``: RabbitMQ's ``x-max-priority``),
``strategy`` (Redis ``queue_order_strategy``) and ``expires_ms`` (the queues'
``x-expires``, as tasks/patches/expiring_queues.py gives the queues Celery makes).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

from tasks import points
from tasks.deliver import DeliverTask, Flaky, retry_after_return

TASK = "suite.routed"


def settings_of(text: str) -> dict[str, Any]:
    conf: dict[str, Any] = json.loads(text) if text else {}
    return conf


def configure(app: Any, conf: dict[str, Any]) -> None:
    """Give ``app`` the routing settings ``conf`` (before anything reads its queues)."""
    from kombu import Queue

    prefix = conf["prefix"]
    app.conf.task_default_queue = f"{prefix}celery"
    if conf.get("routes"):
        app.conf.task_routes = {TASK: {"queue": f"{prefix}{conf['routes']}"}}
    app.conf.task_create_missing_queues = bool(conf["create_missing"])
    if not conf["create_missing"]:
        expires = {"x-expires": conf["expires_ms"]} if conf.get("expires_ms") else {}
        app.conf.task_queues = [
            Queue(f"{prefix}{q}", routing_key=f"{prefix}{q}", queue_arguments=dict(expires))
            for q in conf["declared"]
        ]
    if conf.get("max_priority"):
        app.conf.task_queue_max_priority = int(conf["max_priority"])
    if conf.get("strategy"):
        options = dict(app.conf.broker_transport_options or {})
        app.conf.broker_transport_options = {**options, "queue_order_strategy": conf["strategy"]}


def register(app: Any, text: str) -> Any:
    """Apply the routing settings ``text`` to ``app`` and register ``suite.routed``
    (with its ``queue`` attribute if the settings give it one)."""
    conf = settings_of(text)
    attrs: dict[str, Any] = {}
    if conf:
        configure(app, conf)
        if conf.get("attr"):
            attrs["queue"] = f"{conf['prefix']}{conf['attr']}"
    # Not shared: a shared task is added to every app finalized later in the process,
    # so one config's sender would lend its queue attribute to the next one's.
    return app.task(
        name=TASK, bind=True, base=DeliverTask, autoretry_for=(Flaky,), retry_backoff=False,
        default_retry_delay=0, ignore_result=True, shared=False, **attrs,
    )(routed)  # fmt: skip


def routed(self: Any, spec: dict[str, Any]) -> str:
    """Report the queue this delivery came from, then park at ``done``; with
    ``spec["retries"] = n`` the first n runs of the lineage raise ``Flaky`` at the
    point ``retry`` instead, and Celery's autoretry publishes the retry
    (celery/app/autoretry.py) before the point ``retried`` (``DeliverTask.retry``).

    The queue is the delivery's routing key: every direct route is published to the
    anonymous exchange with the queue's name as the key (celery/app/amqp.py
    ``send_task_message``), on both brokers."""
    task, prefix = spec["task"], spec["prefix"]
    info = self.request.delivery_info or {}
    key = str(info.get("routing_key") or "")
    level = int(self.request.retries or 0)
    outcome: BaseException | None = None
    run = ExitStack()
    try:
        with run:
            run.enter_context(
                points.execution(
                    task, task, bool(info.get("redelivered")), level, task_id=self.request.id
                )
            )
            points.record("from", queue=key.removeprefix(prefix))
            if level < int(spec.get("retries", 0)):
                points.point("retry")
                points.record("retry", level=level + 1)
                outcome = Flaky(f"asked to retry at level {level}")
                retry_after_return(run.pop_all())
            else:
                points.point("done")
    except points.StaleExecution:
        return "stale"
    if outcome is not None:
        raise outcome  # autoretry_for: Celery publishes the retry
    return "ok"
