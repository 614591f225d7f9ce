"""Which configs a run covers.

``full`` is every built-in lock on every pool and concurrency the issue names; ``ci``
keeps every lock and property but fewer pool shapes so ``nox -s tests`` stays bounded;
a plug-in lock runs on the two shapes that expose the classic races (several
processes, several threads).
"""

from __future__ import annotations

from model.canvas_config import CanvasConfig
from model.config import (
    BUILTIN_LOCKS,
    DeliveryConfig,
    EagerConfig,
    LockConfig,
    Pool,
    PublishConfig,
    StateConfig,
)
from model.delivery_properties import BUILTIN_EFFECTS
from model.libraries import LIBRARIES

SHAPES_FULL: list[tuple[Pool, int]] = [
    *(("prefork", c) for c in (1, 2, 3, 4)),
    *(("threads", c) for c in (1, 2, 3, 4)),
    ("solo", 1),
]
SHAPES_PLUGIN: list[tuple[Pool, int]] = [("prefork", 2), ("threads", 2)]

MATRICES = ("full", "ci")


def builtin_configs(matrix: str) -> list[LockConfig]:
    if matrix not in MATRICES:
        raise ValueError(f"unknown matrix {matrix!r}: choose one of {', '.join(MATRICES)}")
    if matrix == "full":
        return [LockConfig(lock, pool, c) for lock in BUILTIN_LOCKS for pool, c in SHAPES_FULL]
    # ci: every lock where the races live (two prefork children), and the LocMemCache
    # lock also where it is safe from the per-process trap (threads share one
    # process), so the bounded run shows both sides of it. Concurrency 1 and solo,
    # safe for every lock, are left to the full matrix.
    configs = [LockConfig(lock, "prefork", 2) for lock in BUILTIN_LOCKS]
    return [*configs, LockConfig("cookbook-locmem", "threads", 2)]


# ci: the LocMemCache lock on threads/2 shows the safe side of the per-process trap,
# which mutual exclusion and the invoice count show; its lease and kill rows are the
# same as the other atomic locks' and are left to the full matrix.
_CI_SAFE_SIDE = ("mutual-exclusion", "exactly-one-invoice")


# ci: each library on two prefork children, the property that holds for every atomic
# acquire and the one its release decides (the lease running out under a paused
# holder); the rest (fencing, kills, threads, concurrency 1) is in the full matrix.
_CI_LIBRARY = ("mutual-exclusion", "lease-mutual-exclusion")


def library_cases(matrix: str, props: list[str]) -> list[tuple[str, LockConfig]]:
    """(property, config) pairs of the third-party libraries (model/libraries.py):
    ``full``, every property on every pool shape; ``ci``, ``_CI_LIBRARY`` on
    prefork/2."""
    if matrix == "full":
        return [
            (p, LockConfig(lib, pool, c)) for lib in LIBRARIES for pool, c in SHAPES_FULL
            for p in props
        ]  # fmt: skip
    return [
        (p, LockConfig(lib, "prefork", 2)) for lib in LIBRARIES for p in props
        if p in _CI_LIBRARY
    ]  # fmt: skip


def lock_cases(
    matrix: str, props: list[str], plugins: list[str] | None = None
) -> list[tuple[str, LockConfig]]:
    """(property, config) pairs of the lock properties: the built-ins, then the
    libraries; or only the plug-ins given."""
    if plugins:
        configs = [c for lock in plugins for c in plugin_configs(lock)]
        return [(p, c) for c in configs for p in props]
    builtin = [
        (p, c) for c in builtin_configs(matrix) for p in props
        if matrix == "full" or c.pool != "threads" or p in _CI_SAFE_SIDE
    ]  # fmt: skip
    return builtin + library_cases(matrix, props)


def plugin_configs(lock: str) -> list[LockConfig]:
    return [LockConfig(lock, pool, c) for pool, c in SHAPES_PLUGIN]


# Ack settings as (acks_late, reject_on_worker_lost).
ACKS = ((False, False), (True, False), (True, True))


def delivery_configs(matrix: str, effects: list[str] | None = None) -> list[DeliveryConfig]:
    """``full``: both brokers x every ack setting x prefork/2, threads/2, solo, each with
    every built-in effect, plus retries. A plug-in effect (``effects``) runs on
    prefork/2 and threads/2, both brokers, acks_late."""
    if effects:
        return [
            DeliveryConfig(b, pool, c, True, False, effect=e)
            for e in effects for b in ("redis", "amqp") for pool, c in SHAPES_PLUGIN
        ]  # fmt: skip
    shapes: list[tuple[Pool, int]] = [("prefork", 2), ("threads", 2), ("solo", 1)]
    plain = [
        DeliveryConfig(b, pool, c, late, requeue, effect=e)
        for e in BUILTIN_EFFECTS for b in ("redis", "amqp") for late, requeue in ACKS
        for pool, c in shapes
    ]  # fmt: skip
    retrying = [
        DeliveryConfig(b, pool, c, late, requeue, retries=2, max_retries=m, autoretry=auto)
        for b in ("redis", "amqp") for late, requeue in ACKS for pool, c in shapes
        for m, auto in ((1, False), (3, False), (3, True))
    ]  # fmt: skip
    return plain + retrying


def delivery_cases(
    matrix: str, effects: list[str] | None = None, props: list[str] | None = None
) -> list[tuple[str, DeliveryConfig]]:
    """(property, config) pairs. ``full`` and plug-in effects: every property that
    applies on every config (one-lineage needs retries, exactly-one-invoice an
    effect that can break). ``ci``: a bounded selection covering every ack setting on
    both brokers, the solo early-ack finding, each unsafe effect where it breaks and
    where it does not, and retries with and without a fault that allows two
    lineages."""
    from model.delivery_properties import PROPERTIES

    wanted = props or list(PROPERTIES)
    if matrix == "full" or effects:
        configs = delivery_configs(matrix, effects)
        return [
            (p, c) for c in configs for p in wanted
            if (p != "one-lineage" or c.retries)
            and (p != "exactly-one-invoice" or c.effect != "insert-on-conflict" or effects)
        ]  # fmt: skip
    acks = [
        DeliveryConfig(b, "prefork", 2, late, requeue)
        for b in ("redis", "amqp") for late, requeue in ACKS
    ]  # fmt: skip
    cases = [(p, c) for c in acks for p in ("at-least-once", "delivery-model")]
    solo = DeliveryConfig("redis", "solo", 1, False, False)
    cases += [("at-least-once", solo), ("delivery-model", solo)]
    # Redis with a visibility timeout while runs overlap: check-then-insert is caught
    # only there. (These searches replayed differently now and then until the vt move
    # stopped deleting a live restore scan's mutex: harness/brokers.py.)
    on_threads = [
        DeliveryConfig("amqp", "threads", 2, True, effect=e)
        for e in ("insert-always", "upsert", "check-then-insert")
    ] + [
        DeliveryConfig("redis", "threads", 2, True, effect=e)
        for e in ("check-then-insert", "upsert")
    ]  # fmt: skip
    cases += [("exactly-one-invoice", c) for c in on_threads]
    retry_redis = DeliveryConfig("redis", "threads", 2, True, False, retries=2, max_retries=1)
    cases.append(("one-lineage", retry_redis))
    retry_late = DeliveryConfig("amqp", "prefork", 2, True, False, retries=2, max_retries=1)
    # Early-ack retries (one-lineage holds) stay in the full matrix: a replay of theirs
    # was not deterministic once (docs/findings/harness.md, open).
    cases += [("one-lineage", retry_late), ("delivery-model", retry_late)]
    return [(p, c) for p, c in cases if p in wanted]


def state_cases(matrix: str) -> list[tuple[str, StateConfig]]:
    """(property, config) pairs for the module-state properties.

    ``full``: every property on every store and pool shape (and gevent/2), plus
    recycled children (max_tasks_per_child), worker_process_init on the module
    global, and kills on the module global and Redis. ``ci``: each property where the
    model says it breaks and where it holds, on the module global, LocMemCache and
    every shared store, the module global on gevent/2, and kills on prefork/1,
    threads/2 and Redis, and threads/2 split over two workers on two queues."""
    from model.config import STORES
    from model.state_properties import PROPERTIES

    if matrix == "full":
        # gevent/1 is left out: one greenlet holds the consumer's Redis prefetch window
        # full, so every task waits ~2 s to be fetched (the gevent pool's synloop polls
        # with drain_events(timeout=2.0)); gevent/2 shows both sides of the race.
        shapes: list[tuple[Pool, int]] = [*SHAPES_FULL, ("gevent", 2)]
        cases = [
            (p, StateConfig(pool, c, store=store))
            for store in STORES for pool, c in shapes for p in PROPERTIES
        ]  # fmt: skip
        cases += [
            (p, StateConfig("prefork", c, max_tasks_per_child=1, init_value=5))
            for c in (1, 2) for p in ("read-your-writes-across-tasks", "sender-sees-task-writes")
        ]  # fmt: skip
        # Kills: a replacement child or a restarted worker starts from the main
        # process's copy (the module global) or finds the shared store untouched.
        killable: list[tuple[Pool, int]] = [
            ("prefork", 1), ("prefork", 2), ("threads", 2), ("solo", 1),
        ]  # fmt: skip
        cases += [
            (p, StateConfig(pool, c, store=store, kills=True))
            for store in ("module", "redis") for pool, c in killable for p in PROPERTIES
        ]  # fmt: skip
        # Two workers on two queues: never one copy, whatever the pool; a shared
        # store is one copy for both.
        two: list[tuple[Pool, int]] = [("prefork", 1), ("prefork", 2), ("threads", 2), ("solo", 1)]
        cases += [
            (p, StateConfig(pool, c, store=store, queues=2))
            for store in ("module", "redis") for pool, c in two
            for p in ("read-your-writes-across-tasks", "sender-sees-task-writes")
        ]  # fmt: skip
        init7: list[tuple[Pool, int]] = [("solo", 1), ("gevent", 2)]
        cases += [
            ("read-your-writes-across-tasks", StateConfig(pool, c, init_value=7))
            for pool, c in init7
        ]
        return cases
    ryw, sender = "read-your-writes-across-tasks", "sender-sees-task-writes"
    unsync, locked = "no-lost-update-unsynchronized", "no-lost-update-locked"
    cases = [
        (ryw, StateConfig("prefork", 2)),
        (ryw, StateConfig("prefork", 1)),
        (ryw, StateConfig("prefork", 1, max_tasks_per_child=1, init_value=5)),
        (ryw, StateConfig("threads", 2)),
        (ryw, StateConfig("solo", 1, init_value=7)),
        (ryw, StateConfig("prefork", 2, store="locmem")),
        (sender, StateConfig("prefork", 2)),
        (sender, StateConfig("threads", 2)),
        (unsync, StateConfig("threads", 2)),
        (unsync, StateConfig("prefork", 2)),
        (locked, StateConfig("threads", 2)),
        # gevent: one process, greenlets share the globals as threads do, and no
        # worker_process_init (init7: a read of an unwritten value must still be 0).
        # Each gevent worker is a fresh interpreter (~2 s), so few rows.
        (ryw, StateConfig("gevent", 2, init_value=7)),
        (unsync, StateConfig("gevent", 2)),
        (locked, StateConfig("gevent", 2)),
    ]
    for store in ("redis", "memcached", "db-postgres"):
        cases += [
            (ryw, StateConfig("prefork", 2, store=store)),
            (sender, StateConfig("prefork", 2, store=store)),
            (unsync, StateConfig("threads", 2, store=store)),
            (locked, StateConfig("prefork", 2, store=store)),
        ]
    cases.append((locked, StateConfig("threads", 2, store="redis")))
    # Two workers on two queues: threads/2 shares one copy within a worker (its row
    # above holds), not across the two.
    cases.append((ryw, StateConfig("threads", 2, queues=2)))
    # Kills: one child (or one worker) holds every write until it dies.
    cases += [
        (ryw, StateConfig("prefork", 1, kills=True)),
        (ryw, StateConfig("threads", 2, kills=True)),
        (ryw, StateConfig("prefork", 2, store="redis", kills=True)),
    ]
    return cases


def eager_cases(matrix: str) -> list[tuple[str, EagerConfig]]:
    """Eager twins of the worker rows that break: the per-process stores for every
    state property, and the LocMemCache cookbook lock."""
    from model.config import PER_PROCESS_STORES
    from model.state_properties import PROPERTIES

    cases = [(p, EagerConfig("state", store)) for store in PER_PROCESS_STORES for p in PROPERTIES]
    return [*cases, ("mutual-exclusion", EagerConfig("lock", "cookbook-locmem"))]


def publish_cases(matrix: str) -> list[PublishConfig]:
    """Configs of ``task-finds-its-row``. ``ci``: each way of sending on prefork/2;
    ``full``: each on every pool shape."""
    from model.config import MODES

    shapes: list[tuple[Pool, int]] = [("prefork", 2)]
    if matrix == "full":
        shapes += [("prefork", 1), ("threads", 2), ("solo", 1)]
    return [PublishConfig(mode, pool, c) for pool, c in shapes for mode in MODES]


def canvas_cases(matrix: str) -> list[tuple[str, CanvasConfig]]:
    """(property, config) pairs of the canvas area, prefork/2, the Redis result
    backend. Chords: on the Redis broker, sorted-set and list joins, and on RabbitMQ.
    ``ci``: every chord property on early ack and acks_late + reject_on_worker_lost
    (each side of fires-once), body-once on acks_late alone, fires-once on RabbitMQ,
    body-once on the database backend (chord_unlock); a chain step running next to a
    failed predecessor. ``full``: every property of every shape on every ack setting
    on both brokers (chains plain and retrying; chords on each join)."""
    from model.canvas_properties import properties_of

    configs = [CanvasConfig("redis", "prefork", 2, late, requeue) for late, requeue in ACKS]
    lists = [
        CanvasConfig("redis", "prefork", 2, late, requeue, join="list") for late, requeue in ACKS
    ]
    on_amqp = [CanvasConfig("amqp", "prefork", 2, late, requeue) for late, requeue in ACKS]
    on_db = [
        CanvasConfig(broker, "prefork", 2, late, requeue, join="db")
        for broker in ("redis", "amqp") for late, requeue in ACKS
    ]  # fmt: skip
    chains = [
        CanvasConfig(broker, "prefork", 2, late, requeue, shape="chain", retry=retry)
        for broker in ("redis", "amqp") for retry in (False, True) for late, requeue in ACKS
    ]  # fmt: skip
    groups = [
        CanvasConfig(broker, "prefork", 2, late, requeue, shape="group")
        for broker in ("redis", "amqp") for late, requeue in ACKS
    ]  # fmt: skip
    if matrix == "full":
        return [
            *((p, c) for c in configs + lists + on_amqp + on_db for p in properties_of("chord")),
            *((p, c) for c in chains for p in properties_of("chain")),
            *((p, c) for c in groups for p in properties_of("group")),
        ]
    early, late, requeue = configs
    cases = [(p, c) for c in (early, requeue) for p in properties_of("chord")]
    # List mode: the done set keeps a rerun's part once there too (Celery 5.7).
    on_list = [("body-after-headers", lists[1]), ("body-args", lists[1])]
    failed_before = CanvasConfig("redis", "prefork", 2, True, shape="chain")
    on_chains = [("chain-order", failed_before)]
    rabbit = [("fires-once", on_amqp[1])]  # twice only once the claim's 10 s passed
    polled = [("body-once", on_db[1])]  # chord_unlock: a killed poll ends the polling
    return [
        *cases, ("body-once", late), ("fires-once", late), *on_list, *rabbit, *polled,
        *on_chains,
    ]  # fmt: skip
