"""Celery's task-cookbook lock over a Django cache.

The recipe (celery docs/tutorials/task-cookbook.rst, "Ensuring a task is only executed
one at a time")::

    @contextmanager
    def memcache_lock(lock_id, oid):
        timeout_at = time.monotonic() + LOCK_EXPIRE - 3
        # cache.add fails if the key already exists
        status = cache.add(lock_id, oid, LOCK_EXPIRE)
        try:
            yield status
        finally:
            # memcache delete is very slow, but we have to use it to take
            # advantage of using add() for atomic locking
            if time.monotonic() < timeout_at and status:
                # don't release the lock if we exceeded the timeout
                # to lessen the chance of releasing an expired lock
                # owned by someone else
                # also don't release the lock if we didn't acquire it
                cache.delete(lock_id)

It is reproduced step for step; what the back end makes of each step is the point of
the tests (model/config.py ``BUILTIN_LOCKS``): ``add`` is atomic on Redis, memcached
and LocMem (per process only), SELECT-then-write on DatabaseCache; the release is an
unchecked ``delete`` guarded only by the holder's own clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tasks.locks import LockFn, Resources


def cookbook(alias: str) -> Callable[[Resources], LockFn]:
    """A lock factory running the cookbook recipe on the Django cache ``alias``."""

    def make_lock(resources: Resources) -> LockFn:
        @contextmanager
        def lock(key: str, ttl: float) -> Iterator[bool]:
            # Per call, not at make_lock time: Django caches are per thread
            # (django/core/cache/__init__.py ``CacheHandler`` on a thread-local
            # ``BaseConnectionHandler``), and the threads pool runs tasks on several.
            cache: Any = resources.cache(alias)
            # The cookbook stores ``self.app.oid``, an id of the app instance; nothing
            # ever reads the value back (no ownership check on release), so any id will
            # do.
            oid = uuid.uuid4().hex
            # Deviation: the cookbook keeps 3 s of margin (LOCK_EXPIRE - 3) against a
            # 10-minute expiry. Our TTLs are a few seconds and expiry is a controller
            # move, so ``ttl`` is taken as the whole lease: the holder releases iff its
            # clock says the lease has not run out.
            timeout_at = resources.clock() + ttl
            # Fractional TTLs are not portable: RedisCache and PyMemcacheCache truncate
            # with int() (django/core/cache/backends/redis.py ``get_backend_timeout``,
            # memcached.py ``get_backend_timeout``), so 0.5 s becomes "expire at once"
            # and add() succeeds without holding anything. Scenarios use whole seconds.
            status = bool(cache.add(key, oid, ttl))
            try:
                yield status
            finally:
                if resources.clock() < timeout_at and status:
                    cache.delete(key)

        return lock

    return make_lock
