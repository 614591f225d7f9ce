"""Where kombu's virtual QoS took and let go of each delivery, in one order.

Redis emulates prefetch in the worker (kombu/transport/virtual/base.py ``QoS``):
``append`` counts a delivery by its tag, ``ack``/``reject`` uncount the tag, and a
restored copy keeps its tag, so whether the worker may take another message depends
on the order of those calls. The threads pool acks in its own thread and reports on
its own connection, so the reports reach the controller in any order; each carries
its place in this process's order instead (a number taken under one lock with the
QoS call itself), and what the QoS counts against the prefetch right after the call
(``len(_delivered) - len(_dirty)``, what ``can_consume`` compares) with the QoS's own
number: each channel has its own, and a reconnected worker acks its old deliveries
through the old one. The harness checks its own account against them. Used by the
delivery reports (tasks/patches/deliveries.py).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

_QOS = itertools.count(1)


Counted = list[int]  # [count, QoS number]: a report's ``qos`` (JSON)


class QosOrder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next = 0
        self.appended: dict[Any, tuple[int, Counted]] = {}  # tag -> its latest append
        self.local = threading.local()  # .last, .count: this thread's latest ack or reject

    def take(self) -> int:
        self.next += 1
        return self.next

    def settled(self, call: Callable[[], Any]) -> tuple[int | None, int, Counted | None]:
        """Run an ack or reject: its place, if it went through the virtual QoS
        (Redis: yes; RabbitMQ keeps its QoS in the broker), how many messages it
        pushed back to the queue (Redis), and the QoS's count after it."""
        self.local.last, self.local.restored, self.local.count = None, 0, None
        call()
        return self.local.last, self.local.restored, self.local.count


def counted(qos: Any) -> Counted:
    """What kombu's virtual QoS counts against the prefetch (``QoS.can_consume``), and
    which QoS (channel) it is, numbered in this process."""
    if not hasattr(qos, "_suite_number"):
        qos._suite_number = next(_QOS)
    return [len(qos._delivered) - len(qos._dirty), qos._suite_number]


def install() -> QosOrder:
    """Number kombu's virtual ``QoS.append``/``ack``/``reject`` and count the Redis
    channel's restores; returns the order they are numbered in."""
    from kombu.transport import redis
    from kombu.transport.virtual import base as virtual

    order = QosOrder()
    append, ack, reject = virtual.QoS.append, virtual.QoS.ack, virtual.QoS.reject

    def appended(self: Any, message: Any, delivery_tag: Any) -> None:
        with order.lock:
            append(self, message, delivery_tag)
            order.appended[delivery_tag] = (order.take(), counted(self))

    def acked(self: Any, delivery_tag: Any) -> None:
        with order.lock:
            ack(self, delivery_tag)
            order.local.last, order.local.count = order.take(), counted(self)

    def rejected(self: Any, delivery_tag: Any, requeue: bool = False) -> None:
        with order.lock:
            reject(self, delivery_tag, requeue=requeue)
            order.local.last, order.local.count = order.take(), counted(self)

    def restore(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Called only when the unacked entry is still there: a reject with requeue
        # after the visibility timeout already restored the message pushes nothing
        # (kombu/transport/redis.py ``QoS.restore_by_tag``).
        order.local.restored = getattr(order.local, "restored", 0) + 1
        return do_restore(self, *args, **kwargs)

    do_restore = redis.Channel._do_restore_message
    redis.Channel._do_restore_message = restore  # type: ignore[method-assign]
    virtual.QoS.append = appended  # type: ignore[method-assign]
    virtual.QoS.ack = acked  # type: ignore[method-assign]
    virtual.QoS.reject = rejected  # type: ignore[method-assign]
    return order
