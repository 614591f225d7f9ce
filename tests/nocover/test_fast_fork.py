"""tasks/patches/fast_fork.py on real forked processes (no servers)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from typing import Any

import psutil
import pytest

from tasks.patches import fast_fork

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


def gone(pid: int) -> bool:
    """Exited, possibly as a zombie nobody reaps yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def orphan(sig: int) -> int:
    """A grandchild that sets its parent-death signal to ``sig`` (0: none) and sleeps;
    its parent exits as soon as the signal is set. Returns the grandchild's pid."""
    to_test, from_middle = os.pipe()[::-1]
    set_r, set_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        pid = os.fork()
        if pid == 0:
            try:
                fast_fork.set_pdeathsig(sig)
                os.write(set_w, b"s")
                time.sleep(30)
            finally:
                os._exit(0)
        os.read(set_r, 1)  # exit only once it is set, or it could miss the death
        os.write(to_test, f"{pid}".encode())
        os._exit(0)
    for fd in (to_test, set_r, set_w):
        os.close(fd)
    pid = int(os.read(from_middle, 32))
    os.close(from_middle)
    os.waitpid(middle, 0)
    return pid


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.02)
    return gone(pid)


def test_a_child_with_pdeathsig_dies_with_its_parent() -> None:
    pid = orphan(signal.SIGKILL)
    assert wait_gone(pid, 5), f"{pid} outlived its parent"


def test_a_child_without_pdeathsig_outlives_its_parent() -> None:
    """The control: without the signal the same grandchild lives on, so the test
    above sees the prctl's effect, not some other death."""
    pid = orphan(0)
    try:
        assert not wait_gone(pid, 1)
    finally:
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # ours if we are a subreaper
            os.waitpid(pid, 0)


def test_install_replaces_both_bindings_of_billiard_set_pdeathsig() -> None:
    import billiard.util
    from celery import platforms
    from celery.concurrency import asynpool

    fast_fork.install()
    fast_fork.install()  # idempotent: one wrapper, not two
    assert billiard.util.set_pdeathsig is fast_fork.set_pdeathsig
    assert platforms._set_pdeathsig is fast_fork.set_pdeathsig
    create = asynpool.AsynPool._create_worker_process
    assert create.suite_fast_fork
    assert not getattr(create.__closure__[0].cell_contents, "suite_fast_fork", False)


def test_the_fork_runs_frozen_and_the_parent_stays_frozen() -> None:
    """The parent's objects stay frozen after the fork, so the next respawn's collects
    walk only what was made since (a whole-heap collect per respawn was 120 ms)."""
    seen: dict[str, Any] = {}

    def create(self: object, i: int) -> str:
        seen["frozen"] = gc.get_freeze_count()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a child's collection leaves the frozen objects alone
            gc.collect()
            os.write(w, str(gc.get_freeze_count()).encode())
            os._exit(0)
        os.close(w)
        seen["child"] = int(os.read(r, 32))
        os.waitpid(pid, 0)
        return "proc"

    assert gc.get_freeze_count() == 0
    try:
        assert fast_fork.frozen_across(create)(None, 0) == "proc"
        assert seen["frozen"] > 1000  # the test process's objects, not a handful
        assert seen["child"] > seen["frozen"] // 2  # still frozen there (less what refcounts freed)
        first = gc.get_freeze_count()
        assert first >= seen["frozen"] // 2  # and still frozen here
        made_since = [[i] for i in range(5000)]  # new objects: frozen at the next fork
        assert fast_fork.frozen_across(create)(None, 1) == "proc"
        assert gc.get_freeze_count() >= first + len(made_since)
    finally:
        gc.unfreeze()  # the rest of this test process collects as usual


def test_a_fork_that_raises_propagates() -> None:
    def create(self: object, i: int) -> None:
        raise OSError("fork failed")

    try:
        with pytest.raises(OSError):
            fast_fork.frozen_across(create)(None, 0)
    finally:
        gc.unfreeze()
