"""What a plug-in lock or effect is given: clients on the run's own servers.

Every client is instrumented, so each command it issues is a scheduling point.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tasks import points

if TYPE_CHECKING:
    from tasks.instrument.dbapi import InstrumentedConnection


class Resources:
    """``make_lock(resources)`` and ``make_effect(resources)`` receive one of these per
    worker process."""

    def __init__(self) -> None:
        self._db_threads = threading.local()

    @cached_property
    def redis(self) -> Any:
        """A redis-py client on the run's cache Redis."""
        from tasks.instrument.redis import make_redis

        return make_redis(_require("SUITE_CACHE_REDIS_URL", "the cache Redis"))

    @property
    def redis_url(self) -> str:
        """The cache Redis's URL, for a library that builds its own client from one
        (its client is not instrumented until wrapped: see examples/thirdparty/)."""
        return _require("SUITE_CACHE_REDIS_URL", "the cache Redis")

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

    def db(self) -> InstrumentedConnection:
        """A DB-API connection (psycopg 3) to the run's PostgreSQL (``SUITE_PG_DSN``).

        Instrumented: every ``execute`` / ``executemany``, ``commit()`` and
        ``rollback()`` is a scheduling point (``tasks.instrument.dbapi``). One
        connection per thread, made on first use and cached; call ``db()`` inside the
        effect, not in ``make_effect``, whose thread may not be the one running tasks.
        Autocommit is off (the DB-API default) until the caller sets it; the setting
        sticks to the thread's connection. A closed or broken connection is replaced
        by a new one. Raises RuntimeError if ``SUITE_PG_DSN`` is not set.
        """
        from tasks.instrument.dbapi import connect

        local = self._db_threads
        conn: InstrumentedConnection | None = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid() or conn.closed:
            # None yet; inherited through fork (the parent's session: never close it
            # from here); or closed (``with conn:``, a lost server): a new one.
            dsn = _require("SUITE_PG_DSN", "PostgreSQL")
            conn = connect(dsn, connect_timeout=10, application_name="suite-effect")
            local.conn, local.pid = conn, os.getpid()
        return conn

    def end_db_transaction(self) -> bool:
        """For the task around an effect, after its execution: roll back, without a
        point, a transaction this thread's connection still has open.

        An effect stopped between a statement and its commit (an exception it did not
        roll back, a stale execution) would otherwise keep its row locks and make the
        next execution on this thread fail to set ``autocommit``. A broken connection
        is dropped (the next ``db()`` opens another). True if there was something to
        end.
        """
        import psycopg
        from psycopg.pq import TransactionStatus

        local = self._db_threads
        conn: InstrumentedConnection | None = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid() or conn.closed:
            return False
        if conn.raw.info.transaction_status == TransactionStatus.IDLE:
            return False
        try:
            conn.raw.rollback()
        except psycopg.Error:
            conn.raw.close()
        return True

    @staticmethod
    def clock() -> float:
        """Monotonic seconds as the scenario sees them (expiry moves make time pass)."""
        return points.clock()


def _require(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: {what} is not part of this run")
    return value
