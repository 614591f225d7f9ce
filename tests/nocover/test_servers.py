"""The harness's own servers: they answer, survive restart on the same port, leave nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from pymemcache.client.base import Client

from harness.errors import HarnessError
from harness.procs import group_members, wait_until
from harness.servers import Memcached, Postgres, RedisServer

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """Exited, possibly as a zombie nobody reaps yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_stopped(pid: int | None) -> None:
    assert pid is not None
    assert gone(pid)
    assert group_members(pid) == []


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def memcached(tmp_path: Path) -> Iterator[Memcached]:
    with Memcached(tmp_path) as server:
        yield server


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Postgres]:
    with Postgres(tmp_path) as server:
        yield server


def test_redis(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url(3))
    client.set("k", "v")
    assert client.get("k") == b"v"
    port, pid = redis_server.port, redis_server.pid
    redis_server.restart()
    assert redis_server.port == port
    assert gone(pid or 0)
    assert client.get("k") is None  # nothing is persisted
    client.set("k", "w")
    assert client.get("k") == b"w"
    client.close()
    pid = redis_server.pid
    redis_server.stop()
    assert_stopped(pid)
    redis_server.stop()


def test_memcached(memcached: Memcached) -> None:
    host, port = memcached.address.split(":")
    client = Client((host, int(port)), connect_timeout=2, timeout=2)
    client.set("k", b"v")
    assert client.get("k") == b"v"
    memcached.restart()
    assert memcached.address == f"{host}:{port}"
    client.close()
    client.set("k", b"w")
    assert client.get("k") == b"w"
    client.close()
    pid = memcached.pid
    memcached.stop()
    assert_stopped(pid)


def test_postgres(postgres: Postgres) -> None:
    assert postgres.dsn() == f"postgresql://suite@127.0.0.1:{postgres.port}/suite"
    with psycopg.connect(postgres.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("CREATE TABLE t (x int)")
    port = postgres.port
    postgres.restart()
    assert postgres.port == port
    with psycopg.connect(postgres.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("SELECT count(*) FROM t")  # same data dir
    pid = postgres.pid
    postgres.stop()
    assert_stopped(pid)


def test_postgres_restart_kills_the_children_the_postmaster_leaves(postgres: Postgres) -> None:
    # Each postmaster child leads its own session, so killing the postmaster's group
    # misses them; a stopped one cannot notice the death and keeps the shared memory,
    # and the next postmaster refuses to start. A child stopped here is the slow case
    # made certain (a clean-clone CI run met it once by chance).
    assert postgres.pid is not None
    postmaster = psutil.Process(postgres.pid)

    def checkpointer() -> psutil.Process | None:
        # The children come and go while it starts (a startup process, the probe's
        # backend); the checkpointer stays for the postmaster's life.
        for child in postmaster.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "checkpointer" in " ".join(child.cmdline()):
                    return child
        return None

    child = wait_until(checkpointer, timeout=10, what="the postmaster's checkpointer")
    assert child is not None
    assert os.getpgid(child.pid) != postgres.pid  # what makes killpg miss it
    child.send_signal(signal.SIGSTOP)
    postgres.restart()
    assert gone(child.pid)
    with psycopg.connect(postgres.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_that_dies_while_starting_shows_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RedisServer(tmp_path)
        server.port = taken.getsockname()[1]
        with pytest.raises(HarnessError, match=r"(?s)exited with code 1 .*in use"):
            server.start()
    assert server.pid is None


def test_reaper_kills_the_groups_of_a_sigkilled_parent() -> None:
    script = (
        "import time\n"
        "from harness import procs\n"
        "procs.install_cleanup()\n"
        "m = procs.spawn(['sleep', '1000'], name='sleep')\n"
        "print(m.pid, procs.registry_path(), flush=True)\n"
        "time.sleep(1000)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    pid, path = child.stdout.readline().split()
    sleep_pid, registry = int(pid), Path(path)
    assert not gone(sleep_pid)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(5)
    child.stdout.close()
    wait_until(lambda: gone(sleep_pid), timeout=5, what=f"sleep {sleep_pid} to be reaped")
    wait_until(lambda: not registry.exists(), timeout=5, what="the reaper to remove its file")
