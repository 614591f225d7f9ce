"""Scenario configuration and the catalogue of built-in locks the model knows.

A lock is named either by a built-in name (``cookbook-redis``) or by a plug-in path
(``pkg.mod:make_lock``). The model can predict outcomes only for built-in locks; for a
plug-in it checks the invariants alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Pool = Literal["prefork", "threads", "solo"]
POOLS: tuple[Pool, ...] = ("prefork", "threads", "solo")

# Where a lock's state lives.
#   process: a private dict per OS process (Django LocMemCache: ``_caches`` is a module
#            global, django/core/cache/backends/locmem.py), shared by the threads of
#            that process only.
#   server:  one copy on a server every process talks to.
Scope = Literal["process", "server"]

# How ``acquire`` decides.
#   atomic:         one server-side test-and-set (Redis SET NX PX, memcached ADD,
#                   LocMemCache.add under its per-process lock).
#   select-write:   Django DatabaseCache.add: SELECT the row, then INSERT (row absent)
#                   or UPDATE (row present but expired) in one transaction
#                   (django/core/cache/backends/db.py ``_base_set``); a DatabaseError
#                   makes it return False.
Acquire = Literal["atomic", "select-write"]

# How ``release`` decides.
#   unchecked-delete: the cookbook deletes the key with no ownership check, but only
#                     if its own clock says the lease has not run out
#                     (docs/tutorials/task-cookbook.rst "Ensuring a task is only
#                     executed one at a time"). The clock check and the delete are two
#                     steps.
#   token-checked:    compare-and-delete in one Lua script; a lost lease raises
#                     LockNotOwnedError (redis/lock.py ``LUA_RELEASE_SCRIPT``).
Release = Literal["unchecked-delete", "token-checked"]

Database = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class LockSemantics:
    backend: str
    scope: Scope
    acquire: Acquire
    release: Release
    database: Database | None = None
    expired_row_stays: bool = False  # an expired DB cache row is kept until overwritten


BUILTIN_LOCKS: dict[str, LockSemantics] = {
    "cookbook-locmem": LockSemantics("locmem", "process", "atomic", "unchecked-delete"),
    "cookbook-db-sqlite": LockSemantics(
        "db-sqlite", "server", "select-write", "unchecked-delete", "sqlite", True
    ),
    "cookbook-db-postgres": LockSemantics(
        "db-postgres", "server", "select-write", "unchecked-delete", "postgres", True
    ),
    "cookbook-memcached": LockSemantics("memcached", "server", "atomic", "unchecked-delete"),
    "cookbook-redis": LockSemantics("redis", "server", "atomic", "unchecked-delete"),
    "redis-py-lock": LockSemantics("redis-py-lock", "server", "atomic", "token-checked"),
}


def is_plugin(lock: str) -> bool:
    return ":" in lock


@dataclass(frozen=True)
class LockConfig:
    """What a lock scenario runs on. Workers are shared by every lock with the same
    pool and concurrency: the lock is a task argument, not a worker setting."""

    lock: str
    pool: Pool
    concurrency: int
    broker: str = "redis"

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}: choose one of {', '.join(POOLS)}")
        if not 1 <= self.concurrency <= 4:
            raise ValueError(f"concurrency {self.concurrency} out of range 1..4")
        if self.pool == "solo" and self.concurrency != 1:
            raise ValueError("the solo pool runs one task at a time: concurrency must be 1")
        if not is_plugin(self.lock) and self.lock not in BUILTIN_LOCKS:
            known = ", ".join(sorted(BUILTIN_LOCKS))
            raise ValueError(
                f"unknown lock {self.lock!r}: use a built-in ({known}) "
                "or a plug-in path 'pkg.mod:make_lock'"
            )

    @property
    def semantics(self) -> LockSemantics | None:
        return BUILTIN_LOCKS.get(self.lock)

    @property
    def backend(self) -> str:
        sem = self.semantics
        return sem.backend if sem else "plugin"

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["backend"] = self.backend
        return d

    def label(self) -> str:
        return f"{self.lock}/{self.pool}/c{self.concurrency}"


Broker = Literal["redis", "amqp"]
BROKERS: tuple[Broker, ...] = ("redis", "amqp")


@dataclass(frozen=True)
class DeliveryConfig:
    """What a delivery scenario runs on: the broker, the pool and the ack settings.

    One active worker consumes the scenario's queue; a warm standby takes the queue over
    when the active worker's main process dies (that is the "second worker" a
    redelivery goes to). ``effect`` is the invoice effect, built-in name or plug-in path.
    """

    broker: Broker
    pool: Pool
    concurrency: int
    acks_late: bool
    reject_on_worker_lost: bool = False
    # task_acks_on_failure_or_timeout: with acks_late, False rejects (no requeue) a
    # delivery whose run failed instead of acking it.
    acks_on_failure: bool = True
    effect: str = "insert-on-conflict"
    track_started: bool = True
    prefetch: int = 1  # worker_prefetch_multiplier
    retries: int = 0  # how many times the task asks to be retried before it succeeds
    max_retries: int = 3
    autoretry: bool = False  # retry by raising an autoretry_for exception
    # worker_deduplicate_successful_tasks: skip a redelivered message already SUCCESS.
    dedup: bool = False
    # worker_cancel_long_running_tasks_on_connection_loss.
    cancel_on_loss: bool = False
    countdown: float = 0.0  # apply_async(countdown=...): the worker holds it unacked
    chord: bool = False  # each task is the one header task of a chord (its body: chord(tN))
    # Hold t1's job once at a gate inside the prefork pool (tasks/app.py ``_gates``):
    # "accept" (in the child, before it tells the parent) or "accepted" (in the main
    # process, before it acks). Fixed semantics claims only.
    gate: str | None = None
    results: str = "redis"  # the result backend: redis | db (SQLAlchemy, PostgreSQL)
    # RabbitMQ's consumer_timeout, on a private node (node-wide in 3.10). Fixed claims.
    consumer_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        if self.broker not in BROKERS:
            raise ValueError(f"unknown broker {self.broker!r}: choose one of {', '.join(BROKERS)}")
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}: choose one of {', '.join(POOLS)}")
        if not 1 <= self.concurrency <= 4:
            raise ValueError(f"concurrency {self.concurrency} out of range 1..4")
        if self.pool == "solo" and self.concurrency != 1:
            raise ValueError("the solo pool runs one task at a time: concurrency must be 1")
        if self.reject_on_worker_lost and not self.acks_late:
            raise ValueError("reject_on_worker_lost only acts with acks_late (Celery ignores it)")
        if not self.acks_on_failure and not self.acks_late:
            raise ValueError("acks_on_failure=False only acts with acks_late (Celery ignores it)")
        if self.dedup and not self.acks_late:
            raise ValueError("dedup only acts with acks_late (Celery ignores it)")
        if self.countdown < 0:
            raise ValueError(f"countdown {self.countdown} is negative")
        if self.gate not in (None, "accept", "accepted"):
            raise ValueError(f"unknown gate {self.gate!r}: choose accept or accepted")
        if self.gate is not None and self.pool != "prefork":
            raise ValueError("gates are inside the prefork pool: pool must be prefork")
        if self.consumer_timeout_ms is not None and self.broker != "amqp":
            raise ValueError("consumer_timeout_ms is a RabbitMQ setting: broker must be amqp")
        if self.results not in ("redis", "db"):
            raise ValueError(f"unknown result backend {self.results!r}: choose redis or db")

    @property
    def ack(self) -> str:
        if not self.acks_late:
            return "early"
        return "late+requeue" if self.reject_on_worker_lost else "late"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def retry(self) -> str:
        """``retry2max1`` (``auto`` appended for autoretry_for), or "" without retries."""
        if not self.retries:
            return ""
        return f"retry{self.retries}max{self.max_retries}" + ("auto" if self.autoretry else "")

    def label(self) -> str:
        tail = f"/{self.retry}" if self.retries else ""
        return f"{self.effect}/{self.broker}/{self.ack}/{self.pool}/c{self.concurrency}{tail}"


@dataclass(frozen=True)
class EagerConfig:
    """A scenario run with ``task_always_eager``: ``kind`` state (``target`` a store) or
    lock (``target`` a built-in lock)."""

    kind: str
    target: str

    def label(self) -> str:
        return f"eager/{self.target}"

    def as_dict(self) -> dict[str, object]:
        return {"eager": True, self.kind if self.kind == "lock" else "store": self.target}
