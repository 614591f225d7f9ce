"""Process hygiene: everything the suite starts dies with it.

Three layers, because each covers a hole in the others:
- each child leads its own process group, so stopping it also stops what it forked;
- each child gets PR_SET_PDEATHSIG=SIGKILL, so it dies with us even if we are SIGKILLed;
- a detached reaper (harness._reaper) SIGKILLs the recorded groups when we die, which
  also reaches grandchildren and children that changed credentials themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

import psutil

from harness.errors import HarnessError, HarnessTimeout, MissingBinary

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
_KILL_TIMEOUT = 5.0
_STOP_ALL_TIMEOUT = 10.0  # stop_all: every group's clean shutdown, together
_REAPER_MODULE = "harness._reaper"

# Resolved in the parent: the forked child must not load libraries before exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int

# Reentrant: the SIGTERM handler runs on the main thread and may interrupt a holder.
_lock = threading.RLock()
_registry: list[Managed] = []
_cleanup_installed = False
_reaper: subprocess.Popen[bytes] | None = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.01
) -> T:
    """Poll predicate until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise HarnessTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def registry_path() -> str:
    """File listing this process's live process groups, read by the reaper."""
    return os.path.join(tempfile.gettempdir(), f"celery-suite-{os.getpid()}.pgids")


def group_members(pgid: int) -> list[int]:
    """Pids in process group pgid that are still running (zombies excluded)."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def descendants(pid: int) -> list[psutil.Process]:
    """The processes pid forked, recursively, as they are now; [] once pid is gone."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _gone(proc: psutil.Process) -> bool:
    # A zombie counts as gone: it holds no memory and no sockets, and an orphan's is
    # reaped by whoever PID 1 is, maybe never in a container.
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_all(procs: list[psutil.Process], *, what: str) -> None:
    """SIGKILL each of procs (psutil checks each is still the process it listed) and
    wait until all are gone."""
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    wait_until(
        lambda: all(_gone(proc) for proc in procs),
        timeout=_KILL_TIMEOUT,
        what=f"{what} to exit after SIGKILL",
    )


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class Managed:
    """A child process leading its own process group."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: str | None) -> None:
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session makes the child its group's leader
        self.log_path = log_path
        self._stopped = False
        # What asks the group to end cleanly (a server may set its own: PostgreSQL's
        # SIGTERM is a smart shutdown, which waits for every session to close).
        self.stop_signal: int = signal.SIGTERM
        self._asked = False  # the stop signal was sent (terminate)

    def __repr__(self) -> str:
        return f"<Managed {self.name} pid={self.pid} alive={self.alive()}>"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the main process only; a no-op once it is reaped, so never a recycled pid."""
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None if the main process is still running after timeout."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        """Send the group its stop signal without waiting (``stop`` waits): lets
        several groups shut down at once."""
        if not self._stopped and (self.alive() or group_members(self.pgid)):
            _killpg(self.pgid, self.stop_signal)
            self._asked = True

    def kill_group(self) -> None:
        """SIGKILL the whole group and reap it; the process is done afterwards."""
        if not self._stopped:
            self._finish()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the group, give it timeout seconds, then SIGKILL what is left. Idempotent."""
        if self._stopped:
            return
        if self.alive() or group_members(self.pgid):
            if not self._asked:
                _killpg(self.pgid, self.stop_signal)
            self.wait(timeout)
        self._finish()

    def _finish(self) -> None:
        # Kill the group even if the leader exited: forked helpers may outlive it. Once
        # the leader is reaped and the group is empty the pgid may be recycled: skip it.
        if self.popen.returncode is None or group_members(self.pgid):
            _killpg(self.pgid, signal.SIGKILL)
        if self.wait(_KILL_TIMEOUT) is None:
            raise HarnessError(
                f"{self.name} (pid {self.pid}) survived SIGKILL for {_KILL_TIMEOUT}s; "
                f"it is stuck in the kernel, check `ps -o pid,stat,wchan -p {self.pid}`"
            )
        wait_until(
            lambda: not group_members(self.pgid),
            timeout=_KILL_TIMEOUT,
            what=f"process group {self.pgid} of {self.name} to exit after SIGKILL",
        )
        self._stopped = True
        _unregister(self)

    def log_tail(self, n: int = 20) -> str:
        """Last n lines of the process's log, or "" without a log."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                data = f.read()
        except OSError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-n:])


def _credentials(user: str) -> tuple[int, int, list[int]]:
    # Resolved in the parent: name lookups after fork can deadlock on libc locks.
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise HarnessError(
            f"user {user!r} does not exist; create it or run as another user"
        ) from None
    return pw.pw_uid, pw.pw_gid, os.getgrouplist(user, pw.pw_gid)


class _Forked:
    """The part of ``subprocess.Popen`` that ``Managed`` uses, for a process another
    process of ours forked (the worker fork server): it is not our child, so its end
    is seen by its pid going away (the fork server reaps it at once)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                    self.returncode = -1
            except psutil.NoSuchProcess:
                self.returncode = -1  # the real status went to the fork server
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode


def adopt(name: str, pid: int, log_path: str | None = None) -> Managed:
    """Manage a process the fork server started (its own group leader, tied to the
    fork server's life, which is tied to ours) like one we spawned."""
    managed = Managed(name, _Forked(pid), log_path)  # type: ignore[arg-type]
    with _lock:
        _registry.append(managed)
        if _cleanup_installed:
            _ensure_reaper()
    return managed


def spawn(
    argv: list[str],
    *,
    name: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    user: str | None = None,
    log_path: str | None = None,
) -> Managed:
    """Start argv in its own process group, tied to our life, and register it.

    env replaces the environment, as in subprocess. user is honoured when we are root.
    stdout and stderr are appended to log_path, or discarded.
    """
    if threading.current_thread() is not threading.main_thread():
        raise HarnessError(
            f"spawn({name!r}) was called off the main thread; call it from the main thread, "
            "because the parent-death signal fires when the spawning thread exits"
        )
    creds = _credentials(user) if user is not None and os.geteuid() == 0 else None
    parent = os.getpid()

    def preexec() -> None:
        # Credentials first: changing them clears the parent-death signal.
        if creds is not None:
            uid, gid, groups = creds
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
        if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        # The parent may have died before prctl: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115
    try:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=preexec,
        )
    except FileNotFoundError as e:
        raise MissingBinary(
            f"cannot start {name}: {argv[0]} not found; install it or put it on PATH"
        ) from e
    except subprocess.SubprocessError as e:
        raise HarnessError(
            f"cannot start {name} as user {user!r}: {e}; check that the user may run {argv[0]}"
        ) from e
    finally:
        if log is not None:
            log.close()
    managed = Managed(name, popen, log_path)
    with _lock:
        _registry.append(managed)
        if _cleanup_installed:
            _ensure_reaper()
    return managed


def _unregister(managed: Managed) -> None:
    with _lock:
        if managed in _registry:
            _registry.remove(managed)
        if _cleanup_installed and _reaper is not None:
            _write_registry()


def _write_registry() -> None:
    path = registry_path()
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(f"{m.pgid}\n" for m in _registry)
    os.replace(tmp, path)  # atomic: the reaper never reads half a file


def _ensure_reaper() -> None:
    global _reaper
    _write_registry()
    if _reaper is not None and _reaper.poll() is None:
        return
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    # Own session and no parent-death signal: it has to outlive us.
    _reaper = subprocess.Popen(
        [sys.executable, "-m", _REAPER_MODULE, str(os.getpid()), registry_path()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd="/",
        start_new_session=True,
    )


def _stop_reaper() -> None:
    global _reaper
    with contextlib.suppress(FileNotFoundError):
        os.unlink(registry_path())
    if _reaper is not None:
        # Removing the file alone would end it within a poll; no need to wait for that.
        _reaper.terminate()
        _reaper.wait(_KILL_TIMEOUT)
        _reaper = None


_dirs: list[str] = []


def remove_on_exit(path: str) -> None:
    """Delete ``path`` (a run's temp dir) in ``stop_all``, after its processes are gone."""
    _dirs.append(path)


def stop_all() -> None:
    """Stop every registered process, newest first, then remove run dirs. Idempotent."""
    with _lock:
        managed = list(reversed(_registry))
    errors: list[HarnessError] = []
    # Every group is asked to stop at once, then each gets what is left of one shared
    # wait: one by one, a ci run's exit on Ctrl-C took over 60 s on a loaded machine.
    for m in managed:
        with contextlib.suppress(OSError):
            m.terminate()
    deadline = time.monotonic() + _STOP_ALL_TIMEOUT
    for m in managed:
        try:
            m.stop(timeout=max(0.0, deadline - time.monotonic()))
        except HarnessError as e:
            errors.append(e)
    with _lock:
        _stop_reaper()
    while _dirs:
        shutil.rmtree(_dirs.pop(), ignore_errors=True)
    if errors:
        raise errors[0]


def _on_signal(signum: int, frame: FrameType | None) -> None:
    try:
        stop_all()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        # Not sys.exit: test runners catch SystemExit and would carry on.
        os._exit(128 + signum)


def install_cleanup() -> None:
    """Stop everything at exit, on SIGTERM and SIGHUP, and via the reaper if we are killed.

    Idempotent. SIGINT is left alone: KeyboardInterrupt unwinds into atexit.
    """
    global _cleanup_installed
    with _lock:
        if _cleanup_installed:
            return
        if threading.current_thread() is not threading.main_thread():
            raise HarnessError("install_cleanup() was called off the main thread; call it there")
        atexit.register(stop_all)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _on_signal)
        _cleanup_installed = True
        _ensure_reaper()


def _after_fork_in_child() -> None:
    # A forked child owns none of its parent's processes and must not stop them.
    global _cleanup_installed, _reaper, _lock
    _lock = threading.RLock()
    _registry.clear()
    _dirs.clear()
    _cleanup_installed = False
    _reaper = None


os.register_at_fork(after_in_child=_after_fork_in_child)
