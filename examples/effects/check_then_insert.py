"""Check whether the order has an invoice, insert one if not. BROKEN under concurrent
redelivery.

One transaction (autocommit off): ``SELECT count(*)``, then ``INSERT`` if it was 0,
then ``COMMIT``. Run one after the other it is idempotent. But PostgreSQL's default
isolation, READ COMMITTED, lets two transactions both see no invoice: if a second
execution of the same order runs its SELECT before the first has committed its INSERT,
both insert. The rows carry no idempotency key, so no unique constraint is involved and
nothing blocks or fails: the order ends with two invoices. (SERIALIZABLE would make one
of the two commits fail, not block; a unique key with ON CONFLICT is the usual fix, see
insert_on_conflict.py.)
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
                cur.execute("SELECT count(*) FROM invoices WHERE order_id = %s", (order_id,))
                (existing,) = cur.fetchone()
                if existing == 0:
                    cur.execute(
                        "INSERT INTO invoices (order_id, execution) VALUES (%s, %s)",
                        (order_id, current()),
                    )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    return effect
