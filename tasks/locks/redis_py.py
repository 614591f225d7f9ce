"""redis-py's own lock (redis/lock.py ``Lock``) as a built-in.

Acquire is ``SET name token NX PX ttl`` (``Lock.do_acquire``); release is a Lua
compare-and-delete (``LUA_RELEASE_SCRIPT``) that raises ``LockNotOwnedError`` when the
key no longer holds our token (``Lock.do_release``). That error is deliberately not
caught: a lost lease is an observation the calling task records.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tasks.locks import LockFn, Resources


def redis_py_lock(resources: Resources) -> LockFn:
    @contextmanager
    def lock(key: str, ttl: float) -> Iterator[bool]:
        # A Lock object per acquisition: the token lives in the object (thread-local by
        # default, ``thread_local=True``), so nothing is shared between tasks.
        # ``Lock.__enter__`` raises LockError when it cannot acquire instead of
        # reporting False, hence acquire(blocking=False) by hand.
        lk = resources.redis.lock(key, timeout=ttl, blocking=False)
        acquired = bool(lk.acquire(blocking=False))
        try:
            yield acquired
        finally:
            if acquired:
                lk.release()  # LockNotOwnedError propagates to the caller

    return lock
