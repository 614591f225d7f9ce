"""The routing model (model/routing.py) on hand-written histories, and its scenario line."""

from __future__ import annotations

import pytest

from model import routing as mr
from model.history import (
    Event,
    Finished,
    RanFrom,
    RetryPublished,
    Routed,
    SendRefused,
    Started,
    Stuck,
    Submitted,
)
from model.routing import RoutingConfig, mismatches, parse_label, rule
from properties.scenario import RoutingScenario, decode_any
from properties.timeline import render

ROUTED = RoutingConfig("redis", ("routes",), (("qr",),))
FORGOT_Q = RoutingConfig("redis", ("routes",), (("celery",),))
DECLARED = RoutingConfig("redis", ("routes",), (("celery",),), create_missing=False)
EVERY = RoutingConfig("redis", ("routes", "attr", "option"), (("qo",), ("qr", "qt", "celery")))
RETRY = RoutingConfig("amqp", ("routes",), (("qr",), ("celery",)), retries=1)
EARLY = RoutingConfig(priorities=True)
LATE = RoutingConfig(priorities=True, acks_late=True)
LATE_AMQP = RoutingConfig("amqp", priorities=True, acks_late=True)


def ran(task: str, queue: str, worker: str = "w1", execution: str | None = None) -> list[Event]:
    x = execution or task
    return [Started(x, task, worker), RanFrom(x, queue), Finished(x, "ok")]


def sent(task: str, queue: str, priority: int | None = None) -> list[Event]:
    return [Submitted(task), Routed(task, queue, priority)]


# --- the rules ------------------------------------------------------------------------


def test_precedence_option_then_attribute_then_routes_then_default() -> None:
    assert mr.routed_queue(RoutingConfig()) == "celery"
    assert mr.routed_queue(ROUTED) == "qr"
    assert mr.routed_queue(RoutingConfig(route=("routes", "attr"))) == "qt"
    assert mr.routed_queue(RoutingConfig(route=("attr", "option"))) == "qo"
    assert mr.routed_queue(EVERY) == "qo"


def test_missing_queues_stuck_when_created_refused_when_not() -> None:
    assert mr.stuck_queue(FORGOT_Q) == "qr" and not mr.refused(FORGOT_Q)
    assert mr.refused(DECLARED) and mr.stuck_queue(DECLARED) is None
    assert mr.stuck_queue(ROUTED) is None and not mr.refused(ROUTED)


def test_priority_order_per_broker() -> None:
    redis, amqp = RoutingConfig("redis"), RoutingConfig("amqp")
    assert mr.first(redis, 0, 9) and not mr.first(redis, 9, 0)
    assert not mr.first(redis, 1, 2)  # one step (0): first in, first out
    assert mr.first(amqp, 9, 0) and not mr.first(amqp, 0, 9)


def test_predictions_each_side_of_each_trap() -> None:
    assert rule(FORGOT_Q, mr.NOT_STUCK)[0] == "violated"
    assert rule(ROUTED, mr.NOT_STUCK)[0] == "holds"
    assert "QueueNotFound" in rule(DECLARED, mr.NOT_STUCK)[1]
    assert rule(RETRY, mr.ON_ITS_QUEUE) == ("holds", rule(RETRY, mr.ON_ITS_QUEUE)[1])
    assert "8357" in rule(RETRY, mr.ON_ITS_QUEUE)[1]
    assert rule(EARLY, mr.PRIORITY_ORDER)[0] == "violated"
    assert rule(LATE, mr.PRIORITY_ORDER)[0] == "holds"
    assert "queue_order_strategy" in rule(LATE, mr.PRIORITY_ORDER)[1]
    with pytest.raises(ValueError, match="unknown routing property"):
        rule(ROUTED, "exactly-once")


def test_the_models_defaults_are_the_installed_celerys() -> None:
    from celery import Celery

    conf = Celery(set_as_current=False).conf
    assert conf.task_default_queue == mr.DEFAULT_QUEUE  # celery/app/defaults.py
    assert conf.task_create_missing_queues is True
    from kombu.transport.redis import PRIORITY_STEPS

    assert tuple(PRIORITY_STEPS) == mr.PRIORITY_STEPS


# --- the replay ---------------------------------------------------------------------------


def test_a_send_routed_as_the_precedence_says_is_no_mismatch() -> None:
    h = [*sent("t1", "qo"), *ran("t1", "qo")]
    assert mismatches(EVERY, h) == []


def test_a_send_routed_elsewhere_is_a_mismatch() -> None:
    h = [*sent("t1", "qr"), *ran("t1", "qr", "w2")]
    (m,) = mismatches(EVERY, h)
    assert m.index == 1 and "published to qo" in m.expected and "apply_async option" in m.why


def test_a_refusal_is_due_exactly_when_missing_queues_are_not_created() -> None:
    refused = [Submitted("t1"), SendRefused("t1", "QueueNotFound: \"Queue 'qr' missing\"")]
    assert mismatches(DECLARED, refused) == []
    (m,) = mismatches(FORGOT_Q, refused)
    assert "published to qr" in m.expected
    published = [*sent("t1", "qr"), Stuck("qr", 1)]
    (m,) = mismatches(DECLARED, published)
    assert "QueueNotFound" in m.expected


def test_stuck_counts_must_match_the_sends_to_unconsumed_queues() -> None:
    assert mismatches(FORGOT_Q, [*sent("t1", "qr"), Stuck("qr", 1)]) == []
    (m,) = mismatches(FORGOT_Q, [*sent("t1", "qr")])  # the broker lost it?
    assert m.expected == "1 message(s) left in qr" and m.observed == "0"
    (m,) = mismatches(FORGOT_Q, [*sent("t1", "qr"), *sent("t2", "qr"), Stuck("qr", 1)])
    assert m.observed == "1"


def test_a_send_neither_published_nor_refused_is_a_mismatch() -> None:
    (m,) = mismatches(ROUTED, [Submitted("t1")])
    assert "published or refused" in m.expected


# --- the invariants ---------------------------------------------------------------------------


def test_a_retry_on_its_queue_holds_one_in_the_default_queue_does_not() -> None:
    retry = [RetryPublished("t1", "t1", 1)]
    keeps = [*sent("t1", "qr"), Started("t1", "t1", "w1"), RanFrom("t1", "qr"), *retry,
             Finished("t1", "ok"), *ran("t1", "qr", "w1", "t1#2")]  # fmt: skip
    assert mr.runs_on_its_queue(RETRY, keeps) == []
    moved = [*keeps[:-3], *ran("t1", "celery", "w2", "t1#2")]  # celery #8357
    (v,) = mr.runs_on_its_queue(RETRY, moved)
    assert "t1#2 took its message from celery, but t1 was sent to qr" in v.message


def test_a_run_on_a_worker_not_consuming_its_queue_is_a_violation() -> None:
    (v,) = mr.runs_on_its_queue(RETRY, [*sent("t1", "qr"), *ran("t1", "qr", "w2")])
    assert "ran on w2, which consumes celery, not qr" in v.message


def test_a_task_left_in_a_queue_nobody_consumes_is_stuck() -> None:
    h = [*sent("t1", "qr"), Stuck("qr", 1)]
    (v,) = mr.no_stuck_task(FORGOT_Q, h)
    assert v.index == 2 and "1 message(s) wait in qr" in v.message
    assert mr.no_stuck_task(ROUTED, [*sent("t1", "qr"), *ran("t1", "qr")]) == []
    refused = [Submitted("t1"), SendRefused("t1", "QueueNotFound")]
    assert mr.no_stuck_task(DECLARED, refused) == []


def test_a_run_that_retried_is_not_the_end_of_its_task() -> None:
    h = [*sent("t1", "qr"), Started("t1", "t1", "w1"), RetryPublished("t1", "t1", 1),
         Finished("t1", "ok"), Stuck("celery", 1)]  # fmt: skip
    (v,) = mr.no_stuck_task(RETRY, h)
    assert "1 message(s) wait in celery" in v.message


def test_a_prefetched_lower_priority_run_first_is_a_violation() -> None:
    h = [*sent("t1", "celery", 9), Started("t1", "t1", "w1"), *sent("t2", "celery", 9),
         *sent("t3", "celery", 0), Finished("t1", "ok"), Started("t2", "t2", "w1")]  # fmt: skip
    (v,) = mr.priority_order(EARLY, h)
    assert v.index == 8 and "t2 (priority 9) started while t3 (priority 0" in v.message
    in_order = [*h[:-1], Started("t3", "t3", "w1")]
    assert mr.priority_order(LATE, in_order) == []
    # RabbitMQ: 9 first, so the same order breaks it the other way round.
    assert mr.priority_order(LATE_AMQP, h) == []
    assert len(mr.priority_order(LATE_AMQP, in_order)) == 1


# --- config, label, scenario line, timeline ------------------------------------------------------


STRATEGY = RoutingConfig(priorities=True, strategy="priority")


@pytest.mark.parametrize(
    "config", [ROUTED, FORGOT_Q, DECLARED, EVERY, RETRY, EARLY, LATE_AMQP, STRATEGY]
)
def test_label_round_trip(config: RoutingConfig) -> None:
    assert parse_label(config.label()) == config


def test_labels_read_as_celery_spells_them() -> None:
    assert EVERY.label() == "redis/routes+attr+option/qo|qr,qt,celery/create"
    assert RETRY.label() == "amqp/routes/qr|celery/create/retry1"
    assert DECLARED.label() == "redis/routes/celery/declared"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"route": ("option", "routes")}, "in the order"),
        ({"route": ("queue",)}, "unknown route"),
        ({"workers": (("qr",), ("qr",))}, "consumed by one worker"),
        ({"workers": (("q9",),)}, "unknown queue"),
        ({"workers": ()}, "one to three workers"),
        ({"retries": 2}, "out of range"),
        ({"priorities": True, "workers": (("qr",), ("celery",))}, "one worker"),
        ({"broker": "amqp", "strategy": "priority"}, "Redis transport option"),
    ],
)
def test_bad_configs_say_why(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        RoutingConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_labels_say_the_format() -> None:
    with pytest.raises(ValueError, match="a routing config reads"):
        parse_label("redis/routes")
    with pytest.raises(ValueError, match="unknown part"):
        parse_label("redis/routes/qr/create/fast")


def test_scenario_line_round_trip() -> None:
    line = "no-stuck-task routing redis/routes/celery/create tasks=1: submit"
    s = decode_any(line)
    assert isinstance(s, RoutingScenario) and s.config == FORGOT_Q and s.moves == ("submit",)
    assert s.encode() == line
    with pytest.raises(ValueError, match="a routing scenario reads"):
        RoutingScenario.decode("no-stuck-task routing")


def test_timeline_says_where_it_went_and_what_is_stuck() -> None:
    h = [*sent("t1", "qr", 9), SendRefused("t2", "QueueNotFound: x"), *ran("t3", "qr"),
         Stuck("qr", 1)]  # fmt: skip
    text = render(h)
    assert "app: t1 published to qr (priority 9)" in text
    assert "app: sending t2 RAISED QueueNotFound: x" in text
    assert "t3@w1        took its message from queue qr" in text
    assert "broker: 1 message(s) STUCK in queue qr: no worker consumes it" in text
