"""Charge, then ship, as a chain; the shipping step inserts without a key. BROKEN
under acks_late.

``charge`` is keyed (``ON CONFLICT (idempotency_key) DO NOTHING``) but ``ship`` is a
plain ``INSERT``. Under acks_late ``ship`` runs again when its worker dies after the
insert and before the ack (the message comes back: at once on RabbitMQ, after the
visibility timeout on Redis), and also when ``charge`` runs again for the same
reason: its rerun publishes ``ship`` a second time (Celery keeps no record that it
did, celery/app/trace.py). Either way the order is shipped twice.
"""

from __future__ import annotations

from typing import Any

from celery import chain

from tasks.points import current


def make_canvas(app: Any, resources: Any) -> Any:
    def insert(key: str, keyed: bool) -> None:
        conn = resources.db()
        conn.autocommit = True
        with conn.cursor() as cur:
            if keyed:
                cur.execute(
                    "INSERT INTO invoices (order_id, execution, idempotency_key) "
                    "VALUES (%s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING",
                    (key, current(), key),
                )
            else:
                cur.execute(
                    "INSERT INTO invoices (order_id, execution) VALUES (%s, %s)",
                    (key, current()),
                )

    @app.task(name=f"{__name__}.charge")
    def charge(order: str) -> str:
        insert(f"{order}:charge", keyed=True)
        return order

    @app.task(name=f"{__name__}.ship")
    def ship(order: str) -> str:
        insert(f"{order}:ship", keyed=False)
        return order

    return lambda order: chain(charge.s(order), ship.s())
