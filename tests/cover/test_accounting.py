"""The harness's account of kombu's virtual QoS against kombu's own class.

Whether a Redis worker may take another message is kombu's count, not ours: if the
harness counts one more than kombu does, the worker takes a message the settle is
not waiting for, and two runs of one scenario are offered different moves."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from kombu.transport.virtual.base import QoS

from harness.accounting import Message, held, qos_count, qos_disagreement

Call = tuple[str, str]
calls = st.lists(st.tuples(st.sampled_from(["recv", "settle"]), st.sampled_from("abc")))


def kombu_count(sequence: list[Call]) -> int:
    """Play the calls on kombu's QoS (no channel needed for append and ack)."""
    qos = QoS(SimpleNamespace(do_restore=False), prefetch_count=2)
    for kind, tag in sequence:
        if kind == "recv":
            qos.append(object(), tag)
        else:
            qos.ack(tag)
    return len(qos._delivered) - len(qos._dirty)  # what can_consume compares


@given(calls)
def test_the_count_is_kombus(sequence: list[Call]) -> None:
    assert qos_count(sequence) == kombu_count(sequence)


def test_a_tag_settled_twice_across_an_append_is_uncounted_twice() -> None:
    # vt restores t1's running message to the worker that holds it (one tag, two
    # deliveries); t2 arrives; both deliveries of t1 are acked. kombu then counts t2
    # as nothing: the worker may take another message while t2 runs.
    sequence = [("recv", "a"), ("recv", "a"), ("settle", "a"), ("recv", "b"), ("settle", "a")]
    assert kombu_count(sequence) == qos_count(sequence) == 0
    last_call_per_tag = Message("t1", log=[("recv", "w", t, None) for t in "b"])
    assert last_call_per_tag.held_by("w") == 1  # what the harness counted before


def message(task: str, *calls: tuple[str, str, str, int | None, int, int]) -> Message:
    """A message's QoS calls as the worker reports them: (recv|settle, worker, tag,
    place, kombu's count after it, which channel's QoS)."""
    m = Message(task)
    for kind, worker, tag, place, count, channel in calls:
        m.log.append((kind, worker, tag, place))
        if place is not None:
            m.qos[(worker, place)] = (count, channel)
    return m


def test_held_orders_every_messages_calls_by_the_workers_places() -> None:
    t1 = message("t1", ("recv", "w", "a", 1, 1, 1), ("recv", "w", "a", 2, 1, 1),
                 ("settle", "w", "a", 3, 0, 1), ("settle", "w", "a", 5, 0, 1))  # fmt: skip
    t2 = message("t2", ("recv", "w", "b", 4, 1, 1), ("recv", "other", "c", 1, 1, 1))
    assert held([t1, t2], "w", "redis") == 0  # kombu: a flushed at b's append, then dirty
    assert held([t1, t2], "other", "redis") == 1
    # A place missing (a failed ack): each message's calls in arrival order, as before.
    t2.log.append(("settle", "w", "b", None))
    assert held([t1, t2], "w", "redis") == 0
    # RabbitMQ keeps the count in the broker: every unacked delivery.
    assert held([t1, t2], "w", "amqp") == t1.outstanding("w") + t2.outstanding("w")


def test_a_reconnected_worker_counts_only_its_new_channel() -> None:
    # Seen in the connection-loss claim: the worker reconnects, takes the restored copy
    # on its new channel (QoS 2), and acks the first delivery on the old one (QoS 1),
    # whose count kombu reports as -1; the new channel still holds a.
    t1 = message("t1", ("recv", "w", "a", 7, 1, 1), ("recv", "w", "a", 8, 1, 2),
                 ("settle", "w", "a", 9, -1, 1))  # fmt: skip
    assert held([t1], "w", "redis") == 1
    assert qos_disagreement([t1], "w") is None  # the new channel's count is kombu's: 1


def test_the_disagreement_names_the_worker_and_its_calls() -> None:
    # Places count per worker process: w2's place 2 is not w1's.
    t1 = message("t1", ("recv", "w1", "a", 1, 1, 1), ("settle", "w1", "a", 2, 0, 1),
                 ("recv", "w2", "b", 1, 1, 1), ("recv", "w2", "c", 2, 2, 1))  # fmt: skip
    assert qos_disagreement([t1], "w1") is None
    assert qos_disagreement([t1], "w2") is None
    t1.qos[("w2", 2)] = (1, 1)  # kombu counts one fewer than the harness
    why = qos_disagreement([t1], "w2")
    assert why is not None and "counts 1" in why and "the harness 2" in why
