"""The built-in locks by name, and resolution of a lock spec (built-in or plug-in)."""

from __future__ import annotations

import importlib
from typing import Any

from tasks.locks import MakeLock
from tasks.locks.cookbook import cookbook
from tasks.locks.redis_py import redis_py_lock

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
    if spec in BUILTIN_LOCKS:
        return BUILTIN_LOCKS[spec]
    known = ", ".join(sorted(BUILTIN_LOCKS))
    module_name, colon, attr_path = spec.partition(":")
    if not colon:
        raise ValueError(
            f"unknown lock {spec!r}: use a built-in ({known}) or a plug-in path 'pkg.mod:make_lock'"
        )
    if not module_name or not attr_path:
        raise ValueError(f"malformed plug-in lock {spec!r}: write it as 'pkg.mod:make_lock'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            top = module_name.split(".")[0]
            raise ValueError(
                f"plug-in lock {spec!r}: module {module_name!r} is not importable; check "
                f"the spelling and put the directory containing {top!r} on PYTHONPATH "
                "(the suite and its workers both import it)"
            ) from exc
        raise ValueError(
            f"plug-in lock {spec!r}: importing {module_name!r} failed because it needs "
            f"{missing!r}, which is not installed"
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"plug-in lock {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(
                f"plug-in lock {spec!r}: {module_name!r} has no attribute {attr_path!r}; "
                "define 'def make_lock(resources)' there or fix the name after the colon"
            ) from None
    if not callable(target):
        raise ValueError(
            f"plug-in lock {spec!r}: {attr_path!r} is a {type(target).__name__}, not "
            "callable; point to a function make_lock(resources) returning lock(key, ttl)"
        )
    factory: MakeLock = target
    return factory
