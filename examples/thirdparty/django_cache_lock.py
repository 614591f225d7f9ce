"""django-cache-lock 0.2.5 (module ``django_lock``) on Django's Redis and memcached caches.

Two lock kinds: ``make_redis_lock`` (``django_lock.Lock`` on the ``redis`` alias,
Django's own ``RedisCache``) and ``make_memcached_lock`` (``django_lock.MemcachedLock``
on the ``memcached`` alias, Django's ``PyMemcacheCache``). Both are the library's
public classes, the ones its own ``lock()`` helper would pick for these caches
(django_lock.py ``get_lock_cls``: ``RedisLock`` only for django-redis and
django-redis-cache, ``MemcachedLock`` for ``BaseMemcachedCache``, ``Lock`` otherwise).

We construct the classes directly because the helper fails on Django 3.2 and later
for any cache but the default: ``_backend_cls`` takes the ``ConnectionProxy`` branch
(Django 3.2 replaced ``DefaultCacheProxy``; django/core/cache/__init__.py 5.2:
``cache = ConnectionProxy(caches, DEFAULT_CACHE_ALIAS)``) and reads
``client._alias``, which a cache backend does not have: ``AttributeError: 'RedisCache'
object has no attribute '_alias'`` (docs/findings/libraries/django-cache-lock.md).

Acquire: ``cache.add(key, token, timeout)`` (``Lock._acquire``). Release: ``get``,
compare in Python, ``delete`` (``Lock._release_owned``); a lost lease only warns
(``LockWarning``). The caches are the run's instrumented ones
(``tasks.instrument.caches``), so each add, get and delete is a scheduling point.

Conversions: none by us. ``Lock`` passes the float 3600.0 to ``cache.add``;
``MemcachedLock.__init__`` itself turns a non-int timeout into ``int(timeout)`` with a
``LockWarning`` (exact for 3600.0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from django_lock import Lock, MemcachedLock

LockFn = Callable[[str, float], AbstractContextManager[bool]]


def _make(resources: Any, alias: str, cls: type[Lock]) -> LockFn:
    @contextmanager
    def lock(key: str, ttl: float) -> Iterator[bool]:
        # The cache per call, not at make time: Django caches are per thread
        # (django/core/cache/__init__.py ``CacheHandler``), and the threads pool runs
        # tasks on several.
        cache = resources.cache(alias)
        lk = cls(key, cache, timeout=ttl, blocking=False)
        acquired = bool(lk.acquire(blocking=False))
        try:
            yield acquired
        finally:
            if acquired:
                lk.release()

    return lock


def make_redis_lock(resources: Any) -> LockFn:
    return _make(resources, "redis", Lock)


def make_memcached_lock(resources: Any) -> LockFn:
    return _make(resources, "memcached", MemcachedLock)
