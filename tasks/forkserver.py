"""A fork server for ``celery worker`` processes: ``python -m tasks.forkserver SOCKET``.

Starting a worker costs about a second, nearly all of it importing Celery, kombu,
Django and the clients. This process imports them once, then forks a worker per
request, so a worker is ready in a fraction of that (a killed main process is common
in delivery scenarios). The fork runs the real ``celery worker`` command line, with its
own environment, in its own process group; ``tasks.app`` itself is imported only after
the fork, so each worker configures itself from its own environment.

Protocol, one JSON object per line on a Unix socket: ``{"argv": [...], "env": {...},
"cwd": "...", "log": "path"}`` -> ``{"pid": N}`` or ``{"error": "..."}``.
The server dies with its parent (parent-death signal set by the harness's spawn), and
every worker it forks dies with the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import socket
import sys
import tempfile
from typing import Any

_PR_SET_PDEATHSIG = 1


def _preload() -> None:
    """Import what every worker imports (but not tasks.app: it reads the worker's env)."""
    import amqp  # noqa: F401
    import billiard.pool  # noqa: F401
    import celery.apps.worker
    import celery.bin.celery
    import celery.concurrency.asynpool
    import celery.concurrency.prefork
    import celery.concurrency.solo
    import celery.concurrency.thread
    import celery.worker.consumer.consumer  # noqa: F401
    import django.db.models  # noqa: F401
    import kombu.transport.pyamqp
    import kombu.transport.redis  # noqa: F401
    import psycopg  # noqa: F401
    import pymemcache  # noqa: F401
    import redis  # noqa: F401

    from tasks import warm

    warm.preload()


def _reap(*_: Any) -> None:
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return


def _child(req: dict[str, Any], server: socket.socket, conn: socket.socket) -> None:
    """In the fork: become the worker. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        server.close()
        conn.close()
        os.setsid()
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.clear()
        os.environ.update(req["env"])
        tempfile.tempdir = None  # the worker's TMPDIR, not the one this server cached
        os.chdir(req["cwd"])
        sys.path.insert(0, req["cwd"])
        sys.argv = ["celery", *req["argv"]]
        from celery.__main__ import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(path: str) -> None:
    _preload()
    # The preloaded modules live as long as the server: frozen, no worker's
    # collections walk (and so copy) their pages.
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind() creates the file before listen() accepts: a client that waits for the
    # file could connect in between and be refused. Listen on a private name, then
    # rename it into place (atomic), so the path exists only once it accepts.
    server.bind(f"{path}.tmp")
    server.listen(8)
    os.rename(f"{path}.tmp", path)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as f:
            for line in f:
                req = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(req, server, conn)
                f.write(json.dumps({"pid": pid}).encode() + b"\n")
                f.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
