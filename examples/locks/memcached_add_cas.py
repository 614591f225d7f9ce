"""A memcached lock: ``add`` with expiry, release by ``gets`` + ``cas``. SOUND.

Acquire is ``add key token exptime``: memcached stores the item only if the key is
absent, atomically on the server, and the lease is part of the same command, so a
holder that dies leaves a lock that expires.

Release must not delete a lock that someone else took after our lease ran out.
``gets`` + compare the token + ``delete`` is NOT enough: between our ``gets`` and our
``delete`` the key can expire and be re-``add``-ed by another task, and the
``delete`` would remove their lock. memcached's text protocol has no compare-and-delete
(the meta command ``md <key> C<cas>`` does, since 1.6, but pymemcache 4 has no API
for it), so we use ``cas``, which is conditional on the item being unchanged since our
``gets``: we overwrite our own item with an empty value whose expiry is negative,
which memcached treats as "expired at once" (protocol.txt: "If a negative value is
given the item is immediately expired"). If the key was re-taken in the gap, its cas
unique differs and the ``cas`` fails (EXISTS); if it simply expired, it fails
(NOT_FOUND). Either way the other holder's item is untouched. The one remaining
window, our lease expiring while we still work, is inherent to every lease lock.
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
        token = uuid.uuid4().hex
        # memcached expiry is whole seconds and 0 means "never": round up, at least 1.
        acquired = bool(mc.add(key, token, expire=max(1, math.ceil(ttl)), noreply=False))
        try:
            yield acquired
        finally:
            if acquired:
                value, cas = mc.gets(key)
                if value == token and cas is not None:
                    mc.cas(key, "", cas, expire=-1, noreply=False)

    return lock
