"""Message accounting: what the workers said about each task's message, and so what
each worker holds against its prefetch and what the broker still owes.

The controller keeps one ``Message`` per task id of the example (``Controller.accept``)
and fills it from the delivery reports (harness/recorder.py); the delivery runner reads
it to tell whether the system is quiescent, and its faults mark what the broker takes
back (``closed``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Message:
    """What the workers said about one task's message (by its task id)."""

    task: str
    received: list[str] = field(default_factory=list)  # worker hostnames, per delivery
    settled_by: list[str] = field(default_factory=list)  # who acked or rejected a delivery
    handled: int = 0  # losses of a pool child the main process finished handling
    states: list[str] = field(default_factory=list)
    # (recv|settle, worker, tag, place in the worker's QoS order: Redis only)
    log: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    requeued: int = 0  # deliveries rejected with requeue: the broker owes one more each
    published: int = 0  # retry messages the task's runs published (same task id)
    closed: int = 0  # deliveries handed back by the broker itself (vt, dead connection)
    skipped: list[str] = field(default_factory=list)  # workers that skipped a delivery

    def outstanding(self, worker: str) -> int:
        """Deliveries ``worker`` received and has not acked or rejected."""
        return self.received.count(worker) - self.settled_by.count(worker)

    def held_by(self, worker: str) -> int:
        """How many of the task's messages (a retry publishes another) kombu's virtual
        QoS on ``worker`` counts against its prefetch: it keys deliveries by tag, and a
        redelivered Redis message keeps its tag, so any ack or reject of one delivery
        uncounts them all (kombu/transport/virtual/base.py ``QoS.can_consume``). The
        last call on a tag decides, in the order the worker made the calls (its
        reports arrive on several connections, in any order:
        tasks/patches/qos_order.py)."""
        mine = [e for e in self.log if e[1] == worker]
        if all(e[3] is not None for e in mine):
            mine.sort(key=lambda e: e[3] or 0)
        held: dict[str, bool] = {}
        for kind, _who, tag, _place in mine:
            held[tag] = kind == "recv"
        return sum(held.values())

    def owed(self) -> int:
        """Deliveries the broker has yet to make: the first, one per requeue, one per
        delivery it took back, minus those made."""
        return 1 + self.published + self.requeued + self.closed - len(self.received)


def held(messages: Iterable[Message], worker: str, broker: str) -> int:
    """The deliveries ``worker``'s channel counts against its prefetch: kombu's virtual
    QoS on Redis (``Message.held_by``); AMQP counts every unacked delivery."""
    if broker == "redis":
        return sum(m.held_by(worker) for m in messages)
    return sum(m.outstanding(worker) for m in messages)


def hand_back(messages: Iterable[Message], worker: str) -> None:
    """The broker takes back every delivery ``worker`` holds unsettled (its connection
    or channel is gone): each is owed again."""
    for m in messages:
        m.closed += m.outstanding(worker)
