"""A real ``celery beat`` whose time the controller drives: ``celery -A tasks.beat beat``.

The harness (harness/runs/beat.py) starts one process per beat of a scenario as

    python -m celery -A tasks.beat beat -S <scheduler> -s <schedule file> -l info

Celery's own ``Service.start`` loop runs, with the scheduler the config names
(``celery.beat:PersistentScheduler`` or ``redbeat.RedBeatScheduler``) and its own
``beat_init`` handlers (redbeat takes its lock there). Three things are the
controller's instead of the wall clock's:

- **sleeping**: ``celery.beat``'s ``time.sleep`` (the loop's wait between ticks) and
  ``redis.lock``'s (a standby's wait between two tries of redbeat's lock) park on the
  control connection until the controller says ``go`` (a ``tick bN`` move);
- **now**: ``Celery.now`` (what every schedule's ``is_due`` and redbeat's
  ``ZRANGEBYSCORE`` read) returns a virtual datetime, and ``celery.beat``'s
  ``time.monotonic`` (``should_sync``'s clock) virtual seconds; the controller sends
  the clock with every ``go``;
- **sending**: ``Scheduler.apply_async`` (which both schedulers send through; redbeat
  reserves the entry inside it, the default scheduler just before it) parks before
  it sends (a ``send bN`` move), so a pause or a kill can land inside a tick.

What the beat did goes to the controller as records: ``sent`` (after the publish
returned: the message is on the broker), ``saved`` (PersistentScheduler's ``sync``),
``locked`` (redbeat's lock acquired), ``wrote`` and ``loaded`` (django-celery-beat's
``DatabaseScheduler`` saved an entry's row, re-read every row). Settings come from
``SUITE_BEAT_*``.

django-celery-beat reads the time through its own calls, not ``Celery.now``:
``ModelEntry._default_now`` (``last_run_at`` at each send) and the scheduler's
five-minute full re-read call ``datetime.datetime.now`` in django_celery_beat/
schedulers.py, and ``IntervalSchedule.schedule``'s ``nowfun`` (what ``is_due``
compares with) calls Django's ``timezone.now``. In a beat of that scheduler both are
the scenario clock too: that module's ``datetime`` is a copy whose ``datetime.now``
reads it, and ``django.utils.timezone.now`` returns it.
"""

from __future__ import annotations

import datetime as _datetime
import json
import os
import socket
import threading
import time as _time
from datetime import datetime, timedelta
from typing import Any

from celery import Celery, beat, signals

from tasks.beat_db import EPOCH, seconds

MONOTONIC_BASE = 1000.0  # should_sync treats a falsy _last_sync as "never synced"


class _Control:
    """This beat's connection to the controller: gates and records, one at a time."""

    def __init__(self, address: str, name: str, clock: float) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.settimeout(None)  # a parked beat waits as long as the controller says
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.clock = clock
        self.lock = threading.Lock()
        self.send({"t": "hello", "beat": name, "pid": os.getpid()})

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    def gate(self, kind: str, **data: Any) -> None:
        """Park until the controller lets this beat go on; take its clock."""
        with self.lock:
            self.send({"t": "gate", "kind": kind, "clock": self.clock, **data})
            line = self.reader.readline()
            if not line:
                raise SystemExit("the controller went away")
            self.clock = float(json.loads(line)["clock"])

    def record(self, kind: str, **data: Any) -> None:
        self.send({"t": "rec", "k": kind, "clock": self.clock, **data})


class _Time:
    """A ``time`` module for one library: ``sleep`` parks at the gate ``kind``,
    ``monotonic`` is virtual; everything else is the real module's."""

    def __init__(self, control: _Control, kind: str) -> None:
        self._control, self._kind = control, kind

    def sleep(self, seconds: float) -> None:
        self._control.gate(self._kind, wants=round(float(seconds), 3))

    def monotonic(self) -> float:
        return MONOTONIC_BASE + self._control.clock

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


def _now() -> datetime:
    """The scenario clock, in UTC."""
    return EPOCH + timedelta(seconds=_control.clock)


def _virtual_now(self: Celery) -> datetime:
    return _now().astimezone(self.timezone)


class _VirtualDatetime(datetime):
    """``datetime.datetime`` whose ``now`` and ``utcnow`` read the scenario clock."""

    @classmethod
    def now(cls, tz: _datetime.tzinfo | None = None) -> datetime:  # type: ignore[override]
        return _now().astimezone(tz) if tz is not None else _now().astimezone().replace(tzinfo=None)

    @classmethod
    def utcnow(cls) -> datetime:  # type: ignore[override]
        return _now().replace(tzinfo=None)


class _Datetime:
    """A ``datetime`` module for one library: its ``datetime`` is ``_VirtualDatetime``,
    everything else is the real module's."""

    datetime = _VirtualDatetime

    def __getattr__(self, name: str) -> Any:
        return getattr(_datetime, name)


_control = _Control(
    os.environ["SUITE_BEAT_CONTROL"],
    os.environ["SUITE_BEAT_NAME"],
    float(os.environ.get("SUITE_BEAT_CLOCK", "0")),
)
_entry_sent: threading.local = threading.local()

Celery.now = _virtual_now
beat.time = _Time(_control, "tick")

_apply_async = beat.Scheduler.apply_async
_send_task = beat.Scheduler.send_task
_sync = beat.PersistentScheduler.sync


def _gated_apply_async(self: Any, entry: Any, *args: Any, **kwargs: Any) -> Any:
    due = _control.clock
    _control.gate("send", entry=entry.name, due=due)
    _entry_sent.current = (entry.name, due)
    try:
        return _apply_async(self, entry, *args, **kwargs)
    finally:
        _entry_sent.current = None


def _recorded_send_task(self: Any, *args: Any, **kwargs: Any) -> Any:
    result = _send_task(self, *args, **kwargs)
    name, due = getattr(_entry_sent, "current", None) or ("?", _control.clock)
    _control.record("sent", entry=name, due=due, at=_control.clock)
    return result


def _recorded_sync(self: Any) -> None:
    _sync(self)
    if self._store is not None:
        _control.record("saved")


beat.Scheduler.apply_async = _gated_apply_async
beat.Scheduler.send_task = _recorded_send_task
beat.PersistentScheduler.sync = _recorded_sync

PERIOD = float(os.environ.get("SUITE_BEAT_PERIOD", "60"))
QUEUE = os.environ.get("SUITE_BEAT_QUEUE", "beat")
ENTRIES = [e for e in os.environ.get("SUITE_BEAT_ENTRIES", "e1").split(",") if e]

DJANGO = os.environ.get("SUITE_BEAT_SCHEDULER", "") == "django"
if DJANGO:  # DatabaseScheduler: Django on the run's PostgreSQL, the rows harness-made
    from tasks import django_setup

    django_setup.configure(apps=(django_setup.BEAT_APP,))
    from django.utils import timezone as _django_timezone

    _django_timezone.now = _now  # USE_TZ: an aware UTC datetime, as Django's own
    from django_celery_beat import schedulers as _db_schedulers

    _db_schedulers.datetime = _Datetime()
    _save_row = _db_schedulers.ModelEntry.save
    _all_as_schedule = _db_schedulers.DatabaseScheduler.all_as_schedule

    def _recorded_save(self: Any) -> None:
        """``sync`` saves each entry it sent since its last sync (``_dirty``)."""
        _save_row(self)
        model = self.model
        last = None if model.last_run_at is None else seconds(model.last_run_at)
        _control.record("wrote", entry=self.name, last=last, runs=model.total_run_count)

    def _recorded_all_as_schedule(self: Any) -> Any:
        """Every row read again: a reload unless it is the first read (``setup_schedule``)."""
        reload = self._schedule is not None
        entries = _all_as_schedule(self)
        if reload:
            _control.record("loaded")
        return entries

    _db_schedulers.ModelEntry.save = _recorded_save
    _db_schedulers.DatabaseScheduler.all_as_schedule = _recorded_all_as_schedule

SCHEDULE = {
    name: {
        "task": "suite.beat_entry",
        "schedule": timedelta(seconds=PERIOD),
        "args": [name],
        "options": {"queue": QUEUE},
    }
    for name in ENTRIES
}

app = Celery("suite-beat")
app.conf.update(
    broker_url=os.environ["SUITE_BROKER_URL"],
    broker_connection_retry_on_startup=False,
    timezone="UTC",
    enable_utc=True,
    result_expires=None,  # else beat adds celery.backend_cleanup to the schedule
    beat_enable_remote_control=False,
    beat_max_loop_interval=5,
    # DatabaseScheduler's schedule is its rows (tasks/beat_db.py): a beat_schedule would
    # be written to them at every start (setup_schedule -> update_from_dict).
    beat_schedule={} if DJANGO else SCHEDULE,
    # redbeat: its keys per example; its lock lasts an hour, so it ends only by the
    # scenario's ``expire`` move (or a release), never by the wall clock.
    redbeat_redis_url=os.environ["SUITE_BROKER_URL"],
    redbeat_key_prefix=os.environ.get("SUITE_BEAT_PREFIX", "redbeat:"),
    redbeat_lock_timeout=3600,
    worker_hijack_root_logger=False,
)

if os.environ.get("SUITE_BEAT_SCHEDULER", "").startswith("redbeat"):
    import redbeat.schedulers  # noqa: F401  # its beat_init handler (the lock) goes first
    import redis.lock

    redis.lock.mod_time = _Time(_control, "lock")  # type: ignore[attr-defined]

    def _locked(sender: Any = None, **_: Any) -> None:
        """After redbeat's own ``beat_init`` handler: it returned with the lock."""
        if getattr(sender.scheduler, "lock", None) is not None:
            _control.record("locked")

    signals.beat_init.connect(_locked, weak=False)

_control.gate("boot")  # the controller starts the beats of a scenario one by one
