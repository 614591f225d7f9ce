"""python-redis-lock 4.0.1 (``redis_lock.Lock``) as a lock, non-blocking.

Acquire: a ``GET`` of the key (``Lock._held``: AlreadyAcquired if this object holds it),
then ``SET lock:<name> id NX EX expire`` (redis_lock/__init__.py ``Lock.acquire``).
Release: ``UNLOCK_SCRIPT``, a Lua compare-and-delete that also signals waiters, and
``NotAcquired`` when the key no longer holds our id (``Lock.release``). That error is
not caught: a lost lease is what the task must record.

The client: the library takes one, so it gets the run's instrumented
``resources.redis``; its scripts are called with ``client=self._client``, so they go
through our client too (``Lock.release``, ``Script.__call__``).

auto_renewal stays False (the default). With it on, ``Lock._start_lock_renewer``
starts a daemon thread that calls ``extend`` every ``expire * 2 / 3`` seconds of wall
time: 2400 s for our 3600 s lease, which no scenario lasts, so it would never run, and
its EXTEND would not be a scheduling point anyway (points belong to the task's
thread). The rows therefore say nothing about auto-renewal.

Conversions: none by us. The lease is passed as the float 3600.0; the library itself
truncates it with ``int(expire)`` (``Lock.__init__``), exact for 3600.0. A lease under
one second would become 0, which ``if expire:`` does not test again: ``SET ... EX 0``,
which Redis refuses (not exercised: the suite's lease is an hour).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import redis_lock


def make_lock(resources: Any) -> Callable[[str, float], AbstractContextManager[bool]]:
    client = resources.redis

    @contextmanager
    def lock(key: str, ttl: float) -> Iterator[bool]:
        lk = redis_lock.Lock(client, key, expire=ttl, auto_renewal=False)
        acquired = bool(lk.acquire(blocking=False))
        try:
            yield acquired
        finally:
            if acquired:
                lk.release()  # NotAcquired propagates: the caller records it

    return lock
