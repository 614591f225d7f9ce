"""The routing area: where a task's message goes, who takes it, and in which order.

Every run is checked against the routing model first (model/routing.py
``mismatches``: each send published to the queue the precedence names, or refused
with ``QueueNotFound`` exactly when missing queues are not created, and what is left
waiting once nothing moves), then against the property. When the search finds
nothing, the attacks play the shapes that matter: a retry of each task, and (priority
scenarios) a higher priority sent while a lower one waits behind a running task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

from harness.cluster import Cluster
from harness.runs.routing import RoutingRun, RoutingRunner
from model import history as h
from model import routing as mr
from model.config import Broker
from model.routing import RoutingConfig
from model.verdict import Prediction
from properties.engine import Area, Found, Runner, described, plain
from properties.scenario import RoutingScenario
from properties.schedule import lenient

# A routing example is a few sends and steps on warm workers (threads, one slot).
ROUTING_EXAMPLES = {"dev": 10, "ci": 5, "nightly": 100}


def shapes(config: RoutingConfig) -> dict[str, list[str]]:
    """Known schedule shapes, in the runner's move names."""
    if not config.priorities:
        return {"every task retried in turn": ["submit", "step t1", "submit", "step t2"]}
    # The broker's first priority and its last: Redis pops 0 first, RabbitMQ 9.
    high, low = ("p0", "p9") if config.broker == "redis" else ("p9", "p0")
    return {
        "a higher priority sent while a lower one waits": [
            f"submit {low}", f"submit {low}", f"submit {high}", "step t1",
        ],
    }  # fmt: skip


class RoutingArea(Area[RoutingConfig]):
    name = "routing"
    digest = "routing|"
    line = RoutingScenario
    config_type = RoutingConfig
    properties = tuple(mr.PROPERTIES)
    tasks = st.integers(min_value=1, max_value=3)

    def runner(self, cluster: Cluster, config: RoutingConfig, prop: str) -> RoutingRunner:
        return RoutingRunner(cluster, config)

    def attacks(
        self, runner: Runner, config: RoutingConfig, prop: str
    ) -> Iterator[tuple[str, RoutingRun]]:
        for name, moves in shapes(config).items():
            yield name, runner.run(3, lenient(moves))

    def passed_note(self, attacks: int) -> list[str]:
        return [f"and {attacks} attack shapes found nothing"] if attacks else []

    def predict(self, config: RoutingConfig, prop: str) -> tuple[Prediction, str]:
        return mr.rule(config, prop)

    def mismatches(self, config: RoutingConfig, events: Sequence[h.Event]) -> Found:
        return described(mr.mismatches(config, events))

    def violations(self, config: RoutingConfig, prop: str, events: Sequence[h.Event]) -> Found:
        return plain(mr.VIOLATIONS[prop](config, events))

    def examples(self, config: RoutingConfig) -> dict[str, int]:
        return ROUTING_EXAMPLES

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, RoutingConfig]]:
        return routing_cases(matrix_)


# The ways of routing the full matrix runs: none, each alone, all three at once.
ROUTES: tuple[tuple[mr.Mechanism, ...], ...] = (
    (), ("routes",), ("attr",), ("option",), ("routes", "attr", "option"),
)  # fmt: skip


def _layouts(route: tuple[mr.Mechanism, ...]) -> list[tuple[tuple[str, ...], ...]]:
    """Two worker layouts for a route: its queue consumed by ``w1`` and the other
    queues by ``w2`` (a run anywhere else shows), and its queue consumed by nobody."""
    q = mr.routed_queue(RoutingConfig(route=route))
    others = tuple(o for o in mr.QUEUES if o != q)
    return [((q,), others), (others,)]


def routing_cases(matrix: str) -> list[tuple[str, RoutingConfig]]:
    """``ci``: each side of each trap once: a route to a consumed queue, to a queue
    nobody consumes (created silently; on both brokers), the same refused when missing
    queues are not created; the precedence with every way at once; an autoretry's
    queue on both brokers (celery #8357); priorities under early ack and acks_late
    (Redis, round robin; RabbitMQ). ``full``: every route of ``ROUTES`` in both
    layouts, both brokers, missing queues made or not, retries or not; priorities on
    both brokers, both acks, both Redis strategies."""
    on, stuck, prio = mr.ON_ITS_QUEUE, mr.NOT_STUCK, mr.PRIORITY_ORDER
    if matrix == "full":
        cases: list[tuple[str, RoutingConfig]] = []
        brokers: tuple[Broker, ...] = ("redis", "amqp")
        for broker in brokers:
            for route in ROUTES:
                for workers in _layouts(route):
                    cases += [
                        (stuck, RoutingConfig(broker, route, workers, c)) for c in (True, False)
                    ]
                    cases += [(on, RoutingConfig(broker, route, workers, True, r)) for r in (0, 1)]
            strategies = mr.STRATEGIES if broker == "redis" else mr.STRATEGIES[:1]
            cases += [
                (prio, RoutingConfig(broker, (), (("celery",),), True, 0, True, late, s))
                for late in (False, True) for s in strategies
            ]  # fmt: skip
        return cases
    routed: tuple[mr.Mechanism, ...] = ("routes",)
    every: tuple[mr.Mechanism, ...] = ("routes", "attr", "option")
    return [
        (stuck, RoutingConfig("redis", routed, (("qr",),))),
        (stuck, RoutingConfig("redis", routed, (("celery",),))),
        (stuck, RoutingConfig("amqp", routed, (("celery",),))),
        (stuck, RoutingConfig("redis", routed, (("celery",),), create_missing=False)),
        (on, RoutingConfig("redis", every, (("qo",), ("qr", "qt", "celery")))),
        (on, RoutingConfig("redis", routed, (("qr",), ("celery",)), retries=1)),
        (on, RoutingConfig("amqp", routed, (("qr",), ("celery",)), retries=1)),
        (prio, RoutingConfig("redis", (), (("celery",),), priorities=True)),
        (prio, RoutingConfig("redis", (), (("celery",),), priorities=True, acks_late=True)),
        (prio, RoutingConfig("amqp", (), (("celery",),), priorities=True, acks_late=True)),
    ]  # fmt: skip


AREA = RoutingArea()
