"""Servers the harness starts itself on free loopback ports.

Each server is a process managed by harness.procs, so it dies with the suite. restart()
is a fault: SIGKILL the server and start it again on the same port and data dir.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.errors import HarnessError, HarnessTimeout, MissingBinary
from harness.procs import Managed, descendants, free_port, kill_all, spawn, wait_until

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
PG_START_TIMEOUT = 30.0
INITDB_TIMEOUT = 60.0
PG_ROOT = "/usr/lib/postgresql"
_SUN_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, minus the terminating NUL


def _which(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise MissingBinary(
            f"{binary} not found on PATH: install it with `apt-get install -y {package}`"
        )
    return path


def _unprivileged_user(*candidates: str) -> str | None:
    """The first existing user among candidates when we are root (servers refuse root)."""
    if os.geteuid() != 0:
        return None
    for name in candidates:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return "nobody"


class _Server:
    name: str
    start_timeout = START_TIMEOUT
    stop_signal = signal.SIGTERM

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.port = free_port()
        self._proc: Managed | None = None

    @property
    def pid(self) -> int | None:
        """Pid of the running server (it leads its own process group), or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """True once the server answers on self.port."""
        raise NotImplementedError

    def _user(self) -> str | None:
        return None

    def _prepare(self) -> None:
        """Runs before the server process starts."""

    def _after_ready(self) -> None:
        """Runs once the server answers."""

    def start(self) -> Self:
        if self._proc is not None:
            if self._proc.alive():
                return self
            self._proc.kill_group()  # it died on its own: reap its leftovers
            self._proc = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            argv = self._argv()
            self._prepare()
            self._proc = spawn(
                argv,
                name=self.name,
                user=self._user(),
                env=self._env(),
                cwd=str(self.run_dir),
                log_path=str(self.log_path),
            )
            self._proc.stop_signal = self.stop_signal  # stop_all asks it the same way
            self._await_ready(self._proc)
            self._after_ready()
        except BaseException:
            proc, self._proc = self._proc, None
            self._abandon(proc)
            raise
        return self

    def _env(self) -> dict[str, str] | None:
        """The server's environment; None: ours."""
        return None

    def _abandon(self, proc: Managed | None) -> None:
        """A start failed: leave nothing of it running."""
        if proc is not None:
            self._kill(proc)

    def _kill(self, proc: Managed) -> None:
        """SIGKILL the server and everything it started; return once they are gone."""
        proc.kill_group()

    def _await_ready(self, proc: Managed) -> None:
        def ready() -> bool:
            if not proc.alive():
                raise HarnessError(
                    f"{self.name} exited with code {proc.popen.returncode} while starting on "
                    f"port {self.port}; fix the cause shown in its log:\n{proc.log_tail()}"
                )
            return self._probe()

        try:
            wait_until(
                ready,
                timeout=self.start_timeout,
                what=f"{self.name} on port {self.port}",
                interval=0.02,
            )
        except HarnessTimeout as e:
            raise HarnessTimeout(f"{e}; its log ends with:\n{proc.log_tail()}") from None

    def stop(self) -> None:
        """Shut the server down cleanly if it lets us, else kill it. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.alive():
            proc.signal(self.stop_signal)
            proc.wait(STOP_TIMEOUT)
        proc.stop()  # whatever is left of the group

    def restart(self) -> None:
        """Fault: SIGKILL the server's whole group, then start again on the same port."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._kill(proc)
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} port={self.port} pid={self.pid}>"


class RedisServer(_Server):
    name = "redis-server"

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def _argv(self) -> list[str]:
        return [
            _which("redis-server", "redis-server"),
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.run_dir),
            "--daemonize", "no",
        ]  # fmt: skip

    def _probe(self) -> bool:
        # No retries: redis-py's default backoff would stall the readiness loop for seconds.
        client = redis.Redis(
            host=HOST,
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()


class Memcached(_Server):
    name = "memcached"
    # It keeps nothing worth a clean exit and only notices SIGTERM on its next 1 s tick.
    stop_signal = signal.SIGKILL

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _argv(self) -> list[str]:
        return [
            _which("memcached", "memcached"),
            "-l", HOST,
            "-p", str(self.port),
            "-U", "0",
            "-m", "64",
        ]  # fmt: skip

    def _user(self) -> str | None:
        # Started as that user rather than with `-u`: memcached's own setuid would
        # clear the parent-death signal that spawn sets.
        return _unprivileged_user("memcache", "nobody")

    def _probe(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"version\r\n")
                return s.recv(64).startswith(b"VERSION")
        except OSError:
            return False


def _pg_version_key(bindir: str) -> tuple[int, ...]:
    version = Path(bindir).parent.name
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def _pg_binaries() -> tuple[str, str]:
    """Paths of initdb and postgres: from PATH, else the newest Debian-style install."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres:
        return initdb, postgres
    bindirs = sorted(glob.glob(os.path.join(PG_ROOT, "*", "bin")), key=_pg_version_key)
    for bindir in reversed(bindirs):
        initdb, postgres = os.path.join(bindir, "initdb"), os.path.join(bindir, "postgres")
        if os.access(initdb, os.X_OK) and os.access(postgres, os.X_OK):
            return initdb, postgres
    raise MissingBinary(
        f"PostgreSQL (initdb and postgres) not found on PATH or under {PG_ROOT}/*/bin: "
        "install it with `apt-get install -y postgresql`"
    )


def _grant_search(path: Path, user: str) -> None:
    """Let user reach path: add the others' search bit where it cannot pass.

    Only directories inside the temp dir are changed (pytest's are 0700); anything else
    is left to the caller.
    """
    pw = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, pw.pw_gid))
    tmp = Path(tempfile.gettempdir()).resolve()
    for d in (path, *path.parents):
        st = d.stat()
        if st.st_uid == pw.pw_uid:
            searchable = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            searchable = st.st_mode & stat.S_IXGRP
        else:
            searchable = st.st_mode & stat.S_IXOTH
        if searchable:
            continue
        if d != tmp and d.is_relative_to(tmp):
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        else:
            raise HarnessError(
                f"PostgreSQL runs as user {user!r}, which cannot enter {d}; "
                f"use a run_dir under {tmp} or run `chmod o+x {d}`"
            )


class Postgres(_Server):
    name = "postgres"
    start_timeout = PG_START_TIMEOUT
    stop_signal = signal.SIGINT  # fast shutdown: ends sessions instead of waiting for them

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        super().__init__(run_dir)
        self.data_dir = self.run_dir / "pg"
        self.socket_dir = self.run_dir / "pgsock"

    def dsn(self, dbname: str = "suite") -> str:
        return f"postgresql://suite@{HOST}:{self.port}/{dbname}"

    def _user(self) -> str | None:
        # initdb and postgres refuse to run as root.
        return _unprivileged_user("postgres", "nobody")

    def _argv(self) -> list[str]:
        _, postgres = _pg_binaries()
        socket_dir = str(self.socket_dir)
        if len(f"{socket_dir}/.s.PGSQL.{self.port}") > _SUN_PATH_MAX:
            socket_dir = ""  # too long for a Unix socket; clients use TCP anyway
        return [
            postgres,
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", socket_dir,
            "-c", f"listen_addresses={HOST}",
            # fsync=off survives a killed server (the OS has the writes); synchronous_commit
            # is left on because with it off restart() would lose acknowledged commits.
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def _prepare(self) -> None:
        user = self._user()
        for d in (self.data_dir, self.socket_dir):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o700)  # postgres rejects a data dir others can read
            if user is not None:
                pw = pwd.getpwnam(user)
                os.chown(d, pw.pw_uid, pw.pw_gid)
        if user is not None:
            _grant_search(self.run_dir, user)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)

    def _initdb(self, user: str | None) -> None:
        initdb, _ = _pg_binaries()
        argv = [
            initdb,
            "-D", str(self.data_dir),
            "-A", "trust",
            "-U", "suite",
            "--no-sync",
            "-E", "UTF8",
            "--locale=C",
        ]  # fmt: skip
        proc = spawn(
            argv,
            name="initdb",
            user=user,
            cwd=str(self.run_dir),
            log_path=str(self.run_dir / "initdb.log"),
        )
        try:
            code = proc.wait(INITDB_TIMEOUT)
            if code is None:
                raise HarnessTimeout(
                    f"timed out after {INITDB_TIMEOUT}s waiting for initdb in {self.data_dir}; "
                    f"its log ends with:\n{proc.log_tail()}"
                )
            if code != 0:
                raise HarnessError(
                    f"initdb failed with code {code} in {self.data_dir}; "
                    f"fix the cause shown in its log:\n{proc.log_tail()}"
                )
        finally:
            proc.stop()

    def _kill(self, proc: Managed) -> None:
        # Each child of the postmaster leads its own session (InitPostmasterChild calls
        # setsid), so killing the postmaster's group leaves them to notice its death on
        # their own; one still attached to the shared memory makes the next postmaster
        # refuse to start ("pre-existing shared memory block is still in use"). Seen in a
        # clean-clone CI run of test_servers.py::test_postgres. The postmaster is stopped
        # first so that it forks nothing after its children are listed.
        proc.signal(signal.SIGSTOP)
        children = descendants(proc.pid)
        proc.kill_group()
        kill_all(children, what=f"the children of {self.name} (pid {proc.pid})")

    def _probe(self) -> bool:
        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _after_ready(self) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'suite'").fetchone()
            if found is None:
                conn.execute("CREATE DATABASE suite")
