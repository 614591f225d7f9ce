"""An effect that inserts an invoice every time it runs. BROKEN: not idempotent.

Each call INSERTs a row (no idempotency key, so the unique constraint never applies)
and commits (autocommit off: the INSERT and the COMMIT are two scheduling points). A
task that runs twice for one order — redelivered after a worker was lost, retried
after a timeout, or submitted twice — leaves two invoices, even run one after the
other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.points import current


def make_effect(resources: Any) -> Callable[[str], None]:
    def effect(order_id: str) -> None:
        conn = resources.db()
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO invoices (order_id, execution) VALUES (%s, %s)",
                    (order_id, current()),
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    return effect
