"""On a kombu without a configurable restore cadence, scan for aged Redis messages
every 50 ms, as ``tasks.app`` asks newer kombu to (``nox -s regressions`` only).

kombu 5.7 reads ``unacked_restore_interval`` and ``unacked_restore_throttle`` from the
transport options (kombu PR #2558); older releases ignore them and keep the hard-coded
cadence: ``loop.call_repeatedly(10, cycle.maybe_restore_messages)`` and
``QoS.restore_visible(..., interval=10)``, a scan about every 100 s
(kombu/transport/redis.py ``Transport.register_with_event_loop``). The harness's ``vt``
move ages the unacked entries and waits 30 s for a consuming worker to restore them,
so on those releases every scenario with a ``vt`` ended in a harness timeout (seen on
kombu 5.2.3). This adds the 50 ms timer and drops the throttle there; on a kombu that
has the options it does nothing.
"""

from __future__ import annotations

from typing import Any

PERIOD = 0.05  # seconds: tasks/app.py's ``unacked_restore_interval``


def install() -> None:
    """Restore aged messages every ``PERIOD`` seconds on a kombu that cannot be told to."""
    from kombu.transport import redis

    if hasattr(redis.Channel, "unacked_restore_interval"):
        return  # kombu reads the transport options itself
    if getattr(redis.QoS.restore_visible, "suite_unthrottled", False):
        return  # installed already: one timer per event loop, not two
    register, restore_visible = redis.Transport.register_with_event_loop, redis.QoS.restore_visible

    def register_with_event_loop(self: Any, connection: Any, loop: Any) -> Any:
        out = register(self, connection, loop)
        loop.call_repeatedly(PERIOD, self.cycle.maybe_restore_messages)
        return out

    def unthrottled(self: Any, start: int = 0, num: int = 10, interval: int = 10) -> Any:
        return restore_visible(self, start=start, num=num, interval=1)

    unthrottled.suite_unthrottled = True  # type: ignore[attr-defined]
    redis.Transport.register_with_event_loop = register_with_event_loop  # type: ignore[method-assign]
    redis.QoS.restore_visible = unthrottled  # type: ignore[method-assign]
