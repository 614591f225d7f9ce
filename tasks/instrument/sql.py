"""A scheduling point before every SQL statement Django runs through a cursor.

Django applies ``connection.execute_wrappers`` to ``CursorWrapper.execute`` and
``executemany`` (django/db/backends/utils.py ``_execute_with_wrappers``), reading the
list at each call, so a wrapper appended to a connection covers every later
statement on it: DatabaseCache's SELECT / INSERT / UPDATE / DELETE
(django/core/cache/backends/db.py ``_base_set``) and savepoints of nested ``atomic``
blocks. Not covered, because they do not go through a cursor: BEGIN (psycopg /
sqlite3 start transactions implicitly when autocommit is off), COMMIT and ROLLBACK
(``connection.commit()`` calls the driver directly, django/db/backends/base/base.py
``_commit``), and the session set-up Django runs on connect
(``init_connection_state`` uses the raw driver connection before
``connection_created`` is sent, base.py ``connect``).

Connections are per thread (``django.db.connections`` is thread-local) and made
lazily, so the wrapper is attached from the ``connection_created`` signal, which
``connect()`` sends for every new database connection, including reconnects of the
same ``DatabaseWrapper`` (hence the duplicate check).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tasks.instrument import name
from tasks.points import point

_VERB = re.compile(r"\s*([A-Za-z]+)")
# The table after FROM / INTO / UPDATE, unquoting "x", `x` or [x] and schema.x.
_TABLE = re.compile(r"""\b(?:FROM|INTO|UPDATE)\s+[`"\[]?([\w$.]+)""", re.IGNORECASE)
_DISPATCH_UID = "tasks.instrument.sql.install"


def statement_point(sql: object) -> str:
    """``sql INSERT suite_cache_pg`` for ``INSERT INTO "suite_cache_pg" (...)``."""
    text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else str(sql)
    verb_match = _VERB.match(text)
    verb = verb_match.group(1).upper() if verb_match else "?"
    table_match = _TABLE.search(text)
    table = table_match.group(1).strip('"`]') if table_match else None
    return name("sql", verb, table)


def _wrapper(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    name = statement_point(sql)
    if not _inside_sqlite_transaction(context.get("connection"), name):
        point(name)
    return execute(sql, params, many, context)


def _inside_sqlite_transaction(connection: Any, name: str) -> bool:
    """A SQLite transaction is one step: a point before its BEGIN, none inside.

    A SQLite transaction holds a file lock from its first read; another connection
    that needs the lock waits (busy timeout), in reality for microseconds until the
    holder commits. Parking the holder inside would turn every such wait into
    "database is locked" (seen in the first ci run: a release's DELETE and an invoice
    INSERT failed behind a parked ``add``), which no real run produces without a
    pause. PostgreSQL keeps its points: its waits are row locks and its ``add``
    races are real.
    """
    return (
        getattr(connection, "vendor", "") == "sqlite"
        and bool(getattr(connection, "in_atomic_block", False))
        and not name.startswith("sql BEGIN")
    )


def _attach(connection: Any) -> None:
    if _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_wrapper)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _attach(connection)


def install() -> None:
    """Point before each SQL statement of every Django connection (idempotent)."""
    from django.conf import settings
    from django.db import connections
    from django.db.backends.signals import connection_created

    # dispatch_uid makes a second connect() a no-op (django/dispatch/dispatcher.py).
    connection_created.connect(_on_connection_created, dispatch_uid=_DISPATCH_UID)
    if settings.configured:
        # Connections this thread opened before install() sent their signal already.
        for connection in connections.all(initialized_only=True):
            _attach(connection)
