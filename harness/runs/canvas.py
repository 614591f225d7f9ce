"""One canvas scenario on real workers, with faults: a chord (1-3 header tasks and a
body), a chain (2-3 steps) or a group (2-3 members).

The delivery runner (harness/runs/delivery.py) with its quiescence, faults and
standby, and these differences:

    submit    sends the whole canvas once: ``chord(header, body).apply_async()`` (the
              header tasks t1..tN, their body t9, model/canvas_config.py ``BODY``,
              whose message the broker owes only once a header run has published it),
              ``chain(t1, ..., tN).apply_async()`` (only t1 is sent: each later step's
              message is owed once a run of its predecessor published it) or
              ``group(t1, ..., tN).apply_async()``
    vt        the visibility timeout (an hour) passes: besides the unacked messages,
              every result-backend key whose TTL is shorter expires now (the chord's
              10 s dispatch claim, its 300 s ``done`` marker), as they would have
              before Redis redelivers anything
    expire    (a chord on RabbitMQ, which redelivers at once: no vt) those result-backend
              keys' TTLs pass now; offered while a header run that died holds the
              chord's dispatch claim, as time passes in production before a
              redelivered header waiting behind other work is counted

Every other move (step, kill, kill-main) is the delivery runner's, at the
header's points (``done``, ``count``, ``published``, ``counted``: tasks/canvas.py), the
body's and a step's (``done``, ``published``, ``stored``; ``retry``, ``retried``). A
header's or a step's run stores its result before its execution ends (its execution
stays open through Celery's ``mark_as_done``), so a finished run counts as stored once
it has ended (a retrying run's RETRY is stored after: that one is waited for).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from harness.accounting import Message
from harness.cluster import Cluster
from harness.runs.delivery import MAX_VT, VISIBILITY_TIMEOUT, DeliveryRun, DeliveryRunner
from model import history as h
from model.canvas import CLAIM
from model.canvas_config import BODY, RETRYING_STEP, CanvasConfig
from model.canvas_properties import moves
from model.canvas_unlock import UNLOCK
from model.config import DeliveryConfig
from tasks.canvas import UNLOCK as UNLOCK_TASK


@dataclass
class Callback(Message):
    """The body's message, or a chain's later step's: owed only once a run published
    it (``published`` counts those publishes, harness/recorder.py ``CANVAS``), not at
    submit."""

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
            results="db" if config.join == "db" else "redis",
        )  # fmt: skip
        super().__init__(cluster, delivery, moves(prop))
        self.spec = replace(
            self.spec, chord_ordered=config.join == "zset", canvas_plugin=config.plugin
        )
        self.canvas = config

    def _new_run(self, tasks: int, n: int, history: h.History) -> CanvasRun:
        return CanvasRun(self.config, tasks, history, order=f"c{n}", canvas=self.canvas)

    def _unsettled(self) -> str | None:
        # A header's or a step's run stores its result inside its execution (before
        # its end), so the store report came before the end on the same channel:
        # ended is stored. Not a retrying run's RETRY, stored after its end.
        # A chord_unlock poll stores nothing (ignore_result).
        for e in self.cluster.controller.executions.values():
            if e.task == UNLOCK and e.status == "ok":
                e.stored = "nothing"
            elif e.task != BODY and e.status == "ok" and e.stored is None and e.retried is None:
                e.stored = "SUCCESS"
        return super()._unsettled()

    def enabled(self, run: DeliveryRun, tasks: int) -> list[str]:
        if self._polls_forever(run):
            return []  # the example is over: chord_unlock would poll the same forever
        if self._polls_wait_for_vt():
            return ["vt"]
        moves = super().enabled(run, 1)  # one submit: the whole canvas
        amqp = self.config.broker == "amqp" and "vt" in self.allowed
        if moves and amqp and not self._expired and self._claim_of_the_dead():
            moves.append("expire")
        return moves

    def _begin(self, run: DeliveryRun, n: int) -> None:
        super()._begin(run, n)
        self._expired = False
        self._gid: str | None = None

    def _apply(self, run: DeliveryRun, move: str) -> None:
        if move == "submit":
            self._submit(run)
            return
        if move in ("vt", "expire"):
            self._expire_short_keys()
        if move == "expire":
            self._expired = True
            run.history.append(h.Expired(CLAIM))
            return
        super()._apply(run, move)

    def _polls_forever(self, run: DeliveryRun) -> bool:
        """Only chord_unlock polls are left (parked at their start), nothing else will
        ever run (no header runs, is owed, or waits unacked for a visibility
        timeout), and some header has no final state: each poll would find what the
        last one found and retry (``max_retries=None``, celery/app/builtins.py) for
        good."""
        if self.canvas.join != "db" or not self._counts["submit"]:
            return False
        ctl = self.cluster.controller
        if not self._only_polls():
            return False
        headers = [ctl.messages[tid] for t, tid in run.task_ids.items() if t not in (BODY, UNLOCK)]
        if any(m.owed() > 0 for m in headers):
            return False
        if self._header_unacked():
            return False
        return not all("SUCCESS" in m.states or m.states[-1:] == ["FAILURE"] for m in headers)

    def _only_polls(self) -> bool:
        """What runs is chord_unlock polls, each parked at its start."""
        live = self.cluster.controller.live()
        return bool(live) and all(e.task == UNLOCK and e.state == "parked" for e in live)

    def _polls_wait_for_vt(self) -> bool:
        """Only chord_unlock polls run, a header's message waits unacked for the
        visibility timeout (its worker died), and the scenario's own ``vt`` moves are
        used up: the polls would retry until the move bound (seen in the full matrix:
        ``fires-once chord/redis/late/db``, 400 moves). As a delivery scenario's end,
        every redelivery runs before the verdict: ``vt`` is the only move."""
        if self.canvas.join != "db" or self.config.broker != "redis":
            return False
        if self._counts["vt"] < MAX_VT or not self._only_polls():
            return False
        return self._header_unacked()

    def _header_unacked(self) -> bool:
        """Some message other than a poll's waits unacked for a visibility timeout."""
        ctl = self.cluster.controller
        return bool({ctl.messages[i].task for i in self._unacked()} - {UNLOCK})

    def _claim_of_the_dead(self) -> bool:
        """The chord's dispatch claim is held by a header run that is gone: it is not
        ``done`` (cleaned up) and no live run is between its count and its cleanup."""
        if self._gid is None or self.canvas.join == "db":
            return False
        ctl = self.cluster.controller
        if any(e.point == "published" for e in ctl.live()):
            return False
        claim = self.cluster.app.backend.client.get(f"celery-taskset-meta-{self._gid}.c")
        return claim not in (None, b"done")

    def _submit(self, run: DeliveryRun) -> None:
        self._counts["submit"] += 1
        if self.canvas.shape == "chord":
            self._submit_chord(run)
        elif self.canvas.plugin:
            self._submit_plugin(run, self.canvas.plugin)
        else:
            self._submit_steps(run)

    def _submit_plugin(self, run: DeliveryRun, spec: str) -> None:
        """The plug-in's canvas for this example's order, its tasks named t1..tN in
        the order ``leaves`` gives; a task its canvas publishes later (a chain's later
        step, a chord's body) is owed once a run published it."""
        from tasks import canvas_plugins

        ctl = self.cluster.controller
        signature = canvas_plugins.build(spec, self.cluster.sender(self.config.broker))(
            self._order(run)
        )
        for task, _ in leaves(signature):
            task.set(queue=self.queue)  # the scenario's workers, wherever it is published
        signature.freeze()  # every task id now, kept by apply_async
        before = ""
        for k, (task, now) in enumerate(leaves(signature), start=1):
            t, tid = f"t{k}", str(task.options["task_id"])
            run.task_ids[t] = tid
            ctl.accept(t, tid)
            if now:
                run.history.append(h.Submitted(t))
            else:
                ctl.messages[tid] = Callback(t)
                run.history.append(h.Chained(t, before))
            before = t
        signature.apply_async()

    def _order(self, run: DeliveryRun) -> str:
        """The order key a plug-in canvas's effects are keyed by: ``o<example>``, as
        the delivery area's (replays blank it out, properties/timeline.py
        ``anonymous``), after the run id that keeps runs on one PostgreSQL apart."""
        return f"{self.cluster.run_id}o{run.order.removeprefix('c')}"

    def _submit_steps(self, run: DeliveryRun) -> None:
        """A chain of steps t1..tN (each later step owed once published) or a group."""
        from celery import chain, group

        ctl = self.cluster.controller
        app = self.cluster.sender(self.config.broker)
        sigs = []
        for k in range(1, run.tasks + 1):
            t = f"t{k}"
            tid = run.task_ids[t] = f"{run.order}-{t}"
            ctl.accept(t, tid)
            if self.canvas.shape == "chain" and k > 1:
                ctl.messages[tid] = Callback(t)
                run.history.append(h.Chained(t, f"t{k - 1}"))
            else:
                run.history.append(h.Submitted(t))
            retries = int(self.canvas.retry and t == RETRYING_STEP)
            sigs.append(app.signature(
                "suite.canvas_step", kwargs={"spec": {"task": t, "retries": retries}},
                queue=self.queue, task_id=tid,
            ))  # fmt: skip
        (chain if self.canvas.shape == "chain" else group)(sigs).apply_async()

    def _submit_chord(self, run: DeliveryRun) -> None:
        from celery import chord, signals

        ctl = self.cluster.controller
        headers = [f"t{i}" for i in range(1, run.tasks + 1)]
        app = self.cluster.sender(self.config.broker, results=self.config.results)
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
        unlocks: list[str] = []

        def unlock(sender: Any = None, headers: Any = None, **_: Any) -> None:
            if sender == UNLOCK_TASK:  # the database backend's poller (its id is Celery's)
                unlocks.append(str((headers or {}).get("id")))

        signals.before_task_publish.connect(unlock, weak=False)
        try:
            result = chord(sigs, body).apply_async()
        finally:
            signals.before_task_publish.disconnect(unlock)
        self._gid = result.parent.id  # the header's GroupResult (canvas.py chord.run)
        for uid in unlocks:  # before any poll can start: the controller reads it later
            run.task_ids[UNLOCK] = uid
            ctl.accept(UNLOCK, uid)

    def _expire_short_keys(self) -> None:
        """Every result-backend key with a TTL under the visibility timeout expires."""
        client = self.cluster.app.backend.client
        limit = int(VISIBILITY_TIMEOUT * 1000)
        for key in client.scan_iter(match="celery-taskset-meta-*", count=1000):
            if 0 < int(client.pttl(key)) < limit:
                client.pexpire(key, 1)

    def _end(self, run: DeliveryRun) -> None:
        cluster, ctl = self.cluster, self.cluster.controller
        for ex in ctl.live():  # a poll left parked by _polls_forever ends, not retried
            if ex.task == UNLOCK and ex.state == "parked":
                ctl.wire.send(ex.conn, {"stale": True, "why": "the example is over"})
                ex.state = "done"
        for task, tid in run.task_ids.items():
            if task != UNLOCK:  # chord_unlock stores nothing (ignore_result)
                run.history.append(h.FinalState(task, cluster.state(tid, self.config.results)))
        if self.canvas.plugin:  # its effects: the invoices of each key of the order
            order = self._order(run)
            rows = cluster.pg.execute(
                "SELECT order_id, count(*) FROM invoices WHERE order_id = %s "
                "OR order_id LIKE %s GROUP BY order_id ORDER BY order_id",
                (order, f"{order}:%"),
            ).fetchall()
            for key, count in rows:  # named without the run id: timelines repeat
                run.history.append(h.InvoiceCount(str(key)[len(self.cluster.run_id) :], count))


def leaves(signature: Any, now: bool = True) -> list[tuple[Any, bool]]:
    """The task signatures of a canvas in order, each with whether submitting it sends
    it now (a chain's first step, a group's members, a chord's header) or a run of
    another publishes it later (a chain's later steps, a chord's body)."""
    from celery.canvas import _chain, _chord, group

    if isinstance(signature, _chain):
        return [x for k, s in enumerate(signature.tasks) for x in leaves(s, now and k == 0)]
    if isinstance(signature, _chord):  # its header is a group (iterating a group: keys)
        return [*leaves(signature.tasks, now), *leaves(signature.body, False)]
    if isinstance(signature, group | list | tuple):  # a chord's header may be a list
        tasks = signature.tasks if isinstance(signature, group) else signature
        return [x for s in tasks for x in leaves(s, now)]
    return [(signature, now)]
