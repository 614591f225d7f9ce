"""The value whose visibility the module-state properties check, and where it lives.

``values`` is the module global under test: a plain dict in this module, so every
process that imports it (the sending application, a worker's main process, each
prefork child) has its own copy. Each example uses its own key, so a reused worker
starts every example from a value nothing wrote yet, as a fresh module would.

The other stores are Django caches (tasks/django_setup.py): ``locmem`` is a dict in
the process too; ``redis``, ``memcached`` and ``db-postgres`` are shared servers.
Every cache command is a scheduling point (tasks/instrument/caches.py).
"""

from __future__ import annotations

import threading
from typing import Any

from tasks import points

values: dict[str, int] = {}
# The default of a key nothing wrote in this process: 0 as imported, or what a
# worker_process_init handler set (``Settings.state_init``, tasks/app.py installs it).
default = 0
# One lock per process, as a module global: what a user reaches for to make
# ``value += 1`` safe.
lock = threading.Lock()


def init(value: int | None) -> None:
    """What the suite's ``worker_process_init`` handler does: set the default if asked to."""
    global default
    if value is not None:
        default = value


def _cache(store: str) -> Any:
    from django.core.cache import caches

    return caches[store]


def get(store: str, key: str) -> int:
    if store == "module":
        return values.get(key, default)
    return int(_cache(store).get(key, 0))


def put(store: str, key: str, value: int) -> None:
    if store == "module":
        values[key] = value
    else:
        _cache(store).set(key, value, timeout=None)


def run(spec: dict[str, Any]) -> None:
    """One task's operation, inside its controlled execution.

    ``write``: set the value to ``spec["value"]``. ``read``: read it. ``incr``: read,
    park at ``rmw``, write back read + 1. ``incr-locked``: the same under ``lock``,
    taken without blocking: while another task of this process holds it, the task
    parks at ``wait`` and tries again when let go (a blocked thread, made visible to
    the scheduler instead of hanging it). ``spec["linger"]``: park at ``done`` after
    the operation (the kill scenarios' place to kill a process that holds a write)."""
    op, store, key = spec["op"], spec["store"], spec["key"]
    points.point("op")
    if op == "write":
        points.record("writing")
        put(store, key, int(spec["value"]))
        points.record("write", value=int(spec["value"]))
    elif op == "read":
        points.record("read", observed=get(store, key))
    elif op == "incr":
        _increment(store, key)
    elif op == "incr-locked":
        while not lock.acquire(blocking=False):
            points.point("wait")
        points.record("locked")
        try:
            _increment(store, key)
        finally:
            lock.release()
            points.record("unlocked")
    else:
        raise ValueError(f"unknown state op {op!r}")
    if spec.get("linger"):  # done, not returned: where a kill loses nothing but the process
        points.point("done")


def _increment(store: str, key: str) -> None:
    seen = get(store, key)
    points.record("rfu", observed=seen)
    points.point("rmw")
    points.record("writing")
    put(store, key, seen + 1)
    points.record("wb", value=seen + 1)
