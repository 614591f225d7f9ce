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
    # (worker, place) -> (kombu's count after that call, which QoS: one per channel);
    # places count per worker process
    qos: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

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
        tasks/patches/qos_order.py). Only where some call has no place (a failed ack):
        ``held`` plays every message's calls together otherwise (``qos_count``), which
        also counts what kombu's deferred flush does across messages."""
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
    QoS on Redis (``qos_count`` over the calls through the channel it consumes on now,
    every message's, in the worker's order); AMQP counts every unacked delivery."""
    if broker != "redis":
        return sum(m.outstanding(worker) for m in messages)
    messages = list(messages)
    calls = _current(messages, worker)
    if calls is None:  # a call with no place (a failed ack) or no QoS number
        return sum(m.held_by(worker) for m in messages)
    return qos_count([(kind, tag) for _, kind, tag in calls])


def _current(messages: list[Message], worker: str) -> list[tuple[int, str, str]] | None:
    """``worker``'s QoS calls through its latest channel, in its order: a worker that
    reconnected (a dropped connection) settles its old deliveries through the old
    channel's QoS, which no longer counts for what it may take."""
    channel = {k[1]: v[1] for m in messages for k, v in m.qos.items() if k[0] == worker}
    calls = []
    for m in messages:
        for kind, who, tag, place in m.log:
            if who == worker:
                if place is None or place not in channel:
                    return None
                calls.append((place, kind, tag))
    newest = max(channel.values(), default=0)  # numbered as the worker made them
    return sorted(c for c in calls if channel[c[0]] == newest)


def qos_count(calls: Iterable[tuple[str, str]]) -> int:
    """What kombu's virtual QoS counts against the prefetch after ``calls`` (``recv``
    or ``settle`` of a tag, in the worker's order): ``len(_delivered) - len(_dirty)``
    (kombu/transport/virtual/base.py ``QoS.can_consume``). An ack only marks its tag
    dirty; the next append flushes the dirty tags out of ``_delivered``. So a tag
    settled twice with an append between (a Redis copy restored to the worker that
    still held it: both deliveries share the tag) is subtracted once more than it is
    counted, and the worker may take one message more than ``held_by`` says until
    its next append. Checked against kombu's own class: tests/cover/test_accounting.py."""
    delivered: set[str] = set()
    dirty: set[str] = set()
    for kind, tag in calls:
        if kind == "recv":
            delivered -= dirty
            dirty.clear()
            delivered.add(tag)
        else:
            dirty.add(tag)
    return len(delivered) - len(dirty)


def qos_disagreement(messages: Iterable[Message], worker: str) -> str | None:
    """Where ``held`` and kombu's own count on ``worker`` (reported with its latest QoS
    call of the example, Redis) differ: the worker could take a message the settle
    would not wait for, so the next move would race its arrival."""
    messages = list(messages)
    calls = _current(messages, worker)
    if not calls:
        return None
    last = calls[-1][0]
    real = next(m.qos[(worker, last)][0] for m in messages if (worker, last) in m.qos)
    ours = qos_count([(kind, tag) for _, kind, tag in calls])
    if real == ours:
        return None
    return (
        f"kombu's QoS on {worker} counts {real} deliveries against the prefetch, the "
        f"harness {ours} (calls through its channel, in the worker's order: {calls})"
    )


def hand_back(messages: Iterable[Message], worker: str) -> None:
    """The broker takes back every delivery ``worker`` holds unsettled (its connection
    or channel is gone): each is owed again."""
    for m in messages:
        m.closed += m.outstanding(worker)
