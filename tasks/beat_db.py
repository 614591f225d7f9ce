"""django-celery-beat's tables on the run's PostgreSQL: the beat area's ``django`` rows.

The test process (harness/runs/beat.py) applies the app's migrations once, gives each
example its schedule as rows, ``PeriodicTask`` + ``IntervalSchedule``, the way an
admin user adds a periodic task (``last_run_at`` empty), and reads them back at the
end. The beats (tasks/beat.py, ``DatabaseScheduler``) read and save the same rows.
Django must be configured with ``BEAT_APP`` (tasks/django_setup.py) before any
function here runs; ``EPOCH`` and ``seconds`` need nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # the scenario clock's 0, as every beat reads it
TASK = "suite.beat_entry"


def seconds(when: datetime) -> float:
    """A datetime as the scenario clock's seconds."""
    return (when - EPOCH).total_seconds()


def migrate() -> None:
    """Apply django-celery-beat's migrations on ``postgres`` unless its tables are there
    (once per session: the run's PostgreSQL is new each session)."""
    from django.core.management import call_command
    from django.db import connections
    from django_celery_beat.models import PeriodicTask

    if PeriodicTask._meta.db_table not in connections["postgres"].introspection.table_names():
        call_command("migrate", "django_celery_beat", database="postgres", verbosity=0)


def reset(entries: list[str] | tuple[str, ...], period: float, queue: str) -> None:
    """One example's schedule: every earlier row gone, then one ``PeriodicTask`` per
    entry, every ``period`` seconds, onto ``queue``, its args ``[name]``. Created at the
    scenario clock's 0: ``date_changed`` (``auto_now``, the wall clock here) is set to
    ``EPOCH``, since a beat takes it as ``last_run_at`` while that is empty
    (``ModelEntry.__init__``)."""
    import json

    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

    PeriodicTask.objects.all().delete()
    IntervalSchedule.objects.all().delete()
    PeriodicTasks.objects.all().delete()
    every = IntervalSchedule.objects.create(every=int(period), period=IntervalSchedule.SECONDS)
    for name in entries:
        PeriodicTask.objects.create(
            name=name, task=TASK, interval=every, args=json.dumps([name]), queue=queue
        )
    PeriodicTask.objects.update(date_changed=EPOCH)


def rows(entries: list[str] | tuple[str, ...]) -> dict[str, tuple[float | None, int]]:
    """What each entry's row holds: ``last_run_at`` (scenario seconds, None while
    empty) and ``total_run_count``."""
    from django_celery_beat.models import PeriodicTask

    out: dict[str, tuple[float | None, int]] = {}
    for task in PeriodicTask.objects.filter(name__in=list(entries)):
        last = None if task.last_run_at is None else seconds(task.last_run_at)
        out[task.name] = (last, task.total_run_count)
    return out
