"""Effects under test: the plug-in contract for "create the invoice for this order".

An effect is made once per worker process from the process's resources and then
called per task, possibly more than once for the same order (a redelivered or retried
task, two tasks for one order running at once)::

    def make_effect(resources):                 # MakeEffect
        def effect(order_id: str) -> None:      # EffectFn
            ...                                 # create the invoice for order_id
        return effect

An idempotent effect leaves exactly one invoice per order however many times, and
however concurrently, it runs. The suite counts rows of one documented table in the
run's PostgreSQL, created by the harness (``tasks.effects.store``)::

    CREATE TABLE IF NOT EXISTS invoices (
        id bigserial PRIMARY KEY,
        order_id text NOT NULL,
        execution text,              -- free text an effect may fill (e.g. which attempt)
        idempotency_key text UNIQUE  -- NULL for effects that don't use it (NULLs never conflict)
    )

``resources.db()`` is a DB-API connection (psycopg 3) to that database, one per
thread; call it inside ``effect``, not in ``make_effect``. Every ``execute`` /
``executemany``, ``commit()`` and ``rollback()`` on it is a scheduling point
(``sql SELECT invoices``, ``sql INSERT invoices``, ``sql COMMIT``, ...), so the suite
can run another execution between any two of them. Autocommit is off unless the
effect sets ``conn.autocommit = True``; ``conn.transaction()`` and pipelines are not
offered (their commands would bypass the points). ``tasks.points.current()`` names the
running execution, e.g. for the ``execution`` column.

An effect that keeps a transaction open across statements while another execution of
the same order writes a conflicting unique key will block in PostgreSQL (the second
INSERT waits for the first transaction to end, and the first is parked at its next
point); the harness reports that as a timeout — use autocommit single statements or
ON CONFLICT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tasks.locks import Resources as LockResources

EffectFn = Callable[[str], None]
MakeEffect = Callable[[Any], EffectFn]


class Resources(LockResources, Protocol):
    """What an effect factory may use (implemented by ``tasks.resources``): everything a
    lock gets, and the database."""

    def db(self) -> Any:
        """A psycopg 3 connection to the run's PostgreSQL, instrumented, one per thread
        (``tasks.instrument.dbapi.InstrumentedConnection``)."""
