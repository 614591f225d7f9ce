"""Insert the invoice keyed by the order, or update the existing one. SOUND.

One autocommit statement, ``INSERT ... ON CONFLICT (idempotency_key) DO UPDATE SET
execution = EXCLUDED.execution``, with the order id as the idempotency key: the first
execution inserts the row, every later one updates that same row (it records the last
execution). PostgreSQL guarantees an insert or an update for each statement even under
concurrency (https://www.postgresql.org/docs/current/sql-insert.html, "ON CONFLICT DO
UPDATE guarantees an atomic INSERT or UPDATE outcome"), so the order has exactly one
invoice. Autocommit keeps no transaction open across a scheduling point, so nothing
blocks.
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
                "VALUES (%s, %s, %s) "
                "ON CONFLICT (idempotency_key) DO UPDATE SET execution = EXCLUDED.execution",
                (order_id, current(), order_id),
            )

    return effect
