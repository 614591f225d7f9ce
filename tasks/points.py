"""Scheduling points: the task side of the control channel.

A task running under the suite parks at every scheduling point and waits until the
controller (in the test process) lets it go. Points are explicit (``point("cs")`` in our
own tasks) or automatic (every Redis / memcached command and SQL statement issued by
task code, see ``tasks.instrument``). Outside an execution, ``point`` does nothing, so
the instrumented clients are safe to use anywhere.

Wire format: one JSON object per line over a loopback TCP connection per thread
(``SUITE_CONTROL=host:port``). The controller answers each parking message with
``{"go": true, "clock": <offset>}``; ``clock`` is the virtual time the expiry moves
have added, seen by ``clock()`` and by the instrumented LocMemCache.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()
_offset = 0.0  # seconds of virtual time added by expiry moves; only grows
# Inline mode (task_always_eager, harness/eager.py): no controller; executions run to
# their end and their reports land here as (execution, kind, data).
_inline: list[tuple[str, str, dict[str, Any]]] | None = None


class ControlError(RuntimeError):
    """The controller went away or answered nonsense: the execution cannot go on."""


class StaleExecution(Exception):
    """The controller does not know this execution (a message from an earlier example)."""


def control_address() -> tuple[str, int] | None:
    addr = os.environ.get("SUITE_CONTROL")
    if not addr:
        return None
    host, _, port = addr.rpartition(":")
    return host, int(port)


class _Channel:
    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.settimeout(None)  # parked executions wait as long as the controller says
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.send(msg)
        line = self.reader.readline()
        if not line:
            raise ControlError("the suite's controller closed the control channel")
        reply: dict[str, Any] = json.loads(line)
        return reply


def _channel() -> _Channel:
    ch: _Channel | None = getattr(_local, "channel", None)
    if ch is None or getattr(_local, "pid", None) != os.getpid():
        address = control_address()
        if address is None:
            raise ControlError("SUITE_CONTROL is not set: the worker was not started by the suite")
        ch = _Channel(address)
        _local.channel, _local.pid = ch, os.getpid()
    return ch


def current() -> str | None:
    """The execution the calling thread runs, if any."""
    return getattr(_local, "execution", None)


def _apply(reply: dict[str, Any]) -> None:
    global _offset
    if reply.get("stale"):
        raise StaleExecution(reply.get("why", "stale"))
    if not reply.get("go"):
        raise ControlError(f"unexpected answer from the controller: {reply!r}")
    _offset = max(_offset, float(reply.get("clock", 0.0)))


@contextmanager
def execution(
    execution_id: str,
    task: str,
    redelivered: bool = False,
    level: int = 0,
    task_id: str | None = None,
) -> Iterator[None]:
    """Run the body as a controlled execution: park at start, report the end.

    Raises StaleExecution (before the body runs) if the controller does not know it.
    """
    end: Any
    if _inline is not None:
        log = _inline
        log.append((execution_id, "start", {}))

        def end(status: str, error: str | None) -> None:
            log.append((execution_id, "end", {"status": status, "error": error}))
    else:
        ch = _channel()
        start = {"t": "start", "x": execution_id, "task": task, "pid": os.getpid()}
        _apply(ch.ask({**start, "redelivered": redelivered, "level": level, "id": task_id}))

        def end(status: str, error: str | None) -> None:
            ch.send({"t": "end", "x": execution_id, "status": status, "error": error})

    _local.execution = execution_id
    status, error = "ok", None
    try:
        yield
    except BaseException as exc:
        status, error = "error", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        _local.execution = None
        end(status, error)


@contextmanager
def inline(log: list[tuple[str, str, dict[str, Any]]]) -> Iterator[None]:
    """Run executions in this thread without a controller (eager mode): points do not
    park, reports are appended to ``log``."""
    global _inline
    _inline = log
    try:
        yield
    finally:
        _inline = None


_suppressed = threading.local()


@contextmanager
def suppressed() -> Iterator[None]:
    """No automatic points inside: for the suite's own bookkeeping queries."""
    before = getattr(_suppressed, "on", False)
    _suppressed.on = True
    try:
        yield
    finally:
        _suppressed.on = before


def point(name: str) -> None:
    """Park here until the controller releases this execution (no-op outside one)."""
    x = current()
    if x is None or getattr(_suppressed, "on", False) or _inline is not None:
        return
    _apply(_channel().ask({"t": "point", "x": x, "p": name}))


def gate(name: str, task_id: str) -> None:
    """Inside Celery's pool machinery, outside any execution: ask the controller
    whether ``task_id``'s job may pass ``name``; it answers at once, or never if the
    scenario holds the job there until it kills this process. Only workers started
    with gates (``Settings.gates``) call it (tasks/patches/gates.py)."""
    if control_address() is None or _inline is not None:
        return
    _apply(_channel().ask({"t": "gate", "p": name, "id": task_id, "pid": os.getpid()}))


def record(kind: str, **data: Any) -> None:
    """Report an observation (lock acquired, invoice created); does not wait."""
    x = current()
    if x is None:
        return
    if _inline is not None:
        _inline.append((x, kind, data))
        return
    _channel().send({"t": "rec", "x": x, "k": kind, **data})


def notify(kind: str, **data: Any) -> None:
    """Tell the controller what the worker did with a message (received, acked, a
    result state written); any process, any thread, inside an execution or not.

    Sent on the calling thread's channel, so it is ordered with that thread's points.
    A worker not started by the suite (no SUITE_CONTROL) says nothing.
    """
    if control_address() is None or _inline is not None:
        return
    _channel().send({"t": kind, **data})


def offset() -> float:
    """Virtual seconds added by expiry moves so far (as of this execution's last point)."""
    return _offset


def clock() -> float:
    """``time.monotonic()`` as the scenario sees it: expiry moves make time pass."""
    return time.monotonic() + _offset


def wall() -> float:
    """``time.time()`` as the scenario sees it."""
    return time.time() + _offset
