"""celery-once 3.0.1's Redis backend (celery_once/backends/redis.py ``Redis``) as a lock.

``QueueOnce`` (celery_once/tasks.py) calls ``backend.raise_or_lock(key, timeout)``
when a task is sent and ``backend.clear_lock(key)`` when it returns
(``QueueOnce.after_return``; before it runs with ``unlock_before_run``). This adapter
calls the same two methods around the critical section:

- ``raise_or_lock`` is redis-py's ``Lock(redis, key, timeout=...).acquire()``:
  ``SET key token NX PX ttl`` (redis/lock.py ``Lock.do_acquire``); refused, it raises
  ``AlreadyQueued`` after a ``PTTL``. The ``Lock`` object, and with it the token, is
  dropped.
- ``clear_lock`` is ``self.redis.delete(key)``: a DEL with no ownership check.

The client: the backend builds its own ``StrictRedis`` from ``settings["url"]``
(``get_redis``, cached in the module global ``celery_once.backends.redis.redis``). We
give it the run's URL and instrument that client in place
(``examples.thirdparty.instrument_redis``), so its SET, PTTL and DEL are scheduling
points; celery-once sends nothing from another thread.

Conversions: none. The lease is passed as the float it is (3600.0): redis-py's Lock
takes a float timeout (``int(self.timeout * 1000)`` milliseconds, redis/lock.py
``Lock.do_acquire``). ``blocking`` stays the backend's default, False.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from celery_once.backends.redis import Redis as OnceRedis
from celery_once.tasks import AlreadyQueued

from examples.thirdparty import instrument_redis


def make_lock(resources: Any) -> Callable[[str, float], AbstractContextManager[bool]]:
    backend = OnceRedis({"url": resources.redis_url})
    instrument_redis(backend.redis)

    @contextmanager
    def lock(key: str, ttl: float) -> Iterator[bool]:
        try:
            backend.raise_or_lock(key, timeout=ttl)
        except AlreadyQueued:
            acquired = False
        else:
            acquired = True
        try:
            yield acquired
        finally:
            if acquired:
                backend.clear_lock(key)

    return lock
