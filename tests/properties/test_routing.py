"""Routing on real workers: every row of the routing matrix, and the fixed runs
docs/findings/routing.md cites for the reference's routing claims (celery-semantics.md
section 8a), each a scenario line replayed exactly, on both brokers where the broker
takes part (a queue made or consumed, a retry published from a worker, priorities);
the router's precedence and its refusal happen in the sender before any broker is
asked, so they run on Redis alone, with the refusal on RabbitMQ too."""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from properties.findings import Findings
from properties.plugin import Case, verify, verify_fixed_run


def test_routing(routing_case: Case, cluster: Cluster, report: Findings) -> None:
    verify(routing_case, cluster, report)


def _both(name: str, line: str, failure: str | None, shows: str) -> list[object]:
    return [
        pytest.param(line.format(broker=b), failure, shows, id=f"{name}-{b}")
        for b in ("redis", "amqp")
    ]


RUN_ONE = "submit; step t1; step t1"
RETRY_ONE = "submit; step t1; step t1; step t1; step t1#2; step t1#2"

# (scenario line, the failure it must end in or None if it must hold, a line its
# timeline must show)
FIXED = [
    pytest.param(
        f"runs-on-its-queue routing redis/routes+attr+option/qo|qr,qt,celery/create tasks=1: "
        f"{RUN_ONE}",
        None,
        "t1@w1        took its message from queue qo",
        id="precedence-option-over-attribute-and-routes",
    ),
    pytest.param(
        f"runs-on-its-queue routing redis/routes+attr/qt|qr,celery/create tasks=1: {RUN_ONE}",
        None,
        "t1@w1        took its message from queue qt",
        id="precedence-attribute-over-routes",
    ),
    pytest.param(
        f"runs-on-its-queue routing redis/default/celery|qr,qt,qo/create tasks=1: {RUN_ONE}",
        None,
        "t1@w1        took its message from queue celery",
        id="default-queue-celery",
    ),
    *_both(
        "missing-queue-created-silently",
        "no-stuck-task routing {broker}/routes/celery/create tasks=1: submit",
        "invariant violated",
        "broker: 1 message(s) STUCK in queue qr: no worker consumes it",
    ),
    *_both(
        "queue-not-found-when-missing-queues-are-not-created",
        "no-stuck-task routing {broker}/routes/celery/declared tasks=1: submit",
        None,
        "app: sending t1 RAISED QueueNotFound: \"Queue '",
    ),
    *_both(
        "dash-Q-replaces-the-default-queue",
        "no-stuck-task routing {broker}/default/qr/create tasks=1: submit",
        "invariant violated",
        "broker: 1 message(s) STUCK in queue celery: no worker consumes it",
    ),
    *_both(
        "autoretry-keeps-its-queue",
        f"runs-on-its-queue routing {{broker}}/routes/qr|celery/create/retry1 tasks=1: {RETRY_ONE}",
        None,
        "t1#2@w1      took its message from queue qr",
    ),
    pytest.param(
        "priority-order routing redis/default/celery/create/late/prio tasks=3: submit p9; "
        "submit p9; submit p0; step t1; step t1; step t3; step t3; step t2; step t2",
        None,
        "t3@w1        starts in w1",
        id="redis-priority-0-first-without-queue-order-strategy",
    ),
    pytest.param(
        "priority-order routing redis/default/celery/create/prio tasks=3: submit p9; "
        "submit p9; submit p0; step t1; step t1",
        "invariant violated",
        "t2@w1        starts in w1",
        id="redis-priority-early-ack-runs-the-prefetched-task-first",
    ),
    pytest.param(
        "priority-order routing redis/default/celery/create/prio/strategy-priority tasks=3: "
        "submit p9; submit p9; submit p0; step t1; step t1",
        "invariant violated",
        "t2@w1        starts in w1",
        id="redis-queue-order-strategy-priority-does-not-help-early-ack",
    ),
    pytest.param(
        "priority-order routing amqp/default/celery/create/late/prio tasks=3: submit p0; "
        "submit p0; submit p9; step t1; step t1; step t3; step t3; step t2; step t2",
        None,
        "t3@w1        starts in w1",
        id="amqp-priority-9-first",
    ),
]


@pytest.mark.parametrize(("line", "failure", "shows"), FIXED)
def test_routing_fixed_run(line: str, failure: str | None, shows: str, cluster: Cluster) -> None:
    verify_fixed_run(cluster, line, failure, shows)
