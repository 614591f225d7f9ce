"""One chord scenario: 1-3 header tasks and a body on real workers, with faults.

The delivery runner (harness/runs/delivery.py) with its quiescence, faults and
standby, and these differences:

    submit    sends the whole chord once (``chord(header, body).apply_async()``): the
              header tasks t1..tN, their body t9 (model/canvas.py ``BODY``), whose
              message the broker owes only once a header run has published it
    vt        the visibility timeout (an hour) passes: besides the unacked messages,
              every result-backend key whose TTL is shorter expires now (the chord's
              10 s dispatch claim, its 300 s ``done`` marker), as they would have
              before Redis redelivers anything

Every other move (step, kill, kill-main) is the delivery runner's, at the header's
points (``done``, ``count``, ``published``, ``counted``: tasks/canvas.py) and the
body's. A header run's result is stored before its execution ends (its execution
stays open through Celery's ``mark_as_done``), so a finished header run counts as
stored once it has ended.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.accounting import Message
from harness.cluster import Cluster
from harness.runs.delivery import VISIBILITY_TIMEOUT, DeliveryRun, DeliveryRunner
from model import history as h
from model.canvas import BODY, PROPERTIES, CanvasConfig
from model.config import DeliveryConfig


@dataclass
class Callback(Message):
    """The body's message: owed only once a header run published it (``published``
    counts those publishes, harness/recorder.py ``CANVAS``), not at submit."""

    def owed(self) -> int:
        return self.published + self.requeued + self.closed - len(self.received)


@dataclass
class CanvasRun(DeliveryRun):
    canvas: CanvasConfig | None = None


class CanvasRunner(DeliveryRunner):
    def __init__(self, cluster: Cluster, config: CanvasConfig, prop: str) -> None:
        delivery = DeliveryConfig(
            config.broker, config.pool, config.concurrency, config.acks_late,
            config.reject_on_worker_lost, track_started=False, chord=True,
        )  # fmt: skip
        super().__init__(cluster, delivery, PROPERTIES[prop][0])
        self.spec = replace(self.spec, chord_ordered=config.join == "zset")
        self.canvas = config

    def _new_run(self, tasks: int, n: int, history: h.History) -> CanvasRun:
        return CanvasRun(self.config, tasks, history, order=f"c{n}", canvas=self.canvas)

    def _unsettled(self) -> str | None:
        # A header run stores its result inside its execution (before its end), so the
        # store report came before the end on the same channel: ended is stored.
        for e in self.cluster.controller.executions.values():
            if e.task != BODY and e.status == "ok" and e.stored is None:
                e.stored = "SUCCESS"
        return super()._unsettled()

    def enabled(self, run: DeliveryRun, tasks: int) -> list[str]:
        return super().enabled(run, 1)  # one submit: the whole chord

    def _apply(self, run: DeliveryRun, move: str) -> None:
        if move == "submit":
            self._submit(run)
            return
        if move == "vt":
            self._expire_short_keys()
        super()._apply(run, move)

    def _submit(self, run: DeliveryRun) -> None:
        from celery import chord

        ctl = self.cluster.controller
        self._counts["submit"] += 1
        headers = [f"t{i}" for i in range(1, run.tasks + 1)]
        app = self.cluster.sender(self.config.broker)
        sigs = []
        for t in headers:
            tid = run.task_ids[t] = f"{run.order}-{t}"
            ctl.accept(t, tid)
            run.history.append(h.Submitted(t))
            sigs.append(app.signature(
                "suite.canvas_part", args=[{"task": t}], queue=self.queue, task_id=tid,
            ))  # fmt: skip
        bid = run.task_ids[BODY] = f"{run.order}-{BODY}"
        ctl.accept(BODY, bid)
        ctl.messages[bid] = Callback(BODY)
        body = app.signature(
            "suite.canvas_body", kwargs={"spec": {"task": BODY}}, queue=self.queue, task_id=bid
        )
        chord(sigs, body).apply_async()

    def _expire_short_keys(self) -> None:
        """Every result-backend key with a TTL under the visibility timeout expires."""
        client = self.cluster.app.backend.client
        limit = int(VISIBILITY_TIMEOUT * 1000)
        for key in client.scan_iter(match="celery-taskset-meta-*", count=1000):
            if 0 < int(client.pttl(key)) < limit:
                client.pexpire(key, 1)

    def _end(self, run: DeliveryRun) -> None:
        cluster = self.cluster
        for task, tid in run.task_ids.items():
            run.history.append(h.FinalState(task, cluster.state(tid)))
