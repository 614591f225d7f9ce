"""The harness's end of the worker fork server (tasks/forkserver.py).

Workers started through it skip the second of imports a fresh interpreter pays, which
is most of a worker's start-up; they are real ``celery worker`` processes all the same
(the same command line, their own environment and process group).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from harness import procs
from harness.errors import HarnessError

START_TIMEOUT = 60.0


class ForkServer:
    def __init__(self, run_dir: Path, env: dict[str, str], cwd: str) -> None:
        self.path = str(run_dir / "forkserver.sock")
        self._log = str(run_dir / "forkserver.log")
        self._managed = procs.spawn(
            [sys.executable, "-m", "tasks.forkserver", self.path],
            name="worker fork server", env=env, cwd=cwd, log_path=self._log,
        )  # fmt: skip
        self._sock: socket.socket | None = None
        self._reader: Any = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            managed = self._managed

            def up() -> bool:
                if not managed.alive():
                    raise HarnessError(
                        f"the worker fork server exited (log {self._log}):\n{managed.log_tail()}"
                    )
                return os.path.exists(self.path)

            procs.wait_until(up, timeout=START_TIMEOUT, what="the worker fork server to start")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(START_TIMEOUT)
            sock.connect(self.path)
            self._sock, self._reader = sock, sock.makefile("rb")
        return self._sock

    def fork(
        self, argv: list[str], *, name: str, env: dict[str, str], cwd: str, log_path: str
    ) -> procs.Managed:
        """Start ``celery <argv>`` as a fork of the server; managed like a spawn."""
        sock = self._connect()
        request = {"argv": argv, "env": env, "cwd": cwd, "log": log_path}
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            assert self._reader is not None
            line = self._reader.readline()
        except OSError as exc:
            raise HarnessError(f"the worker fork server did not answer: {exc}") from None
        if not line:
            raise HarnessError(
                f"the worker fork server closed its socket (log {self._log}):\n"
                + self._managed.log_tail()
            )
        reply = json.loads(line)
        return procs.adopt(name, int(reply["pid"]), log_path)

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._managed.stop(timeout=5)
