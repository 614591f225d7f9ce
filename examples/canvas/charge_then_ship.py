"""Charge, then ship, as a chain whose steps each write one keyed effect. SOUND.

Each step inserts its invoice row with ``INSERT ... ON CONFLICT (idempotency_key) DO
NOTHING`` (examples/effects/insert_on_conflict.py), the key being ``<order>:charge`` or
``<order>:ship``. Under acks_late a step runs again after a kill or the visibility
timeout, and a rerun of ``charge`` publishes ``ship`` again (Celery keeps no record
that it did), so ``ship`` can run twice too; every rerun finds its key taken and
leaves the one row.
"""

from __future__ import annotations

from typing import Any

from celery import chain

from examples.effects import insert_on_conflict


def make_canvas(app: Any, resources: Any) -> Any:
    invoice = insert_on_conflict.make_effect(resources)

    @app.task(name=f"{__name__}.charge")
    def charge(order: str) -> str:
        invoice(f"{order}:charge")
        return order

    @app.task(name=f"{__name__}.ship")
    def ship(order: str) -> str:
        invoice(f"{order}:ship")
        return order

    return lambda order: chain(charge.s(order), ship.s())
