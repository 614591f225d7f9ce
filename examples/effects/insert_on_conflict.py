"""Insert the invoice keyed by the order, ignoring a duplicate. SOUND.

One autocommit statement, ``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING``, with
the order id as the idempotency key. The unique index decides: of any number of
executions for one order, exactly one inserts the row and the others do nothing
(https://www.postgresql.org/docs/current/sql-insert.html, "ON CONFLICT Clause"). An
INSERT that meets another's uncommitted row with the same key waits for that
transaction to end; in autocommit the transaction is the one statement, so it never
stays open across a scheduling point and nothing blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.points import current


def make_effect(resources: Any) -> Callable[[str], None]:
    def effect(order_id: str) -> None:
        conn = resources.db()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO invoices (order_id, execution, idempotency_key) "
                "VALUES (%s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING",
                (order_id, current(), order_id),
            )

    return effect
