"""redis-py's ``Lock`` (redis/lock.py) used as a plug-in. SOUND.

Acquire is ``SET name token NX PX ttl``; release is a Lua compare-and-delete
(``Lock.LUA_RELEASE_SCRIPT``) that raises ``LockNotOwnedError`` when the key no longer
holds our token, i.e. the lease ran out and possibly someone else holds the lock.

That error must propagate. Swallowing it (``except LockNotOwnedError: pass``, or
``raise_on_release_error=False``) hides exactly the event that means mutual exclusion
may have been lost; the task then reports success for work done without the lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any


def make_lock(resources: Any) -> Callable[[str, float], AbstractContextManager[bool]]:
    r = resources.redis

    @contextmanager
    def lock(key: str, ttl: float) -> Iterator[bool]:
        # Not ``with r.lock(...)``: Lock.__enter__ raises LockError instead of
        # reporting a refused non-blocking acquire.
        lk = r.lock(key, timeout=ttl, blocking=False)
        acquired = bool(lk.acquire(blocking=False))
        try:
            yield acquired
        finally:
            if acquired:
                lk.release()  # LockNotOwnedError propagates: the caller records it

    return lock
