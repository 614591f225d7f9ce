"""A worker's settings: the ``SUITE_*`` environment the harness starts it with.

One schema for both sides: the harness builds a worker's environment with
``Settings(...).to_env()`` (harness/workers.py) and every process of the worker (and
the sender, which imports ``tasks.app`` too) reads it back with ``Settings.from_env``.
A fork server hands each worker its own environment (tasks/forkserver.py), so this is
read once, when ``tasks.app`` is imported.

Encodings: a flag is ``"1"`` or ``"0"`` (anything but ``"1"`` is off), a number is its
``str``, and an absent optional value is the empty string. A variable left out of the
environment means the field's default.

The services' addresses are not settings of a worker but of the run, set by
harness/cluster.py and read where they are used: ``SUITE_CONTROL`` (tasks/points.py),
``SUITE_RUN_DIR``, ``SUITE_PG_DSN``, ``SUITE_CACHE_REDIS_URL``, ``SUITE_MEMCACHED``
(tasks/django_setup.py, tasks/resources.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/15"


def _flag(value: str | None, default: bool) -> bool:
    return (value if value is not None else ("1" if default else "0")) == "1"


def _bit(value: bool) -> str:
    return "1" if value else "0"


@dataclass(frozen=True)
class Settings:
    worker: str = "?"  # SUITE_WORKER: the hostname, as every report names the worker
    broker_url: str = DEFAULT_BROKER_URL  # SUITE_BROKER_URL
    result_url: str | None = None  # SUITE_RESULT_URL: None, no result backend
    acks_late: bool = False  # SUITE_ACKS_LATE: task_acks_late
    reject_on_worker_lost: bool = False  # SUITE_REJECT_ON_WORKER_LOST
    acks_on_failure: bool = True  # SUITE_ACKS_ON_FAILURE: task_acks_on_failure_or_timeout
    track_started: bool = False  # SUITE_TRACK_STARTED: task_track_started
    dedup: bool = False  # SUITE_DEDUP: worker_deduplicate_successful_tasks
    # SUITE_CANCEL_ON_LOSS: worker_cancel_long_running_tasks_on_connection_loss
    cancel_on_loss: bool = False
    prefetch: int = 1  # SUITE_PREFETCH: worker_prefetch_multiplier
    state_init: int | None = None  # SUITE_STATE_INIT: what worker_process_init sets
    gates: bool = False  # SUITE_GATES: scheduling points in the pool (tasks/patches/gates.py)
    queue_expires_ms: int = 0  # SUITE_QUEUE_EXPIRES_MS: 0, queues never expire
    visibility_timeout: float = 3600.0  # SUITE_VISIBILITY_TIMEOUT (Redis), seconds
    pool_maintain_period: float = 0.01  # SUITE_POOL_MAINTAIN_PERIOD, seconds
    # SUITE_CHORD_ORDERED: the Redis result backend's chord join, a sorted set (True)
    # or a list (result_backend_transport_options' result_chord_ordered; tasks/canvas.py)
    chord_ordered: bool = True
    # SUITE_ROUTING: the routing area's settings, JSON (tasks/routing.py); "" for none
    routing: str = ""
    # SUITE_HEARTBEAT: broker_heartbeat in seconds (AMQP); None, Celery's default (120)
    heartbeat: float | None = None
    # SUITE_CANVAS_PLUGIN: a plug-in canvas whose tasks the worker registers at start
    # (tasks/canvas_plugins.py); empty: none
    canvas_plugin: str | None = None

    def to_env(self) -> dict[str, str]:
        return {
            "SUITE_WORKER": self.worker,
            "SUITE_BROKER_URL": self.broker_url,
            "SUITE_RESULT_URL": self.result_url or "",
            "SUITE_ACKS_LATE": _bit(self.acks_late),
            "SUITE_REJECT_ON_WORKER_LOST": _bit(self.reject_on_worker_lost),
            "SUITE_ACKS_ON_FAILURE": _bit(self.acks_on_failure),
            "SUITE_TRACK_STARTED": _bit(self.track_started),
            "SUITE_DEDUP": _bit(self.dedup),
            "SUITE_CANCEL_ON_LOSS": _bit(self.cancel_on_loss),
            "SUITE_PREFETCH": str(self.prefetch),
            "SUITE_STATE_INIT": "" if self.state_init is None else str(self.state_init),
            "SUITE_GATES": _bit(self.gates),
            "SUITE_QUEUE_EXPIRES_MS": str(self.queue_expires_ms),
            "SUITE_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "SUITE_POOL_MAINTAIN_PERIOD": str(self.pool_maintain_period),
            "SUITE_CHORD_ORDERED": _bit(self.chord_ordered),
            "SUITE_ROUTING": self.routing,
            "SUITE_HEARTBEAT": "" if self.heartbeat is None else str(self.heartbeat),
            "SUITE_CANVAS_PLUGIN": self.canvas_plugin or "",
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        get = environ.get
        state_init, heartbeat = get("SUITE_STATE_INIT"), get("SUITE_HEARTBEAT")
        return cls(
            worker=get("SUITE_WORKER", cls.worker),
            broker_url=get("SUITE_BROKER_URL", cls.broker_url),
            result_url=get("SUITE_RESULT_URL") or None,
            acks_late=_flag(get("SUITE_ACKS_LATE"), cls.acks_late),
            reject_on_worker_lost=_flag(
                get("SUITE_REJECT_ON_WORKER_LOST"), cls.reject_on_worker_lost
            ),
            acks_on_failure=_flag(get("SUITE_ACKS_ON_FAILURE"), cls.acks_on_failure),
            track_started=_flag(get("SUITE_TRACK_STARTED"), cls.track_started),
            dedup=_flag(get("SUITE_DEDUP"), cls.dedup),
            cancel_on_loss=_flag(get("SUITE_CANCEL_ON_LOSS"), cls.cancel_on_loss),
            prefetch=int(get("SUITE_PREFETCH", str(cls.prefetch))),
            state_init=int(state_init) if state_init else None,
            gates=_flag(get("SUITE_GATES"), cls.gates),
            queue_expires_ms=int(get("SUITE_QUEUE_EXPIRES_MS", str(cls.queue_expires_ms))),
            visibility_timeout=float(get("SUITE_VISIBILITY_TIMEOUT", str(cls.visibility_timeout))),
            pool_maintain_period=float(
                get("SUITE_POOL_MAINTAIN_PERIOD", str(cls.pool_maintain_period))
            ),
            chord_ordered=_flag(get("SUITE_CHORD_ORDERED"), cls.chord_ordered),
            routing=get("SUITE_ROUTING", cls.routing),
            heartbeat=float(heartbeat) if heartbeat else None,
            canvas_plugin=get("SUITE_CANVAS_PLUGIN") or None,
        )
