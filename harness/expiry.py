"""The expiry move: a lock's TTL elapses *now*, in the real servers.

Every entry whose key contains the lock key and that carries a TTL is expired by the
server that holds it, so the lock code sees exactly what it would see after waiting:
Redis ``PEXPIREAT key 1`` (a time in the past: the server expires the key at once),
memcached ``touch key -1`` (negative exptime: expired at once, ``protocol.txt``),
Django's DatabaseCache rows get an ``expires`` long past. Entries without a TTL are
left alone: a lock that never set one is exactly the bug to find. In-process state
(LocMemCache) follows the controller's virtual clock instead.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote

import redis

from harness.errors import HarnessError

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def expire_redis(url: str, key: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        done = []
        for k in client.scan_iter(match=f"*{key.translate(_GLOB_SPECIAL)}*", count=1000):
            if client.pttl(k) > 0:
                client.pexpireat(k, 1)
                done.append(f"redis {k.decode(errors='replace')}")
        return done
    finally:
        client.close()


# A status line that ends a reply in place of its data (memcached's protocol.txt). The
# LRU crawler runs one request at a time, its own background crawls included, so a
# metadump can be answered BUSY and then nothing more: reading on for END waited out
# the socket's timeout (a soak run's harness error, 2026-12-07).
_STATUS = (b"BUSY", b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")
CRAWLER_WAIT = 5.0  # seconds a BUSY crawler may take before the expiry move gives up
CRAWLER_RETRY = 0.005  # between two tries while it is busy: a crawl of our few keys is brief


def _memcached(address: str, line: bytes, until: bytes) -> bytes:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(line)
        data = b""
        while not data.endswith(until):
            if data.startswith(_STATUS) and data.endswith(b"\r\n"):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _metadump(address: str) -> str:
    """Every item's metadata; waits out a crawler busy with another request."""
    deadline = time.monotonic() + CRAWLER_WAIT
    while True:
        dump = _memcached(address, b"lru_crawler metadump all\r\n", b"END\r\n")
        if not dump.startswith(b"BUSY"):
            break
        if time.monotonic() > deadline:
            raise HarnessError(
                f"memcached at {address}: its LRU crawler stayed busy for "
                f"{CRAWLER_WAIT:.0f}s ({dump.decode(errors='replace').strip()})"
            )
        time.sleep(CRAWLER_RETRY)  # the server says nothing when the crawler frees up
    if dump.startswith(_STATUS):
        raise HarnessError(
            f"memcached at {address}: lru_crawler metadump answered "
            f"{dump.decode(errors='replace').strip()}"
        )
    return dump.decode()


def _ttl(address: str, name: str) -> str | None:
    """The entry's TTL as meta get reports it ("-1": none), or None if it is gone."""
    reply = _memcached(address, f"mg {name} t\r\n".encode(), b"\r\n").decode().split()
    return reply[1][1:] if reply[:1] == ["HD"] and len(reply) > 1 else None


def expire_memcached(address: str, key: str, stored: Iterable[str] = ()) -> list[str]:
    """Expire the entries whose name contains ``key`` and that carry a TTL.

    ``stored``: the names the example's tasks stored (the instrumented client reports
    them). A metadump alone is not enough: it missed a just-set entry in 27 of 1000
    tries on memcached 1.6.18 (it walks the LRUs while they change; not a snapshot),
    and a second dump found it; each stored name is looked up itself (``mg <key> t``)."""
    found: dict[str, bool] = {}
    for line in _metadump(address).splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        name = unquote(fields.get("key", ""))
        if key in name:
            found[name] = fields.get("exp", "-1") != "-1"
    for name in sorted(set(stored) - set(found)):
        if key in name and (ttl := _ttl(address, name)) is not None:
            found[name] = ttl != "-1"
    done = []
    for name in sorted(found):
        if found[name]:
            _memcached(address, f"touch {name} -1\r\n".encode(), b"\r\n")
            done.append(f"memcached {name}")
    return done


# Long before any clock read of the scenario: see expire_db_cache.
_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def expire_db_cache(alias: str, key: str) -> list[str]:
    """Set ``expires`` of the lock's rows far in the past.

    Django decides expiry itself: ``_base_set`` reads ``now`` right after its
    ``SELECT COUNT(*)``, truncated to the second, and compares it with ``expires`` in a
    later statement (django/core/cache/backends/db.py). A row expired at "now - 1 s"
    (``touch(key, 0)``) therefore looked live or expired to an add that read its
    clock before the move depending on whether a second boundary fell in between
    (seen: 2 of 15 replays of one scenario differed). Far in the past, it is expired
    for every reader, whenever it read its clock.
    """
    from django.core.cache import caches
    from django.db import connections, router

    cache = caches[alias]
    db = router.db_for_write(cache.cache_model_class)
    conn = connections[db]
    table = conn.ops.quote_name(cache._table)
    long_ago = conn.ops.adapt_datetimefield_value(_LONG_AGO)
    with conn.cursor() as cursor:
        cursor.execute(
            f"SELECT cache_key, expires FROM {table} WHERE cache_key LIKE %s", [f"%{key}%"]
        )
        rows = [k for k, expires in cursor.fetchall() if getattr(expires, "year", 0) < 9999]
        for cache_key in rows:  # year 9999: stored with timeout=None, no TTL to elapse
            cursor.execute(
                f"UPDATE {table} SET expires = %s WHERE cache_key = %s", [long_ago, cache_key]
            )
    return [f"{alias} {k}" for k in rows]
