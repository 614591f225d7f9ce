"""Nothing the suite starts survives it: on a normal exit, on Ctrl-C, on SIGTERM, and
when the test process itself is SIGKILLed (the reaper's job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.servers, pytest.mark.workers]

ROOT = Path(__file__).resolve().parents[2]

# Starts a cluster and a prefork worker, prints every pid it started, then either
# stops normally or blocks until a signal arrives.
CHILD = """
import os, signal, sys, time, psutil
# Ctrl-C as from a terminal: a shell starts a background job with SIGINT ignored, and
# Python then keeps it ignored (the sigint case hung when the suite ran as one).
signal.signal(signal.SIGINT, signal.default_int_handler)
from harness.cluster import Cluster
from harness.workers import WorkerSpec
c = Cluster().start()
c.worker(WorkerSpec("prefork", 2))
pids = [p.pid for p in psutil.Process().children(recursive=True)]
print(" ".join(map(str, pids)), c.run_dir, flush=True)
import faulthandler
faulthandler.dump_traceback_later(40)  # still here 40 s on: where it is stuck (stderr)
if sys.argv[1] == "exit":
    c.stop()
    sys.exit(0)
time.sleep(600)
"""


def _gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["exit", "sigint", "sigterm", "sigkill"])
def test_every_started_process_is_gone(how: str) -> None:
    before = _temp_dirs()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for k in [k for k in env if k.startswith("SUITE_")]:
        del env[k]  # a fresh cluster, not the session's
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, how], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    pids, run_dir = [int(p) for p in line[:-1]], Path(line[-1])
    assert len(pids) >= 7  # 2 redis, memcached, postgres (+ its helpers), worker, 2 children
    if how != "exit":
        proc.send_signal({"sigint": signal.SIGINT, "sigterm": signal.SIGTERM,
                          "sigkill": signal.SIGKILL}[how])  # fmt: skip
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        # Seen once in a clean-clone CI run (sigint, 2026-12-07): the child's stacks,
        # dumped at 40 s, say where its exit hung.
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"the child did not exit within 60 s of {how}; its stderr:\n{err}")
    assert _gone(pids) == []
    if how != "sigkill":  # the reaper only kills; a SIGKILLed process leaves its temp dir
        assert not run_dir.exists()
    # billiard's pymp-* dirs (which no killed or os._exit-ed process removes) stay in
    # the run dir: the workers' TMPDIR.
    assert _temp_dirs() - before == set()


def _temp_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("pymp-*")}
