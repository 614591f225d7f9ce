"""A Redis lock made of ``SETNX`` then ``EXPIRE``. BROKEN: orphaned locks.

``SETNX`` takes the key atomically, but the lease is set by a second command. A
holder killed (or a worker lost) between the two leaves a key with no TTL: nobody can
ever acquire again. This was the classic recipe before Redis 2.6.12 added
``SET key value NX PX ms``, which does both in one command (redis_set_nx_px.py).

Release is an unconditional ``DEL``, so a holder that outlived its lease also deletes
whoever holds the lock now: a second defect the suite can find with an expiry move.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any


def make_lock(resources: Any) -> Callable[[str, float], AbstractContextManager[bool]]:
    r = resources.redis

    @contextmanager
    def lock(key: str, ttl: float) -> Iterator[bool]:
        acquired = bool(r.setnx(key, uuid.uuid4().hex))
        if acquired:
            r.pexpire(key, max(1, int(ttl * 1000)))
        try:
            yield acquired
        finally:
            if acquired:
                r.delete(key)

    return lock
