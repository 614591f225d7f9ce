"""The control channel's sockets, test-process end: one listening socket on loopback,
one connection per worker agent or running execution, newline-delimited JSON each way.

Reading happens in the caller's thread (``read``): whatever arrived becomes an event
``(connection, message)`` in ``events``, ``None`` for an end of file, in arrival order.
"""

from __future__ import annotations

import collections
import contextlib
import json
import select
import selectors
import socket
from typing import Any

Event = tuple[int, dict[str, Any] | None]


class Wire:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.address = self._server.getsockname()
        self._server.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._server, selectors.EVENT_READ, None)
        self.events: collections.deque[Event] = collections.deque()
        self.socks: dict[int, socket.socket] = {}
        self._buffers: dict[int, bytes] = {}
        self._next_conn = 0

    def read(self, timeout: float) -> None:
        """Wait up to ``timeout`` for bytes; turn whatever arrived into events."""
        for key, _ in self._sel.select(timeout=timeout):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    sock, _addr = self._server.accept()
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    cid = self._next_conn
                    self._next_conn += 1
                    self.socks[cid] = sock
                    self._buffers[cid] = b""
                    self._sel.register(sock, selectors.EVENT_READ, cid)
                continue
            cid = key.data
            sock = self.socks[cid]
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self._sel.unregister(sock)
                sock.close()
                self.events.append((cid, None))
                continue
            *lines, self._buffers[cid] = (self._buffers[cid] + chunk).split(b"\n")
            self.events.extend((cid, json.loads(line)) for line in lines if line)

    def send(self, cid: int, msg: dict[str, Any]) -> None:
        """Send ``msg`` on connection ``cid``, if it is still open."""
        sock = self.socks.get(cid)
        if sock is None:
            return
        data = json.dumps(msg).encode() + b"\n"
        # The socket stays non-blocking (``read`` owns its reads); a reply is a few
        # dozen bytes, so waiting for room is the rare case.
        with contextlib.suppress(OSError):  # the process died; its EOF is on the way
            while data:
                try:
                    data = data[sock.send(data) :]
                except BlockingIOError:
                    select.select([], [sock], [], 5.0)

    def forget(self, cid: int) -> None:
        """Connection ``cid`` ended (its end-of-file event was applied)."""
        self.socks.pop(cid, None)

    def close(self) -> None:
        for sock in [self._server, *self.socks.values()]:
            with contextlib.suppress(OSError):
                sock.close()
        self._sel.close()
