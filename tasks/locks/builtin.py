"""The built-in locks by name, and resolution of a lock spec (built-in or plug-in)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from model.libraries import LIBRARIES
from tasks.locks import MakeLock
from tasks.locks.cookbook import cookbook
from tasks.locks.redis_py import redis_py_lock
from tasks.plugins import Builtins, load_plugin

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

# The third-party library kinds (model/libraries.py), each its adapter in
# examples/thirdparty/, imported when first looked up: examples imports tasks, and the
# library itself is only needed where its rows run.
LIBRARY_LOCKS: Builtins[MakeLock] = Builtins({n: lib.adapter for n, lib in LIBRARIES.items()})


class _Known(Mapping[str, MakeLock]):
    """The built-ins, then the libraries: every lock kind a name resolves to."""

    def __getitem__(self, name: str) -> MakeLock:
        return BUILTIN_LOCKS[name] if name in BUILTIN_LOCKS else LIBRARY_LOCKS[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*BUILTIN_LOCKS, *LIBRARY_LOCKS])

    def __len__(self) -> int:
        return len(BUILTIN_LOCKS) + len(LIBRARY_LOCKS)


KNOWN_LOCKS = _Known()


def load_lock(spec: str) -> MakeLock:
    """The lock factory named by ``spec``: a built-in name or ``pkg.mod:attr``.

    Raises ValueError with a one-line message that says what to fix.
    """
    return load_plugin(
        spec,
        KNOWN_LOCKS,
        kind="lock",
        factory="make_lock",
        returns="lock(key, ttl)",
    )
