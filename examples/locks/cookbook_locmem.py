"""The Celery cookbook lock on Django's LocMemCache. BROKEN under prefork.

The recipe (celery docs/tutorials/task-cookbook.rst, "Ensuring a task is only executed
one at a time") relies on ``cache.add`` being atomic *for every worker*. LocMemCache
keeps its entries in a module-level dict (django/core/cache/backends/locmem.py
``_caches``): ``add`` is atomic under a per-process lock, but each prefork child has its
own copy of the dict. Two children each find the key absent and both "acquire".

Under the threads or solo pool (one process) it behaves as a lock; with prefork and
concurrency >= 2 the suite should find two holders at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any


def make_lock(resources: Any) -> Callable[[str, float], AbstractContextManager[bool]]:
    @contextmanager
    def lock(key: str, ttl: float) -> Iterator[bool]:
        cache = resources.cache("locmem")
        timeout_at = resources.clock() + ttl
        status = bool(cache.add(key, uuid.uuid4().hex, ttl))
        try:
            yield status
        finally:
            # Release only while the lease lasts, as the cookbook does.
            if resources.clock() < timeout_at and status:
                cache.delete(key)

    return lock
