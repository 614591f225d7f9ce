"""Django cache back ends whose operations are scheduling points.

Configured by ``tasks.django_setup`` as the ``locmem``, ``memcached`` and ``redis``
aliases. The DatabaseCache aliases use Django's stock class: their points come from
the SQL wrapper (``tasks.instrument.sql``).
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache as DjangoLocMemCache
from django.core.cache.backends.memcached import PyMemcacheCache as DjangoPyMemcacheCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

from tasks.instrument import name
from tasks.instrument.memcache import DjangoInstrumentedHashClient
from tasks.instrument.redis import DjangoInstrumentedRedis
from tasks.points import point, wall


class LocMemCache(DjangoLocMemCache):
    """Django's LocMemCache with a point before each operation and virtual time.

    Points come before the operation and so before ``self._lock`` is taken
    (django/core/cache/backends/locmem.py takes it inside each method): an execution
    parked at a point never holds the per-process lock other threads need.

    Expiry is decided against ``tasks.points.wall()`` instead of ``time.time()``
    (locmem.py ``_has_expired`` and base.py ``BaseCache.get_backend_timeout`` both read
    ``time.time()``), so an expiry move in the controller, which raises the virtual
    clock in the reply to every point, expires LocMem entries in every process.
    Compound operations of ``BaseCache`` (get_many, set_many, get_or_set, decr,
    incr_version, ...) are built from the methods below, so they park at each step,
    which is faithful: they are not atomic in LocMemCache either.
    """

    def _point(self, op: str, key: Any = None) -> None:
        point(name("locmem", op, key))

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        self._point("add", key)
        return bool(super().add(key, value, timeout, version))

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        self._point("get", key)
        return super().get(key, default, version)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        self._point("set", key)
        super().set(key, value, timeout, version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        self._point("touch", key)
        return bool(super().touch(key, timeout, version))

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        self._point("incr", key)
        return super().incr(key, delta, version)

    def has_key(self, key: Any, version: Any = None) -> bool:
        self._point("has_key", key)
        return bool(super().has_key(key, version))

    def delete(self, key: Any, version: Any = None) -> bool:
        self._point("delete", key)
        return bool(super().delete(key, version))

    def clear(self) -> None:
        self._point("clear")
        super().clear()

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        # Same as django/core/cache/backends/base.py BaseCache.get_backend_timeout,
        # on the virtual wall clock.
        if timeout == DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        elif timeout == 0:
            timeout = -1  # Django ticket 21147: 0 means "expire now"
        return None if timeout is None else wall() + timeout

    def _has_expired(self, key: str) -> bool:
        exp = self._expire_info.get(key, -1)
        return exp is not None and exp <= wall()


class _RedisCacheClient(RedisCacheClient):
    """Django's RedisCacheClient building ``DjangoInstrumentedRedis`` clients.

    ``RedisCacheClient.__init__`` sets ``self._client = self._lib.Redis`` and
    ``get_client`` returns ``self._client(connection_pool=pool)``
    (django/core/cache/backends/redis.py), so replacing the class is enough.
    """

    def __init__(self, servers: Any, **options: Any) -> None:
        super().__init__(servers, **options)
        self._client = DjangoInstrumentedRedis


class RedisCache(DjangoRedisCache):
    """Django's RedisCache over ``InstrumentedRedis``: ``add`` is one point,
    ``redis SET <key>`` (``SET NX EX``, redis.py ``RedisCacheClient.add``)."""

    def __init__(self, server: Any, params: Any) -> None:
        super().__init__(server, params)
        self._class = _RedisCacheClient


class PyMemcacheCache(DjangoPyMemcacheCache):
    """Django's PyMemcacheCache over instrumented pymemcache clients.

    Django instantiates ``self._class`` (set to ``self._lib.HashClient`` in
    django/core/cache/backends/memcached.py ``PyMemcacheCache.__init__``) with
    ``default_noreply=False`` and ``pickle_serde``; we keep those options and swap the
    class.
    """

    def __init__(self, server: Any, params: Any) -> None:
        super().__init__(server, params)
        self._class = DjangoInstrumentedHashClient
