"""The Celery app the suite's workers run, configured from the run's environment.

Started by the harness as ``celery -A tasks.app worker ...`` (harness/workers.py, or
forked by tasks/forkserver.py); the sender imports it too. Importing it reads the
settings (tasks/settings.py), installs the patches (tasks/patches/), connects the
agent (tasks/agent.py) and registers the task bodies (tasks/bodies.py,
tasks/deliver.py) under their task names.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task, signals

from tasks import agent, bodies, canvas, django_setup, patches, routing, state, warm
from tasks import deliver as delivery
from tasks.settings import Settings

django_setup.configure()
# A fresh worker imports these before its pool forks, as the fork server does.
warm.preload()

settings = Settings.from_env(os.environ)

app = Celery("suite")
app.conf.update(
    broker_url=settings.broker_url,
    result_backend=settings.result_url,
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        # Redis: the harness never lets this pass by itself (a scenario is far shorter);
        # its "vt" move ages the unacked entries instead, and every worker scans for
        # aged entries every 50 ms rather than every 100 s (kombu/transport/redis.py
        # ``unacked_restore_interval`` x ``unacked_restore_throttle``), so a restore
        # follows the move at once, by a consuming worker, as in production.
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": 0.05,
        "unacked_restore_throttle": 1,
    },
    task_acks_late=settings.acks_late,
    task_reject_on_worker_lost=settings.reject_on_worker_lost,
    task_acks_on_failure_or_timeout=settings.acks_on_failure,
    task_track_started=settings.track_started,
    worker_deduplicate_successful_tasks=settings.dedup,
    worker_cancel_long_running_tasks_on_connection_loss=settings.cancel_on_loss,
    # One message per free slot: the controller only submits when a slot is free, so
    # nothing waits in a worker's prefetch buffer where a kill would strand it.
    worker_prefetch_multiplier=settings.prefetch,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_serializer="json",
    accept_content=["json"],
)

if settings.heartbeat is not None:
    # The warm-shutdown heartbeat claim: RabbitMQ closes a connection that misses two
    # (celery #5998); Celery's own default is 120 s.
    app.conf.broker_heartbeat = settings.heartbeat

patches.install_all(settings)
agent.install(settings.worker)


def _django_task() -> type[Task]:
    """Celery's ``DjangoTask`` (``delay_on_commit``, Celery 5.4+), else the plain Task.

    ``nox -s regressions`` runs older Celery releases (properties/regressions.py): there
    the publishing area's ``delay-on-commit`` mode cannot run (no such method); every
    other area imports this app as it is."""
    try:
        from celery.contrib.django.task import DjangoTask
    except ImportError:  # Celery < 5.4
        return Task
    return DjangoTask


def _state_init(**_: Any) -> None:
    """The suite's ``worker_process_init`` handler (tasks/state.py)."""
    state.init(settings.state_init)


signals.worker_process_init.connect(_state_init, weak=False)

invoice = app.task(name="suite.invoice", ignore_result=True)(bodies.invoice)
deliver = app.task(
    name="suite.deliver", bind=True, base=delivery.DeliverTask, autoretry_for=(delivery.Flaky,),
    retry_backoff=False,
    default_retry_delay=0,  # autoretry's countdown (180 s by default)
)(delivery.deliver)  # fmt: skip
chord_body = app.task(name="suite.chord_body")(bodies.chord_body)
state_op = app.task(name="suite.state", ignore_result=True)(bodies.state_op)
find_row = app.task(name="suite.find_row", base=_django_task(), ignore_result=True)(bodies.find_row)
canvas.register(app)  # suite.canvas_part, suite.canvas_body (tasks/canvas.py)
routing.register(app, settings.routing)  # suite.routed and its routing (tasks/routing.py)
