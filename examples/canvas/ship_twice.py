"""Charge, then ship, as a chain; the shipping step inserts without a key. BROKEN
under acks_late.

``charge`` is keyed (``ON CONFLICT (idempotency_key) DO NOTHING``,
examples/effects/insert_on_conflict.py) but ``ship`` is a plain ``INSERT``
(examples/effects/insert_always.py). Under acks_late ``ship`` runs again when its
worker dies after the insert and before the ack (the message comes back: at once on
RabbitMQ, after the visibility timeout on Redis), and also when ``charge`` runs again
for the same reason: its rerun publishes ``ship`` a second time (Celery keeps no
record that it did, celery/app/trace.py). Either way the order is shipped twice.
"""

from __future__ import annotations

from typing import Any

from celery import chain

from examples.effects import insert_always, insert_on_conflict


def make_canvas(app: Any, resources: Any) -> Any:
    keyed = insert_on_conflict.make_effect(resources)
    unkeyed = insert_always.make_effect(resources)

    @app.task(name=f"{__name__}.charge")
    def charge(order: str) -> str:
        keyed(f"{order}:charge")
        return order

    @app.task(name=f"{__name__}.ship")
    def ship(order: str) -> str:
        unkeyed(f"{order}:ship")
        return order

    return lambda order: chain(charge.s(order), ship.s())
