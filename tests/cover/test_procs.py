"""Process hygiene without servers: ports, waiting, process groups, cleanup on exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from harness import procs, servers
from harness.errors import HarnessError, HarnessTimeout, MissingBinary
from harness.procs import free_port, spawn, wait_until

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """Exited, possibly as a zombie nobody reaps yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_wait_until_returns_the_truthy_value() -> None:
    calls = iter([0, None, "ready"])
    assert wait_until(lambda: next(calls), timeout=1, what="x") == "ready"


def test_wait_until_timeout_names_what_it_waited_for() -> None:
    with pytest.raises(HarnessTimeout, match=r"^timed out after 0\.05s waiting for the moon$"):
        wait_until(lambda: False, timeout=0.05, what="the moon")


def test_stop_ends_a_process_and_is_idempotent(tmp_path: Path) -> None:
    m = spawn(["sleep", "1000"], name="sleep", log_path=str(tmp_path / "sleep.log"))
    assert m.alive()
    assert os.getpgid(m.pid) == m.pid  # leads its own group
    m.stop()
    assert not m.alive()
    assert gone(m.pid)
    m.stop()
    assert m not in procs._registry


def test_stop_ends_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    m = spawn(["sh", "-c", f"sleep 1000 & echo $! > {pidfile}; wait"], name="sh")
    child = int(
        wait_until(
            lambda: pidfile.exists() and pidfile.read_text().strip(),
            timeout=5,
            what="the child pid",
        )
    )
    assert not gone(child)
    m.stop()
    assert gone(m.pid)
    assert gone(child)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"trap '' TERM; sleep 1000 & echo $! > {pidfile}; wait"
    m = spawn(["sh", "-c", script], name="stubborn")
    child = int(
        wait_until(
            lambda: pidfile.exists() and pidfile.read_text().strip(),
            timeout=5,
            what="the child pid",
        )
    )
    m.stop(timeout=0.2)
    assert m.popen.returncode == -signal.SIGKILL
    assert gone(child)


def test_kill_group_and_wait() -> None:
    m = spawn(["sleep", "1000"], name="sleep")
    assert m.wait(0.01) is None
    m.kill_group()
    assert m.wait(0.01) == -signal.SIGKILL


def test_signal_reaches_the_main_process_only() -> None:
    m = spawn(["sleep", "1000"], name="sleep")
    m.signal(signal.SIGTERM)
    assert m.wait(5) == -signal.SIGTERM
    m.stop()


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    m = spawn(
        ["sh", "-c", "for i in $(seq 1 30); do echo line$i; done; echo oops >&2"],
        name="sh",
        log_path=str(log),
    )
    assert m.wait(5) == 0
    assert m.log_tail(3) == "line29\nline30\noops"
    m.stop()
    assert spawn(["true"], name="quiet").log_tail() == ""


def test_spawn_refuses_other_threads() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            spawn(["true"], name="from-thread")
        except HarnessError as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert len(errors) == 1
    assert "main thread" in str(errors[0])


def test_spawn_as_another_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    m = spawn(["sleep", "1000"], name="sleep", user="nobody")
    try:
        assert psutil.Process(m.pid).uids().real == 65534
    finally:
        m.stop()


@pytest.mark.parametrize("user", [None, "nobody"])
def test_parent_death_signal_kills_children_without_a_reaper(user: str | None) -> None:
    if user is not None and os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    # No install_cleanup, so no reaper: only PR_SET_PDEATHSIG can kill the sleep. With a
    # user it also checks that the signal is set after the credential change.
    script = (
        "import time\n"
        "from harness import procs\n"
        f"m = procs.spawn(['sleep', '1000'], name='sleep', user={user!r})\n"
        "print(m.pid, flush=True)\n"
        "time.sleep(1000)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    sleep_pid = int(child.stdout.readline())
    assert not gone(sleep_pid)
    child.kill()
    child.wait(5)
    child.stdout.close()
    wait_until(lambda: gone(sleep_pid), timeout=5, what=f"sleep {sleep_pid} to die")


def test_missing_memcached_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingBinary, match=r"apt-get install -y memcached`$"):
        servers.Memcached(tmp_path).start()
    with pytest.raises(MissingBinary, match=r"apt-get install -y redis-server`$"):
        servers.RedisServer(tmp_path).start()


def test_missing_postgres_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(servers, "PG_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(MissingBinary, match=r"apt-get install -y postgresql`$"):
        servers.Postgres(tmp_path).start()


def run_child(body: str) -> subprocess.Popen[str]:
    """A python process that installs cleanup, spawns `sleep`, prints its pid, then runs body."""
    script = (
        "import os, signal, sys, time\n"
        "from harness import procs\n"
        "procs.install_cleanup()\n"
        "m = procs.spawn(['sleep', '1000'], name='sleep')\n"
        "print(m.pid, procs.registry_path(), flush=True)\n"
        f"{body}\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def read_child(child: subprocess.Popen[str]) -> tuple[int, Path]:
    assert child.stdout is not None
    pid, path = child.stdout.readline().split()
    return int(pid), Path(path)


def test_normal_exit_stops_everything_and_removes_the_registry() -> None:
    child = run_child("pass")
    sleep_pid, registry = read_child(child)
    assert child.wait(10) == 0
    assert gone(sleep_pid)
    assert not registry.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_everything(sig: int) -> None:
    child = run_child("time.sleep(1000)")
    sleep_pid, registry = read_child(child)
    assert registry.read_text().split() == [str(sleep_pid)]
    child.send_signal(sig)
    assert child.wait(10) == 128 + sig
    assert gone(sleep_pid)
    assert not registry.exists()
