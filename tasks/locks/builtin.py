"""The built-in locks by name, and resolution of a lock spec (built-in or plug-in)."""

from __future__ import annotations

from tasks.locks import MakeLock
from tasks.locks.cookbook import cookbook
from tasks.locks.redis_py import redis_py_lock
from tasks.plugins import load_plugin

# Exactly the names of model/config.py BUILTIN_LOCKS (tests/cover/test_locks_load.py
# checks); the model predicts outcomes for these from their LockSemantics.
BUILTIN_LOCKS: dict[str, MakeLock] = {
    "cookbook-locmem": cookbook("locmem"),
    "cookbook-db-sqlite": cookbook("db-sqlite"),
    "cookbook-db-postgres": cookbook("db-postgres"),
    "cookbook-memcached": cookbook("memcached"),
    "cookbook-redis": cookbook("redis"),
    "redis-py-lock": redis_py_lock,
}


def load_lock(spec: str) -> MakeLock:
    """The lock factory named by ``spec``: a built-in name or ``pkg.mod:attr``.

    Raises ValueError with a one-line message that says what to fix.
    """
    return load_plugin(
        spec, BUILTIN_LOCKS, kind="lock", factory="make_lock", returns="lock(key, ttl)"
    )
