"""A memcached lock made of ``get`` then ``set``. BROKEN: check-then-act.

Two tasks can both ``get`` the key, both see it absent, and both ``set`` it: the test
and the write are two commands with a gap between them, which the suite's schedule
can fill with the other task's ``get``. memcached's ``add`` exists precisely to do
both in one step (see memcached_add_cas.py). Release is an unconditional ``delete``,
which can also remove a lock that expired and was taken by someone else.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any


def make_lock(resources: Any) -> Callable[[str, float], AbstractContextManager[bool]]:
    mc = resources.memcache

    @contextmanager
    def lock(key: str, ttl: float) -> Iterator[bool]:
        acquired = False
        if mc.get(key) is None:
            # memcached expiry is whole seconds, and 0 means "never": round up.
            mc.set(key, uuid.uuid4().hex, expire=max(1, math.ceil(ttl)))
            acquired = True
        try:
            yield acquired
        finally:
            if acquired:
                mc.delete(key)

    return lock
