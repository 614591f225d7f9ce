"""A psycopg 3 connection whose every statement, commit and rollback is a scheduling point.

What an effect gets from ``resources.db()``. Django's SQL wrapper
(``tasks.instrument.sql``) cannot serve here: the effect talks DB-API to psycopg
directly, so this is a thin proxy around ``psycopg.Connection`` and its cursors.

Where psycopg 3.3 sends something to the server (psycopg/connection.py,
psycopg/cursor.py), and what we do about it:

- ``Cursor.execute`` / ``executemany`` and the ``Connection.execute`` shortcut: a point
  named after the statement (``statement_point``: ``sql INSERT invoices``). With
  autocommit off psycopg sends ``BEGIN`` implicitly before the first statement of a
  transaction, in the same call (psycopg/_connection_base.py ``_start_query``), so
  that ``BEGIN`` shares the statement's point, as in Django.
- ``Connection.commit`` / ``rollback``: ``sql COMMIT`` / ``sql ROLLBACK``, always, even
  when psycopg has nothing to send (no transaction open). A rollback whose point
  raises (stale execution, lost controller) still rolls back; a commit does not commit.
- Fetches from a client-side cursor read rows already received: no point.
- ``Connection.transaction()`` and ``pipeline()``, ``Cursor.copy()`` and ``stream()``
  send their own commands through psycopg internals, past any wrapper: the proxy
  refuses them with an AttributeError that says why, rather than run them without
  points.
- ``close()``: no point. Closing with a transaction open makes the server roll it back.

Connection settings (``autocommit``, ``isolation_level``, ``read_only``,
``deferrable``) read and write the wrapped connection; psycopg refuses to change them
while a transaction is open. Any other attribute is read from the wrapped object, and
``raw`` is the psycopg connection itself (statements on it are not points).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql as pgsql

from tasks.instrument.sql import statement_point
from tasks.points import point

COMMIT = "sql COMMIT"
ROLLBACK = "sql ROLLBACK"

_BYPASSING = {
    "transaction": "its BEGIN/COMMIT would bypass the scheduling points; "
    "use autocommit, or commit() / rollback()",
    "pipeline": "pipelined statements would bypass the scheduling points; "
    "send one statement at a time",
    "copy": "COPY would bypass the scheduling points; use execute() or executemany()",
    "stream": "streamed statements would bypass the scheduling points; use execute() and fetch*()",
}


def _refuse(owner: str, name: str) -> AttributeError:
    return AttributeError(f"{owner} does not offer {name}(): {_BYPASSING[name]}")


def _statement_name(query: Any, context: psycopg.Connection[Any]) -> str:
    """The point name of ``query``: text, bytes or a ``psycopg.sql`` composition."""
    if isinstance(query, pgsql.Composable):
        query = query.as_string(context)
    return statement_point(query)


class _Setting:
    """A connection setting read from and written to the wrapped connection."""

    name: str

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: InstrumentedConnection | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.raw, self.name)

    def __set__(self, obj: InstrumentedConnection, value: Any) -> None:
        setattr(obj.raw, self.name, value)


class InstrumentedCursor:
    """A psycopg cursor with a scheduling point before every ``execute``.

    ``with conn.cursor() as cur:`` closes the cursor at the end, as psycopg does; it
    neither commits nor rolls back. Everything else (``fetchone``, ``fetchall``,
    ``rowcount``, ``description``, iteration) is the wrapped cursor's.
    """

    __slots__ = ("_connection", "_cursor")

    def __init__(self, cursor: psycopg.Cursor[Any], connection: InstrumentedConnection) -> None:
        self._cursor = cursor
        self._connection = connection

    @property
    def raw(self) -> psycopg.Cursor[Any]:
        """The wrapped psycopg cursor."""
        return self._cursor

    @property
    def connection(self) -> InstrumentedConnection:
        """The instrumented connection (not the raw one: statements on it stay points)."""
        return self._connection

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Self:
        point(_statement_name(query, self._connection.raw))
        self._cursor.execute(query, params, **kwargs)
        return self

    def executemany(self, query: Any, params_seq: Iterable[Any], **kwargs: Any) -> None:
        point(_statement_name(query, self._connection.raw))
        self._cursor.executemany(query, params_seq, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in _BYPASSING:
            raise _refuse("InstrumentedCursor", name)
        if name in self.__slots__:
            raise AttributeError(name)  # not set yet (copy, pickle): no recursion
        return getattr(self._cursor, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cursor.close()

    def __repr__(self) -> str:
        return f"<InstrumentedCursor {self._cursor!r}>"


class InstrumentedConnection:
    """``psycopg.Connection`` with a scheduling point before every statement, commit
    and rollback (see the module docstring for what is and is not a point)."""

    __slots__ = ("_conn",)

    autocommit = _Setting()
    isolation_level = _Setting()
    read_only = _Setting()
    deferrable = _Setting()

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The wrapped psycopg connection: statements on it are not points."""
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn.closed

    def cursor(self, *args: Any, **kwargs: Any) -> InstrumentedCursor:
        """A cursor of the wrapped connection (same arguments as psycopg's), instrumented."""
        return InstrumentedCursor(self._conn.cursor(*args, **kwargs), self)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> InstrumentedCursor:
        """psycopg's shortcut: a new cursor, executed (one point), returned."""
        return self.cursor().execute(query, params, **kwargs)

    def commit(self) -> None:
        point(COMMIT)
        self._conn.commit()

    def rollback(self) -> None:
        """Roll back, after the point, even if the point raises (a stale execution, a
        lost controller): the transaction must not outlive the failed execution."""
        try:
            point(ROLLBACK)
        finally:
            self._conn.rollback()

    def close(self) -> None:
        self._conn.close()

    def __getattr__(self, name: str) -> Any:
        if name in _BYPASSING:
            raise _refuse("InstrumentedConnection", name)
        if name in self.__slots__:
            raise AttributeError(name)  # not set yet (copy, pickle): no recursion
        return getattr(self._conn, name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """As psycopg: commit (or roll back on an exception) through the points, then
        close. ``resources.db()`` opens a fresh connection after a closed one."""
        if self._conn.closed:
            return
        try:
            if exc_type is None:
                self.commit()
            else:
                # As psycopg: a failing rollback must not hide the exception in flight.
                with contextlib.suppress(Exception):
                    self.rollback()
        finally:
            self._conn.close()

    def __repr__(self) -> str:
        return f"<InstrumentedConnection {self._conn!r}>"


def connect(dsn: str, **kwargs: Any) -> InstrumentedConnection:
    """An instrumented connection to ``dsn`` (arguments as ``psycopg.connect``).

    Connecting is not a point: it touches no shared data.
    """
    return InstrumentedConnection(psycopg.connect(dsn, **kwargs))
