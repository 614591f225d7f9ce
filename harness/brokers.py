"""What the harness reads from, and does to, the broker itself.

The workers report what they do with a message; these probes report what the broker
holds, which no worker announces: messages waiting in a queue, and on Redis the
unacked index that the visibility timeout works on (kombu/transport/redis.py
``QoS``: ``unacked`` hash, ``unacked_index`` sorted set scored by delivery time,
``unacked_mutex`` around a restore scan).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Protocol

from harness.errors import HarnessError

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
UNACKED_MUTEX = "unacked_mutex"
STALE_MUTEX = 0.5  # seconds one holder may keep the restore mutex before it counts as dead
BROKER_POLL = 0.005
_DELETE_IF_SAME = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class Broker(Protocol):
    url: str

    def ready(self, queue: str) -> int:
        """Messages waiting in ``queue`` (not delivered to any consumer)."""

    def consumers(self, queue: str) -> int:
        """Consumers the broker counts on ``queue`` (AMQP); -1 where it cannot tell."""

    def age_unacked(self, tag: str | None = None) -> int:
        """Make the visibility timeout pass for the unacked messages now."""

    def entries(self) -> list[tuple[str, str, int]]:
        """(delivery tag, task id, retries) of every unacked entry (Redis)."""

    def aged(self, visibility_timeout: float) -> int:
        """Unacked messages past the visibility timeout, not yet restored."""

    def unacked(self) -> int:
        """Messages delivered and not acknowledged (Redis); -1 where it cannot tell."""

    def unacked_ids(self) -> list[str]:
        """Task ids of the messages delivered and not acknowledged (Redis)."""

    def wake(self, pid: int) -> int:
        """Make process ``pid``'s blocking reads on the broker return now (Redis: its
        BRPOP on the queues it consumed so far); how many it had in flight."""

    def purge(self, queues: list[str]) -> None:
        """Drop leftovers of an example that ended in a harness error."""

    def delete(self, queues: list[str]) -> None: ...

    def close(self) -> None: ...


class RedisBroker:
    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.r: Any = redis.Redis.from_url(url, socket_timeout=10)

    def ready(self, queue: str) -> int:
        """Every priority's list, as kombu's ``Channel._size`` counts them."""
        with self.r.pipeline(transaction=False) as pipe:
            for key in priority_lists(queue):
                pipe.llen(key)
            return sum(int(n) for n in pipe.execute())

    def consumers(self, queue: str) -> int:
        return -1

    def entries(self) -> list[tuple[str, str, int]]:
        """(delivery tag, task id, retries) of every unacked entry."""
        import json

        out = []
        for tag, raw in self.r.hgetall(UNACKED).items():
            headers = json.loads(raw)[0].get("headers") or {}
            out.append((tag.decode(), str(headers.get("id")), int(headers.get("retries") or 0)))
        return out

    def age_unacked(self, tag: str | None = None) -> int:
        """Age the unacked entries (only ``tag``'s, if given) past any visibility
        timeout; a consuming worker's next scan restores them."""
        tags = [tag] if tag is not None else [t for t, _, _ in self.entries()]
        if tags:
            # Score 1 is 1970, older than any timeout. XX: never resurrect an entry
            # acked meanwhile.
            self.r.zadd(UNACKED_INDEX, dict.fromkeys(tags, 1), xx=True)
        self._clear_stale_mutex()
        return len(tags)

    def _clear_stale_mutex(self) -> None:
        """A worker killed inside its restore scan leaves the scan's mutex for 300 s
        (``unacked_mutex_expire``), and no scan would run; delete it, but only if the
        same holder keeps it for ``STALE_MUTEX`` (a live scan takes milliseconds).

        Never delete a live holder's mutex: two scans at once can restore one message
        twice. A restored message keeps its delivery tag, so once the first scan's
        restore is consumed the hash has an entry under that tag again, and the
        second scan's ``restore_by_tag`` (it read the aged index before) restores the
        fresh delivery too: two receipts from one ``vt``, a mismatch the model calls
        and a replay may not reproduce."""
        token = self.r.get(UNACKED_MUTEX)
        deadline = time.monotonic() + STALE_MUTEX
        while token is not None and time.monotonic() < deadline:
            time.sleep(BROKER_POLL)
            now = self.r.get(UNACKED_MUTEX)
            if now != token:
                return  # released or taken anew: its holder is alive
        if token is not None:
            self.r.eval(_DELETE_IF_SAME, 1, UNACKED_MUTEX, token)

    def aged(self, visibility_timeout: float) -> int:
        return int(self.r.zcount(UNACKED_INDEX, "-inf", time.time() - visibility_timeout))

    def unacked(self) -> int:
        return int(self.r.hlen(UNACKED))

    def unacked_ids(self) -> list[str]:
        """Task ids of the unacked entries. A restored message keeps its delivery tag,
        so every delivery of one message shares one entry (kombu #1800)."""
        import json

        ids = []
        for raw in self.r.hvals(UNACKED):
            payload = json.loads(raw)[0]
            ids.append(str((payload.get("headers") or {}).get("id")))
        return ids

    def purge(self, queues: list[str]) -> None:
        self.r.delete(UNACKED, UNACKED_INDEX, UNACKED_MUTEX, *queues)

    def delete(self, queues: list[str]) -> None:
        if queues:
            self.r.delete(*(key for q in queues for key in priority_lists(q)))

    def wake(self, pid: int) -> int:
        """A queue a worker starts consuming joins its BRPOP only when the BRPOP in
        flight returns, after ``brpop_timeout`` (1 s; kombu/transport/redis.py
        ``_brpop_start``). ``CLIENT UNBLOCK`` ends it now, as a timeout would, and
        kombu sends the next one with every queue. The worker's connections are
        told apart by their local ports (CLIENT LIST ``addr``)."""
        import psutil

        try:
            ports = {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")}
        except psutil.Error:
            return 0  # gone: nothing of it to wake
        woken = 0
        for client in self.r.client_list():
            port = int(str(client.get("addr", ":0")).rsplit(":", 1)[1])
            if port in ports and client.get("cmd") == "brpop":
                woken += int(self.r.client_unblock(int(client["id"])))
        return woken

    def close(self) -> None:
        self.r.close()


def priority_lists(queue: str) -> list[str]:
    """The Redis keys of ``queue``'s messages, one list per priority step: ``queue``
    for step 0, else ``queue`` + sep + step (kombu/transport/redis.py ``_q_for_pri``)."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    return [queue if p == 0 else f"{queue}{Channel.sep}{p}" for p in PRIORITY_STEPS]


class AmqpBroker:
    """RabbitMQ by URL (a shared service): the suite only touches its own queues."""

    def __init__(self, url: str) -> None:
        from kombu import Connection

        self.url = url
        self.conn = Connection(url, connect_timeout=5)
        try:
            self.conn.ensure_connection(max_retries=1)
        except Exception as exc:
            raise HarnessError(
                f"RabbitMQ at {url} is unreachable ({exc}): start it, or set "
                "SUITE_AMQP_URL to a reachable amqp:// URL"
            ) from None

    def _declare(self, queue: str) -> tuple[int, int]:
        try:
            channel = self.conn.channel()
        except Exception:
            self.conn = self.conn.clone()
            channel = self.conn.channel()
        try:
            _name, messages, consumers = channel.queue_declare(queue, passive=True)
        except Exception as exc:
            if "NOT_FOUND" in str(exc) or "404" in str(exc):
                return 0, 0
            raise
        finally:
            with contextlib.suppress(Exception):
                channel.close()
        return int(messages), int(consumers)

    def ready(self, queue: str) -> int:
        return self._declare(queue)[0]

    def consumers(self, queue: str) -> int:
        return self._declare(queue)[1]

    def entries(self) -> list[tuple[str, str, int]]:
        return []

    def age_unacked(self, tag: str | None = None) -> int:
        raise HarnessError("the visibility timeout is a Redis transport feature")

    def aged(self, visibility_timeout: float) -> int:
        return 0

    def unacked(self) -> int:
        return -1

    def unacked_ids(self) -> list[str]:
        return []

    def wake(self, pid: int) -> int:
        return 0  # a basic.consume takes effect at once

    def purge(self, queues: list[str]) -> None:
        for q in queues:
            if self.ready(q):
                channel = self.conn.channel()
                try:
                    channel.queue_purge(q)
                finally:
                    channel.close()

    def delete(self, queues: list[str]) -> None:
        for q in queues:
            with contextlib.suppress(Exception):
                channel = self.conn.channel()
                try:
                    channel.queue_delete(q)
                finally:
                    channel.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.release()
