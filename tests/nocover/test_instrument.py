"""The instrumented clients on real servers, with a fake controller.

Starts its own redis-server and memcached on free ports. A tiny controller answers
every parking message at once and records what it was told, so the tests can check
which points fire, in which order, under which names, without the real harness.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from typing import Any

import pytest
import redis as redis_lib
from django.core.cache import caches
from django.test import override_settings

from harness.cluster import Cluster
from tasks import points
from tasks.instrument import MAX_KEY
from tasks.instrument.memcache import make_memcache
from tasks.instrument.redis import InstrumentedRedis, make_redis
from tasks.locks.builtin import load_lock

# --- servers: the session cluster's own (the root conftest) -------------------------


@dataclass(frozen=True)
class Servers:
    redis_url: str
    memcached: str


@pytest.fixture(scope="module")
def servers(cluster: Cluster) -> Servers:
    return Servers(cluster.env["SUITE_CACHE_REDIS_URL"], cluster.env["SUITE_MEMCACHED"])


# --- a fake controller ---------------------------------------------------------------


class FakeController:
    """Answers every ``start`` / ``point`` with go and the current virtual clock."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.messages: list[dict[str, Any]] = []
        self.clock = 0.0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            for line in reader:
                msg = json.loads(line)
                with self._lock:
                    self.messages.append(msg)
                    clock = self.clock
                if msg["t"] in ("start", "point"):
                    conn.sendall(json.dumps({"go": True, "clock": clock}).encode() + b"\n")

    def points(self) -> list[str]:
        with self._lock:
            return [m["p"] for m in self.messages if m["t"] == "point"]

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self.server.close()
        for conn in self._conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def fake_controller(cluster: Cluster) -> Iterator[FakeController]:
    # The session cluster first: its start sets SUITE_CONTROL to its own controller,
    # and started after this patch (which xdist's test order can make the case) it
    # took the executions here to a controller that never answers them: a hang.
    ctl = FakeController()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUITE_CONTROL", ctl.address)
        # tasks.points caches one channel per thread; start and end without one so no
        # other module's controller is used, nor ours left behind.
        vars(points._local).pop("channel", None)
        try:
            yield ctl
        finally:
            vars(points._local).pop("channel", None)
            ctl.close()


@pytest.fixture
def controller(fake_controller: FakeController) -> FakeController:
    fake_controller.reset()
    return fake_controller


# --- clients -------------------------------------------------------------------------


@pytest.fixture
def r(servers: Servers) -> InstrumentedRedis:
    client = make_redis(servers.redis_url)
    client.flushdb()
    return client


@pytest.fixture
def mc(servers: Servers) -> Any:
    client = make_memcache(servers.memcached)
    client.flush_all()
    return client


@pytest.fixture
def django_caches(servers: Servers) -> Iterator[None]:
    location = f"test-{uuid.uuid4().hex}"  # LocMem entries live in a module global
    with override_settings(
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
            "locmem": {"BACKEND": "tasks.instrument.caches.LocMemCache", "LOCATION": location},
            "redis": {
                "BACKEND": "tasks.instrument.caches.RedisCache",
                "LOCATION": servers.redis_url,
            },
            "memcached": {
                "BACKEND": "tasks.instrument.caches.PyMemcacheCache",
                "LOCATION": servers.memcached,
            },
        }
    ):
        yield


# --- (1) outside an execution the clients are ordinary clients ------------------------


def test_redis_works_outside_an_execution(r: InstrumentedRedis, controller: FakeController) -> None:
    assert r.set("k", "v") and r.get("k") == b"v"
    pipe = r.pipeline()
    pipe.incr("n")
    pipe.incr("n")
    pipe.expire("n", 100)
    assert pipe.execute() == [1, 2, True]
    script = r.register_script("return redis.call('get', KEYS[1])")
    assert script(keys=["k"]) == b"v"
    assert isinstance(r.pipeline(), redis_lib.client.Pipeline)
    assert controller.points() == []


def test_memcache_works_outside_an_execution(mc: Any, controller: FakeController) -> None:
    assert mc.add("k", "v", expire=100) is True
    assert mc.add("k", "w", expire=100) is False  # default_noreply=False: real answers
    assert mc.get("k") == "v"  # pickle_serde: str round-trips as str
    value, cas = mc.gets("k")
    assert value == "v"
    assert mc.cas("k", "w", cas) is True
    assert mc.cas("k", "x", cas) is False
    assert mc.touch("k", 100) is True
    assert mc.set("n", 1) and mc.incr("n", 2) == 3 and mc.decr("n", 1) == 2
    assert mc.delete("k") is True and mc.get("k") is None
    assert controller.points() == []


def test_memcache_client_is_thread_safe(mc: Any) -> None:
    # resources.memcache is shared by the threads of a threads-pool worker.
    errors: list[str] = []

    def work(n: int) -> None:
        for i in range(200):
            key, value = f"t{n}:{i}", f"v{n}:{i}"
            if not mc.add(key, value, expire=100) or mc.get(key) != value:
                errors.append(key)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_django_caches_work_outside_an_execution(
    django_caches: None, controller: FakeController
) -> None:
    for alias in ("locmem", "redis", "memcached"):
        cache = caches[alias]
        assert cache.add("k", {"v": 1}, 100) is True
        assert cache.add("k", {"v": 2}, 100) is False
        assert cache.get("k") == {"v": 1}
        assert cache.delete("k") is True
        assert cache.get("k") is None
    assert controller.points() == []


# --- (2) inside an execution every command is a point, in order ----------------------


def test_redis_points(r: InstrumentedRedis, controller: FakeController) -> None:
    getter = r.register_script("return redis.call('get', KEYS[1])")
    getter(keys=["x"])  # outside: loads the script, so EVALSHA succeeds at once below
    long_key = "invoice:" + "9" * 100
    with points.execution("t1", "x"):
        r.set("invoice:o1", "1", nx=True, px=5000)
        r.get("invoice:o1")
        r.get(long_key)
        r.delete("a", "b", "c")
        pipe = r.pipeline()
        pipe.set("invoice:o1", "2")
        pipe.expire("invoice:o1", 10)
        pipe.execute()
        getter(keys=["invoice:o1"])
        r.script_flush()
        getter(keys=["invoice:o1"])  # NoScriptError, SCRIPT LOAD, EVALSHA: one point
        r.script_load("return 1")  # asked for by the caller: a point of its own
        with r.pipeline() as watched:
            watched.watch("w")
            watched.get("w")
            watched.multi()
            watched.set("w", "1")
            watched.execute()
        r.pipeline().execute()  # empty: nothing is sent, no point
    assert controller.points() == [
        "redis SET invoice:o1",
        "redis GET invoice:o1",
        "redis GET " + long_key[: MAX_KEY - 3] + "...",
        "redis DEL a (+2)",
        "redis MULTI SET+EXPIRE invoice:o1",
        "redis EVALSHA invoice:o1",
        "redis SCRIPT FLUSH",
        "redis EVALSHA invoice:o1",
        "redis SCRIPT LOAD",
        "redis WATCH w",
        "redis GET w",
        "redis MULTI SET w",
    ]
    assert len(long_key[: MAX_KEY - 3] + "...") == MAX_KEY
    assert controller.messages[0]["t"] == "start"


def test_memcache_points(mc: Any, controller: FakeController) -> None:
    with points.execution("t1", "x"):
        mc.add("invoice:o1", "x", expire=10)
        mc.get("invoice:o1")
        _, cas = mc.gets("invoice:o1")
        mc.cas("invoice:o1", "y", cas)
        mc.touch("invoice:o1", 20)
        mc.set("n", 1)
        mc.incr("n", 2)
        mc.decr("n", 1)
        mc.get_many(["invoice:o1", "n"])
        mc.delete("invoice:o1")
    assert controller.points() == [
        "memcached add invoice:o1",
        "memcached get invoice:o1",
        "memcached gets invoice:o1",
        "memcached cas invoice:o1",
        "memcached touch invoice:o1",
        "memcached set n",
        "memcached incr n",
        "memcached decr n",
        "memcached get invoice:o1 (+1)",
        "memcached delete invoice:o1",
    ]


def test_django_cache_points_show_user_keys(
    django_caches: None, controller: FakeController
) -> None:
    with points.execution("t1", "x"):
        for alias in ("redis", "memcached", "locmem"):
            cache = caches[alias]
            cache.add("invoice:o1", "x", 10)
            cache.get("invoice:o1")
            cache.delete("invoice:o1")
    assert controller.points() == [
        "redis SET invoice:o1",
        "redis GET invoice:o1",
        "redis DEL invoice:o1",
        "memcached add invoice:o1",
        "memcached get invoice:o1",
        "memcached delete invoice:o1",
        "locmem add invoice:o1",
        "locmem get invoice:o1",
        "locmem delete invoice:o1",
    ]


def test_suppressed_has_no_points(
    r: InstrumentedRedis, mc: Any, controller: FakeController
) -> None:
    with points.execution("t1", "x"):
        with points.suppressed():
            r.set("k", "v")
            mc.set("k", "v")
        r.get("k")
    assert controller.points() == ["redis GET k"]


def test_sql_points(controller: FakeController) -> None:
    from django.db import connection

    from tasks.instrument import sql

    sql.install()
    sql.install()  # idempotent
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS suite_cache (k text)")
        cursor.execute("DELETE FROM suite_cache")
    assert connection.execute_wrappers.count(sql._wrapper) == 1
    with points.execution("t1", "x"), connection.cursor() as cursor:
        cursor.execute('INSERT INTO "suite_cache" (k) VALUES (%s)', ["a"])
        cursor.executemany("INSERT INTO suite_cache (k) VALUES (%s)", [["b"], ["c"]])
        cursor.execute("SELECT COUNT(*) FROM suite_cache")
        assert cursor.fetchone() == (3,)
        cursor.execute("UPDATE suite_cache SET k = %s WHERE k = %s", ["z", "a"])
        cursor.execute("DELETE FROM suite_cache")
    assert controller.points() == [
        "sql INSERT suite_cache",
        "sql INSERT suite_cache",
        "sql SELECT suite_cache",
        "sql UPDATE suite_cache",
        "sql DELETE suite_cache",
    ]


# --- (3) locks exclude each other in one process --------------------------------------


class Resources:
    def __init__(self, r: InstrumentedRedis, mc: Any) -> None:
        self.redis, self.memcache = r, mc

    def cache(self, alias: str) -> Any:
        return caches[alias]

    @staticmethod
    def clock() -> float:
        return points.clock()


@pytest.fixture
def resources(r: InstrumentedRedis, mc: Any, django_caches: None) -> Resources:
    return Resources(r, mc)


LOCKS = [
    "cookbook-redis",
    "cookbook-locmem",
    "cookbook-memcached",
    "redis-py-lock",
    "examples.locks.cookbook_locmem:make_lock",
    "examples.locks.memcached_get_set:make_lock",
    "examples.locks.memcached_add_cas:make_lock",
    "examples.locks.redis_setnx_expire:make_lock",
    "examples.locks.redis_set_nx_px:make_lock",
    "examples.locks.redis_py_lock:make_lock",
]


@pytest.mark.parametrize("spec", LOCKS)
def test_lock_excludes_then_releases(spec: str, resources: Resources) -> None:
    lock = load_lock(spec)(resources)
    with lock("lock:o1", 30) as first:
        assert first
        with lock("lock:o1", 30) as second:
            assert not second
        with lock("lock:o2", 30) as other_key:
            assert other_key
    with lock("lock:o1", 30) as again:
        assert again


@pytest.mark.parametrize("spec", LOCKS)
def test_lock_excludes_inside_an_execution(
    spec: str, resources: Resources, controller: FakeController
) -> None:
    lock = load_lock(spec)(resources)
    with points.execution("t1", "x"):
        with lock("lock:o1", 30) as first, lock("lock:o1", 30) as second:
            assert first and not second
        with lock("lock:o1", 30) as again:
            assert again
    assert controller.points(), "a lock over a shared store issues points"


@pytest.mark.parametrize("spec", ["cookbook-locmem", "examples.locks.cookbook_locmem:make_lock"])
def test_locmem_lock_expires_with_virtual_time(
    spec: str, resources: Resources, controller: FakeController
) -> None:
    lock = load_lock(spec)(resources)
    with points.execution("t1", "x"), ExitStack() as stack:
        assert stack.enter_context(lock("lock:o1", 5))
        assert not stack.enter_context(lock("lock:o1", 5))
        # An expiry move: the next point's reply carries the advanced clock. Take it
        # before b reads its clock, as a task started after the move would (a move
        # while b is parked at its ``add`` shortens b's lease instead: the cookbook
        # reads the clock before ``add``).
        controller.clock = points.offset() + 10
        points.point("expire")
        holder_b = lock("lock:o1", 5)
        assert holder_b.__enter__()  # the first lease ran out in virtual time
        stack.close()  # the first holder leaves after its lease: no delete (cookbook)
        assert caches["locmem"].get("lock:o1") is not None  # b still holds it
        holder_b.__exit__(None, None, None)
        assert caches["locmem"].get("lock:o1") is None
    names = controller.points()
    assert names.count("locmem delete lock:o1") == 1, names


def _take_over(resources: Resources, spec: str) -> None:
    """Simulate: our lease expired and another task took the lock."""
    if "memcached" in spec:
        resources.memcache.delete("lock:o1")
        assert resources.memcache.add("lock:o1", "theirs", expire=30)
    else:
        resources.redis.set("lock:o1", "theirs")


def _holder(resources: Resources, spec: str) -> Any:
    if "memcached" in spec:
        return resources.memcache.get("lock:o1")
    value = resources.redis.get("lock:o1")
    return value.decode() if isinstance(value, bytes) else value


@pytest.mark.parametrize(
    "spec",
    ["examples.locks.redis_set_nx_px:make_lock", "examples.locks.memcached_add_cas:make_lock"],
)
def test_sound_release_spares_the_next_holder(spec: str, resources: Resources) -> None:
    lock = load_lock(spec)(resources)
    with lock("lock:o1", 30) as held:
        assert held
        _take_over(resources, spec)
    assert _holder(resources, spec) == "theirs"


@pytest.mark.parametrize(
    "spec",
    ["examples.locks.redis_setnx_expire:make_lock", "examples.locks.memcached_get_set:make_lock"],
)
def test_broken_release_deletes_the_next_holder(spec: str, resources: Resources) -> None:
    lock = load_lock(spec)(resources)
    with lock("lock:o1", 30) as held:
        assert held
        _take_over(resources, spec)
    assert _holder(resources, spec) is None


@pytest.mark.parametrize("spec", ["redis-py-lock", "examples.locks.redis_py_lock:make_lock"])
def test_redis_py_lock_reports_a_lost_lease(spec: str, resources: Resources) -> None:
    lock = load_lock(spec)(resources)
    with pytest.raises(redis_lib.exceptions.LockNotOwnedError), lock("lock:o1", 30) as held:
        assert held
        _take_over(resources, spec)
    assert _holder(resources, spec) == "theirs"


def test_leases_are_set(resources: Resources) -> None:
    for spec in (
        "examples.locks.redis_setnx_expire:make_lock",
        "examples.locks.redis_set_nx_px:make_lock",
        "redis-py-lock",
        "cookbook-redis",
    ):
        with load_lock(spec)(resources)("lock:ttl", 30):
            assert 0 < resources.redis.pttl(_django_key(spec, "lock:ttl")) <= 30_000, spec


def _django_key(spec: str, key: str) -> str:
    return f":1:{key}" if spec.startswith("cookbook") else key
