"""The suite's patches to Celery, kombu and billiard internals, one module each.

Each module's docstring says which upstream source it changes and what the suite
needs from it. ``tasks.app`` installs them all when it is imported, in every process
that imports it (the sender, a worker's main process, before the pool forks).
"""

from __future__ import annotations

from tasks.patches import (
    child_order,
    deliveries,
    expiring_queues,
    fast_fork,
    gates,
    pool_maintenance,
    restore_cadence,
    skips,
)
from tasks.settings import Settings


def install_all(settings: Settings) -> None:
    pool_maintenance.install(settings.pool_maintain_period)
    child_order.install()
    fast_fork.install()
    expiring_queues.install(settings.queue_expires_ms)
    restore_cadence.install()
    deliveries.install(settings.worker)
    skips.install(settings.worker)
    if settings.gates:
        gates.install()
