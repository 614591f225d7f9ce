"""Locks under test: the plug-in contract and the built-in implementations.

A lock is made once per worker process from the process's resources and then called
per task::

    def make_lock(resources):                  # MakeLock
        def lock(key: str, ttl: float):        # LockFn
            ...                                # a context manager yielding True iff
        return lock                            # the lock was acquired

``ttl`` is the lease in seconds: the lock must expire by itself after ``ttl`` if its
holder dies. Time must be read from ``resources.clock()`` (virtual time: expiry moves
in the controller make it jump), never from ``time.monotonic()``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

LockFn = Callable[[str, float], AbstractContextManager[bool]]
MakeLock = Callable[[Any], LockFn]


class Resources(Protocol):
    """What a lock factory may use (implemented by ``tasks.resources``)."""

    @property
    def redis(self) -> Any:
        """A redis-py client on the run's cache Redis (``InstrumentedRedis``)."""

    @property
    def redis_url(self) -> str:
        """The cache Redis's URL, for a library that builds its own client."""

    @property
    def memcache(self) -> Any:
        """A pymemcache client on the run's memcached (instrumented, thread-safe)."""

    def cache(self, alias: str) -> Any:
        """The Django cache ``alias`` (``django.core.cache.caches[alias]``)."""

    def clock(self) -> float:
        """The scenario's monotonic clock (``tasks.points.clock``)."""
