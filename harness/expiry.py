"""The expiry move: a lock's TTL elapses *now*, in the real servers.

Every entry whose key contains the lock key and that carries a TTL is expired by the
server that holds it, so the lock code sees exactly what it would see after waiting:
Redis ``PEXPIREAT key 1`` (a time in the past: the server expires the key at once),
memcached ``touch key -1`` (negative exptime: expired at once, ``protocol.txt``).
Entries without a TTL are left alone: a lock that never set one is exactly the bug to
find. Where the *client* decides expiry (LocMemCache, Django's DatabaseCache, which
compares a row's ``expires`` with its own clock) the controller's virtual clock jumps
past the TTL instead (tasks/instrument/caches.py).
"""

from __future__ import annotations

import socket
from urllib.parse import unquote

import redis

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


def _memcached(address: str, line: bytes, until: bytes) -> bytes:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(line)
        data = b""
        while not data.endswith(until):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def expire_memcached(address: str, key: str) -> list[str]:
    dump = _memcached(address, b"lru_crawler metadump all\r\n", b"END\r\n")
    done = []
    for line in dump.decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        name = unquote(fields.get("key", ""))
        if key in name and fields.get("exp", "-1") != "-1":
            _memcached(address, f"touch {name} -1\r\n".encode(), b"\r\n")
            done.append(f"memcached {name}")
    return done
