"""The standby that takes a dead worker's queue over is named in the history before
it adopts the queue: RabbitMQ redelivers to it at once, and a receipt is named as it
arrives. A soak run (2026-12-07) named two such receipts after the dead ``w1`` and
the model, which saw ``w2`` start tasks it never received, called it a mismatch."""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from harness.workers import Worker
from model import history as h
from properties.delivery import AREA
from properties.scenario import DeliveryScenario

pytestmark = [pytest.mark.servers, pytest.mark.workers]

LINE = (
    "delivery-model insert-on-conflict amqp/late+requeue/prefork/2 tasks=3: submit; kill t1;"
    " submit; kill-main t2; step t1#3; step t1#3; step t2#2; step t1#3; submit; step t2#2;"
    " step t2#2; step t3; step t3; step t3"
)


def test_redeliveries_to_the_standby_are_its_receipts(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race made certain: the standby's adoption returns only once a redelivery's
    # receipt has come in, as it did in the soak run when the broker was quick.
    adopt = Cluster.adopt

    def slow_adopt(self: Cluster, worker: Worker, queue: str) -> None:
        ctl = self.controller

        def receipts() -> int:
            events = ctl._receipts + ctl.history.events
            return sum(isinstance(e, h.Received) for e in events)

        before = receipts()
        adopt(self, worker, queue)
        ctl.wait(lambda: receipts() > before, "a redelivery's receipt", timeout=10)

    monkeypatch.setattr(Cluster, "adopt", slow_adopt)
    run, failure = AREA.replay(cluster, DeliveryScenario.decode(LINE))
    events = run.history.events
    restarted = next(i for i, e in enumerate(events) if isinstance(e, h.Restarted))
    after = [(e.task, e.worker) for e in events[restarted:] if isinstance(e, h.Received)]
    assert after[:2] == [("t1", "w2"), ("t2", "w2")], events
    assert failure is None, failure.lines
