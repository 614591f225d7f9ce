"""What every scenario runs on: one config per area, and the built-in locks the model knows.

``LockConfig``, ``DeliveryConfig``, ``StateConfig`` (module-level state) and
``PublishConfig`` (publishing inside a transaction). Their ``label()`` and ``as_dict()``
are part of the scenario lines and the findings report: they must not change.

A lock is named either by a built-in name (``cookbook-redis``), a third-party library's
kind (``celery-once``, model/libraries.py) or a plug-in path (``pkg.mod:make_lock``).
The model replays built-in locks step by step and predicts a library's verdicts from
its source; for a plug-in it checks the invariants alone. A library row's label
carries the pinned version (``celery-once==3.0.1/prefork/c2``) and its ``as_dict`` the
``library`` and ``version``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

from model.libraries import LIBRARIES, Library, library_of

Pool = Literal["prefork", "threads", "solo", "gevent"]
POOLS: tuple[Pool, ...] = ("prefork", "threads", "solo", "gevent")
# The pools the lock, delivery and publishing suites run; only the module-state suite
# starts gevent workers (a monkey-patched interpreter per worker).
PLAIN_POOLS: tuple[Pool, ...] = ("prefork", "threads", "solo")


def check_pool(pool: str, allowed: tuple[Pool, ...]) -> None:
    if pool not in allowed:
        raise ValueError(f"unknown pool {pool!r}: choose one of {', '.join(allowed)}")


def concurrency_error(pool: str, concurrency: int) -> str | None:
    """Why ``concurrency`` does not fit ``pool`` (one worker, 1..4 slots; solo has one),
    or None if it does."""
    if not 1 <= concurrency <= 4:
        return f"concurrency {concurrency} out of range 1..4"
    if pool == "solo" and concurrency != 1:
        return "the solo pool runs one task at a time: concurrency must be 1"
    return None


def check_concurrency(pool: str, concurrency: int) -> None:
    if (error := concurrency_error(pool, concurrency)) is not None:
        raise ValueError(error)


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
        check_pool(self.pool, PLAIN_POOLS)
        check_concurrency(self.pool, self.concurrency)
        if (
            not is_plugin(self.lock)
            and self.lock not in BUILTIN_LOCKS
            and self.lock not in LIBRARIES
        ):
            known = ", ".join(sorted([*BUILTIN_LOCKS, *LIBRARIES]))
            raise ValueError(
                f"unknown lock {self.lock!r}: use a built-in ({known}) "
                "or a plug-in path 'pkg.mod:make_lock'"
            )

    @property
    def semantics(self) -> LockSemantics | None:
        return BUILTIN_LOCKS.get(self.lock)

    @property
    def library(self) -> Library | None:
        """The third-party library this lock kind runs (model/libraries.py), if any;
        its adapter path given as a plug-in names it too."""
        return library_of(self.lock)

    @property
    def backend(self) -> str:
        sem = self.semantics
        if sem:
            return sem.backend
        lib = LIBRARIES.get(self.lock)
        return lib.backend if lib else "plugin"

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["backend"] = self.backend
        if lib := self.library:
            d["library"], d["version"] = lib.dist, lib.version
        return d

    def label(self) -> str:
        # A library row names the pinned version: another version is another row.
        lock = f"{self.lock}=={lib.version}" if (lib := LIBRARIES.get(self.lock)) else self.lock
        return f"{lock}/{self.pool}/c{self.concurrency}"


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
    # Hold t1's job once at a gate inside the prefork pool (tasks/patches/gates.py):
    # "accept" (in the child, before it tells the parent) or "accepted" (in the main
    # process, before it acks). Fixed semantics claims only.
    gate: str | None = None
    results: str = "redis"  # the result backend: redis | db (SQLAlchemy, PostgreSQL)
    # RabbitMQ's consumer_timeout, on a private node (node-wide in 3.10). Fixed claims.
    consumer_timeout_ms: int | None = None
    # AMQP broker_heartbeat in seconds (Celery's default when None). Fixed claims.
    heartbeat: float | None = None

    def __post_init__(self) -> None:
        if self.broker not in BROKERS:
            raise ValueError(f"unknown broker {self.broker!r}: choose one of {', '.join(BROKERS)}")
        check_pool(self.pool, PLAIN_POOLS)
        check_concurrency(self.pool, self.concurrency)
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
        if self.heartbeat is not None and (self.broker != "amqp" or self.heartbeat <= 0):
            raise ValueError("heartbeat is an AMQP setting: broker must be amqp, seconds > 0")
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


# --- module-level state -------------------------------------------------------------------

# Where ``value`` lives. Per process: a module global, or Django's LocMemCache (a dict in
# the process: django/core/cache/backends/locmem.py ``_caches``). Shared: one server
# every process talks to (Django's RedisCache, PyMemcacheCache, DatabaseCache).
PER_PROCESS_STORES = ("module", "locmem")
SHARED_STORES = ("redis", "memcached", "db-postgres")
STORES = (*PER_PROCESS_STORES, *SHARED_STORES)
# Stores whose set is a read then a write, so two racing sets can drop one silently:
# Django's DatabaseCache ``_base_set`` (django/core/cache/backends/db.py, 5.2) runs
# SELECT, then UPDATE or INSERT, in one transaction, and returns False on any
# DatabaseError. Two first sets of a key both SELECT nothing; the second INSERT hits
# the primary key and is dropped, though ``set()`` returned normally. Found by the
# suite (read-your-writes on db-postgres/prefork/c2), then read in the source.
RACY_SET_STORES = ("db-postgres",)

IMPORT_VALUE = 0  # ``value = 0`` at module level: what every process starts with


@dataclass(frozen=True)
class StateConfig:
    """The worker(s) serving a module-state scenario: one, or with ``queues=2`` two
    workers of this shape, each consuming its own queue (a task is sent to one of
    them), to show that two workers never share module state whatever the pool.

    ``init_value``: a ``worker_process_init`` handler sets ``value`` to this in every new
    pool child (prefork) or once in the main process (solo); None means no handler does.
    ``parent_value``: the main worker process's copy when it forks its children (the
    worker's start-up code may have written it after the import).
    ``max_tasks_per_child`` only acts on prefork: the other pools have no children.
    ``kills``: the scenarios may SIGKILL a task's process (a prefork child, which the pool
    replaces; the whole worker on the other pools, which is restarted).
    """

    pool: Pool
    concurrency: int
    max_tasks_per_child: int | None = None
    init_value: int | None = None
    parent_value: int = IMPORT_VALUE
    store: str = "module"
    kills: bool = False
    queues: int = 1

    def __post_init__(self) -> None:
        if self.queues not in (1, 2):
            raise ValueError(f"queues {self.queues}: one worker, or two on two queues")
        if self.queues == 2 and (self.kills or self.max_tasks_per_child is not None):
            raise ValueError(
                "two workers on two queues run without kills and max_tasks_per_child "
                "(a replaced process is the one-worker rows' story)"
            )
        if self.store not in STORES:
            raise ValueError(f"unknown store {self.store!r}: choose one of {', '.join(STORES)}")
        check_pool(self.pool, POOLS)
        check_concurrency(self.pool, self.concurrency)
        if self.shared and (self.init_value is not None or self.parent_value != IMPORT_VALUE):
            raise ValueError(
                "init_value and parent_value set a module global; a shared store "
                f"({self.store}) starts empty in every process"
            )
        if self.max_tasks_per_child is not None and self.max_tasks_per_child < 1:
            # billiard/pool.py Pool.__init__: "maxtasksperchild must be a positive int or None"
            raise ValueError(
                f"max_tasks_per_child {self.max_tasks_per_child} must be a positive int or None"
            )

    @property
    def shared(self) -> bool:
        """One copy for every process (a cache server), not one per process."""
        return self.store in SHARED_STORES

    @property
    def recycles(self) -> bool:
        """Whether children are replaced after a fixed number of tasks."""
        return self.pool == "prefork" and self.max_tasks_per_child is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "store": self.store, "pool": self.pool, "concurrency": self.concurrency,
            "max_tasks_per_child": self.max_tasks_per_child, "init_value": self.init_value,
            "kills": self.kills,
        } | ({"queues": self.queues} if self.queues != 1 else {})  # fmt: skip

    def label(self) -> str:
        """``prefork/c2/mtpc1``; a store other than the module global leads:
        ``redis/threads/c2``."""
        store = "" if self.store == "module" else f"{self.store}/"
        extra = ""
        if self.max_tasks_per_child is not None:
            extra += f"/mtpc{self.max_tasks_per_child}"
        if self.init_value is not None:
            extra += f"/init{self.init_value}"
        if self.parent_value != IMPORT_VALUE:
            extra += f"/parent{self.parent_value}"
        if self.kills:
            extra += "/kill"
        if self.queues != 1:
            extra += f"/q{self.queues}"
        return f"{store}{self.pool}/c{self.concurrency}{extra}"


def parse_state_label(label: str) -> StateConfig:
    """The config ``StateConfig.label()`` printed:
    ``[store/]pool/cN[/mtpcK][/initV][/kill][/q2]``."""
    parts = label.split("/")
    store = parts.pop(0) if parts and parts[0] in STORES else "module"
    if len(parts) < 2 or parts[0] not in POOLS or not re.fullmatch(r"c\d+", parts[1]):
        raise ValueError(
            f"a state config reads '[store/]pool/cN[/mtpcK][/initV][/kill]', got {label!r}"
        )
    pool: Pool = parts[0]
    kw: dict[str, int] = {}
    kills = parts[-1] == "kill" and len(parts) > 2
    for extra in parts[2 : len(parts) - kills]:
        m = re.fullmatch(r"(mtpc|init|q)(\d+)", extra)
        if not m:
            raise ValueError(f"unknown part {extra!r} of state config {label!r}")
        kw[{"mtpc": "max_tasks_per_child", "init": "init_value", "q": "queues"}[m[1]]] = int(m[2])
    return StateConfig(pool, int(parts[1][1:]), store=store, kills=kills, **kw)


# --- publishing inside a transaction ---------------------------------------------------------

# How the sender publishes the task for the row it wrote (model/publishing.py).
Mode = Literal["in-transaction", "on-commit", "delay-on-commit"]
MODES: tuple[Mode, ...] = ("in-transaction", "on-commit", "delay-on-commit")


@dataclass(frozen=True)
class PublishConfig:
    mode: Mode
    pool: Pool
    concurrency: int

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown publish mode {self.mode!r}: choose one of {MODES}")
        if self.pool not in PLAIN_POOLS:  # this message lists the tuple itself
            raise ValueError(f"unknown pool {self.pool!r}: choose one of {PLAIN_POOLS}")
        if concurrency_error(self.pool, self.concurrency) is not None:
            raise ValueError(f"concurrency {self.concurrency} does not fit pool {self.pool}")

    def label(self) -> str:
        return f"{self.mode}/{self.pool}/c{self.concurrency}"

    def as_dict(self) -> dict[str, object]:
        return {"publish": self.mode, "pool": self.pool, "concurrency": self.concurrency}


def parse_publish_label(label: str) -> PublishConfig:
    m = re.fullmatch(r"([a-z-]+)/([a-z]+)/c(\d+)", label)
    if not m or m[1] not in MODES or m[2] not in PLAIN_POOLS:
        raise ValueError(f"a publish config reads '<{'|'.join(MODES)}>/pool/cN', got {label!r}")
    return PublishConfig(m[1], m[2], int(m[3]))


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
