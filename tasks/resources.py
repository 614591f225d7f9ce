"""What a plug-in lock or effect is given: clients on the run's own servers.

Every client is instrumented, so each command it issues is a scheduling point.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from tasks import points


class Resources:
    """``make_lock(resources)`` receives one of these per worker process."""

    @cached_property
    def redis(self) -> Any:
        """A redis-py client on the run's cache Redis."""
        from tasks.instrument.redis import make_redis

        return make_redis(_require("SUITE_CACHE_REDIS_URL", "the cache Redis"))

    @cached_property
    def memcache(self) -> Any:
        """A pymemcache client on the run's memcached."""
        from tasks.instrument.memcache import make_memcache

        return make_memcache(_require("SUITE_MEMCACHED", "memcached"))

    def cache(self, alias: str) -> Any:
        """A Django cache: ``locmem``, ``db`` (SQLite), ``db-postgres``, ``memcached``,
        ``redis``."""
        from django.conf import settings
        from django.core.cache import caches

        if alias not in settings.CACHES or alias == "default":
            known = ", ".join(a for a in settings.CACHES if a != "default")
            raise ValueError(f"unknown cache alias {alias!r}: choose one of {known}")
        return caches[alias]

    @staticmethod
    def clock() -> float:
        """Monotonic seconds as the scenario sees them (expiry moves make time pass)."""
        return points.clock()


def _require(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: {what} is not part of this run")
    return value
