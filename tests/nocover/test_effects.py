"""The example effects and the instrumented DB-API connection on a real PostgreSQL.

Starts its own PostgreSQL (``harness.servers.Postgres``) for the module and points
``SUITE_PG_DSN`` at it. Outside a controlled execution scheduling points do nothing,
so the effects run as plain code; to see the points, and to interleave two executions
deterministically, the tests replace ``tasks.instrument.dbapi.point`` with a recorder
or a callback.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from harness.servers import Postgres
from tasks import points
from tasks.effects import store
from tasks.effects.builtin import BUILTIN_EFFECTS, load_effect
from tasks.instrument import dbapi
from tasks.instrument.dbapi import InstrumentedConnection, InstrumentedCursor
from tasks.resources import Resources

pytestmark = pytest.mark.servers

# What each effect leaves when one order runs twice: one after the other, and with the
# second run entirely inside the first's last step before its INSERT.
SEQUENTIAL = {"insert-always": 2, "check-then-insert": 1, "insert-on-conflict": 1, "upsert": 1}
INTERLEAVED = {"insert-always": 2, "check-then-insert": 2, "insert-on-conflict": 1, "upsert": 1}


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Postgres(tmp_path_factory.mktemp("effects")) as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            store.create_table(conn)
            store.create_table(conn)  # idempotent
        # A statement waiting on a lock fails after 10 s instead of hanging the test.
        yield pg.dsn() + "?options=-c%20lock_timeout%3D10s"


@pytest.fixture(scope="module")
def admin(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """The harness's side: a plain autocommit connection, no points."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def env(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUITE_PG_DSN", dsn)


@pytest.fixture
def new_resources(env: None) -> Iterator[Callable[[], Resources]]:
    """Makes Resources as a worker process does; closes their connections after."""
    made: list[Resources] = []

    def make() -> Resources:
        made.append(Resources())
        return made[-1]

    yield make
    for res in made:
        conn = vars(res._db_threads).get("conn")
        if conn is not None:
            conn.close()


@pytest.fixture
def order() -> str:
    return f"o-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the points the instrumented connection takes, in order."""
    names: list[str] = []
    monkeypatch.setattr(dbapi, "point", names.append)
    return names


def rows(admin: psycopg.Connection[Any], order: str) -> list[tuple[Any, ...]]:
    return admin.execute(
        "SELECT order_id, execution, idempotency_key FROM invoices WHERE order_id = %s ORDER BY id",
        (order,),
    ).fetchall()


# --- the store ------------------------------------------------------------------------


def test_store_counts_and_clears(admin: psycopg.Connection[Any], order: str) -> None:
    assert store.count(admin, order) == 0
    admin.execute("INSERT INTO invoices (order_id) VALUES (%s), (%s)", (order, order))
    assert store.count(admin, order) == 2
    # NULL keys never conflict; equal keys do.
    keyed = "INSERT INTO invoices (order_id, idempotency_key) VALUES (%s, %s)"
    admin.execute(keyed, (order, order))
    with pytest.raises(psycopg.errors.UniqueViolation):
        admin.execute(keyed, (order, order))
    assert store.count(admin, order) == 3
    store.clear(admin)
    assert store.count(admin, order) == 0


# --- the example effects ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SEQUENTIAL))
def test_effect_run_twice_in_sequence(
    name: str,
    new_resources: Callable[[], Resources],
    admin: psycopg.Connection[Any],
    order: str,
) -> None:
    effect = load_effect(name)(new_resources())
    effect(order)
    assert store.count(admin, order) == 1
    effect(order)
    assert store.count(admin, order) == SEQUENTIAL[name]
    keyed = name in ("insert-on-conflict", "upsert")
    assert rows(admin, order)[0] == (order, None, order if keyed else None)


@pytest.mark.parametrize(
    ("name", "first", "second"),
    [
        ("insert-always", ["sql INSERT invoices", "sql COMMIT"], None),
        (
            "check-then-insert",
            ["sql SELECT invoices", "sql INSERT invoices", "sql COMMIT"],
            ["sql SELECT invoices", "sql COMMIT"],
        ),
        ("insert-on-conflict", ["sql INSERT invoices"], None),
        ("upsert", ["sql INSERT invoices"], None),
    ],
)
def test_effect_points(
    name: str,
    first: list[str],
    second: list[str] | None,
    new_resources: Callable[[], Resources],
    recorded: list[str],
    order: str,
) -> None:
    effect = load_effect(name)(new_resources())
    effect(order)
    assert recorded == first
    recorded.clear()
    effect(order)
    assert recorded == (second or first)


@pytest.mark.parametrize("name", sorted(INTERLEAVED))
def test_effect_with_a_second_run_before_the_first_inserts(
    name: str,
    new_resources: Callable[[], Resources],
    admin: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    order: str,
) -> None:
    """Redelivery race: when the first execution reaches ``sql INSERT invoices``, a
    second execution of the same order (another worker: its own Resources, so its own
    connection) runs to completion; then the first goes on."""
    make = load_effect(name)
    first, second = make(new_resources()), make(new_resources())
    trace: list[str] = []
    who = ["first"]

    def point(name: str) -> None:
        trace.append(f"{who[-1]}: {name}")
        if name == "sql INSERT invoices" and who == ["first"]:
            who.append("second")
            second(order)
            who.pop()

    monkeypatch.setattr(dbapi, "point", point)
    first(order)
    assert store.count(admin, order) == INTERLEAVED[name], trace
    if name == "check-then-insert":
        assert trace == [
            "first: sql SELECT invoices",
            "first: sql INSERT invoices",
            "second: sql SELECT invoices",
            "second: sql INSERT invoices",
            "second: sql COMMIT",
            "first: sql COMMIT",
        ]


def test_check_then_insert_race_at_the_sql_level(
    new_resources: Callable[[], Resources], admin: psycopg.Connection[Any], order: str
) -> None:
    """The same race, statement by statement, on two instrumented connections."""
    a, b = new_resources().db(), new_resources().db()
    a.autocommit = b.autocommit = False
    count = "SELECT count(*) FROM invoices WHERE order_id = %s"
    insert = "INSERT INTO invoices (order_id) VALUES (%s)"
    assert a.execute(count, (order,)).fetchone() == (0,)
    assert b.execute(count, (order,)).fetchone() == (0,)
    a.execute(insert, (order,))
    b.execute(insert, (order,))  # READ COMMITTED, no unique key: nothing waits
    a.commit()
    b.commit()
    assert store.count(admin, order) == 2


def test_open_transaction_and_a_conflicting_key_block(
    new_resources: Callable[[], Resources], admin: psycopg.Connection[Any], order: str
) -> None:
    """The contract's warning: a transaction kept open across a point after writing a
    unique key makes a second execution's INSERT of that key wait (here until
    lock_timeout); the harness would see the parked first one never commit."""
    a, b = new_resources().db(), new_resources().db()
    a.autocommit, b.autocommit = False, True
    b.execute("SET lock_timeout = '200ms'")
    insert = (
        "INSERT INTO invoices (order_id, idempotency_key) VALUES (%s, %s) ON CONFLICT DO NOTHING"
    )
    a.execute(insert, (order, order))
    with pytest.raises(psycopg.errors.LockNotAvailable):
        b.execute(insert, (order, order))
    a.commit()
    b.execute(insert, (order, order))  # committed: now it is a plain conflict
    assert store.count(admin, order) == 1


def test_effect_inside_an_execution(
    new_resources: Callable[[], Resources],
    admin: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    order: str,
) -> None:
    """With a controller (a minimal fake that lets everything go) the real ``point``
    parks at each statement, and ``current()`` names the execution."""
    messages: list[dict[str, Any]] = []
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as reader:
            for line in reader:
                msg = json.loads(line)
                messages.append(msg)
                if msg["t"] in ("start", "point"):
                    conn.sendall(b'{"go": true, "clock": 0}\n')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("SUITE_CONTROL", f"127.0.0.1:{server.getsockname()[1]}")
    vars(points._local).pop("channel", None)  # no other test's controller
    try:
        effect = load_effect("check-then-insert")(new_resources())
        with points.execution("t1", "deliver"):
            effect(order)
    finally:
        channel = vars(points._local).pop("channel", None)
        if channel is not None:
            channel.sock.shutdown(socket.SHUT_RDWR)  # EOF for the server, now
            channel.reader.close()
            channel.sock.close()
        thread.join(5)
        server.close()
    assert not thread.is_alive()
    assert [m["p"] for m in messages if m["t"] == "point"] == [
        "sql SELECT invoices",
        "sql INSERT invoices",
        "sql COMMIT",
    ]
    assert [(m["t"], m.get("status")) for m in messages[-1:]] == [("end", "ok")]
    assert rows(admin, order) == [(order, "t1", None)]


# --- the instrumented connection -----------------------------------------------------


def test_connection_points_and_pass_through(
    new_resources: Callable[[], Resources], recorded: list[str], order: str
) -> None:
    conn = new_resources().db()
    assert isinstance(conn, InstrumentedConnection)
    assert conn.autocommit is False  # the DB-API default
    with conn.cursor() as cur:
        assert isinstance(cur, InstrumentedCursor) and cur.connection is conn
        cur.executemany("INSERT INTO invoices (order_id) VALUES (%s)", [(order,), (order,)])
        assert cur.rowcount == 2
        cur.execute("SELECT order_id FROM invoices WHERE order_id = %s", (order,))
        assert cur.fetchone() == (order,)
        assert cur.fetchall() == [(order,)]
        cur.execute("SELECT order_id FROM invoices WHERE order_id = %s", (order,))
        assert list(cur) == [(order,), (order,)]
    assert cur.closed
    conn.rollback()
    query = pgsql.SQL("SELECT count(*) FROM {} WHERE order_id = %s").format(
        pgsql.Identifier("invoices")
    )
    assert conn.execute(query, (order,)).fetchone() == (0,)
    conn.commit()
    conn.autocommit = True
    assert conn.autocommit is True and conn.raw.autocommit is True
    conn.execute(b"UPDATE invoices SET execution = 'x' WHERE order_id = %s", (order,))
    conn.execute("DELETE FROM invoices WHERE order_id = %s", (order,))
    conn.commit()  # nothing to commit: still a point
    assert recorded == [
        "sql INSERT invoices",
        "sql SELECT invoices",
        "sql SELECT invoices",
        "sql ROLLBACK",
        "sql SELECT invoices",
        "sql COMMIT",
        "sql UPDATE invoices",
        "sql DELETE invoices",
        "sql COMMIT",
    ]


def test_settings_go_to_the_wrapped_connection(new_resources: Callable[[], Resources]) -> None:
    conn = new_resources().db()
    conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    assert conn.raw.isolation_level == psycopg.IsolationLevel.SERIALIZABLE
    assert conn.execute("SHOW transaction_isolation").fetchone() == ("serializable",)
    conn.rollback()
    with pytest.raises(AttributeError):
        conn.no_such_setting = 1  # type: ignore[attr-defined]


def test_bypassing_apis_are_refused(new_resources: Callable[[], Resources]) -> None:
    conn = new_resources().db()
    with pytest.raises(AttributeError, match=r"transaction\(\).*bypass"):
        conn.transaction()
    with pytest.raises(AttributeError, match=r"pipeline\(\).*bypass"):
        conn.pipeline()
    with conn.cursor() as cur:
        with pytest.raises(AttributeError, match=r"copy\(\).*bypass"):
            cur.copy("COPY invoices FROM STDIN")
        with pytest.raises(AttributeError, match=r"stream\(\).*bypass"):
            cur.stream("SELECT 1")


def test_rollback_happens_even_when_its_point_raises(
    new_resources: Callable[[], Resources],
    admin: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    order: str,
) -> None:
    conn = new_resources().db()
    conn.execute("INSERT INTO invoices (order_id) VALUES (%s)", (order,))

    def stale(name: str) -> None:
        raise RuntimeError(f"stale at {name}")

    monkeypatch.setattr(dbapi, "point", stale)
    with pytest.raises(RuntimeError, match="stale at sql COMMIT"):
        conn.commit()
    assert conn.raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    with pytest.raises(RuntimeError, match="stale at sql ROLLBACK"):
        conn.rollback()
    assert conn.raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert store.count(admin, order) == 0


def test_one_connection_per_thread_and_a_new_one_after_close(
    new_resources: Callable[[], Resources],
) -> None:
    res = new_resources()
    conn = res.db()
    assert res.db() is conn
    other: list[InstrumentedConnection] = []
    thread = threading.Thread(target=lambda: other.append(res.db()))
    thread.start()
    thread.join()
    assert other[0] is not conn
    pids = {c.execute("SELECT pg_backend_pid()").fetchone() for c in (conn, other[0])}
    assert len(pids) == 2
    other[0].close()
    with conn:  # psycopg's context: commit, then close
        conn.execute("SELECT 1")
    assert conn.closed
    again = res.db()
    assert again is not conn and not again.closed


def test_end_db_transaction(
    new_resources: Callable[[], Resources], admin: psycopg.Connection[Any], order: str
) -> None:
    res = new_resources()
    assert res.end_db_transaction() is False  # no connection yet
    conn = res.db()
    conn.execute("INSERT INTO invoices (order_id) VALUES (%s)", (order,))
    assert res.end_db_transaction() is True
    assert res.end_db_transaction() is False
    assert store.count(admin, order) == 0
    conn.autocommit = True  # allowed again: no transaction open


def test_db_needs_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUITE_PG_DSN", raising=False)
    with pytest.raises(RuntimeError, match="SUITE_PG_DSN is not set"):
        Resources().db()


def test_every_builtin_is_tested() -> None:
    assert set(SEQUENTIAL) == set(INTERLEAVED) == set(BUILTIN_EFFECTS)
