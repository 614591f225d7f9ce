"""One routing scenario: tasks sent the config's way, workers on their own queues.

The sender is an app of its own in this process, configured like the workers
(tasks/routing.py: ``task_routes``, the task's ``queue`` attribute, missing queues,
priorities), so a send is routed by Celery's own router. Each worker of the config
(``w1``, ``w2``, ...) consumes its ``-Q`` queues, one slot (threads pool), prefetch one.
Moves:

    submit      send the next task (``submit pN``: with priority N, priority scenarios)
    step tN     let tN run to its next scheduling point (``done``; with retries,
                ``retry``, then ``retried`` once Celery published the retry)

A send is observed, not assumed: Celery's ``before_task_publish`` in this process
records where it went (``Routed``), and a ``QueueNotFound`` from the send is recorded
as ``SendRefused``. Quiescence covers the messages: every message published (sends
and retries) has been received by a worker or waits in a queue of the scenario, no
worker with a free prefetch slot has a message waiting in a queue it consumes, none
has a received message waiting with a free slot, and every ack due is reported. So a
message in a queue no worker consumes is *seen* waiting there, never waited out: the
end of a scenario reads the queue lengths and records what is left as ``Stuck``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from celery import signals

from harness import accounting
from harness.cluster import Cluster
from harness.controller import Execution
from harness.errors import HarnessError
from harness.ordering import natural
from harness.runs.base import Run, Runner
from harness.runs.faults import BROKER_POLL
from harness.workers import Worker, WorkerSpec
from model import history as h
from model import routing as mr
from model.routing import RoutingConfig

TASK = "suite.routed"  # tasks/routing.py
MAX_MOVES = 100
PREFETCH = 1  # worker_prefetch_multiplier x one slot
WAKE_EVERY = 0.05


@dataclass
class RoutingRun(Run):
    config: RoutingConfig
    task_ids: dict[str, str] = field(default_factory=dict)


def settings(config: RoutingConfig, prefix: str, expires_ms: int) -> str:
    """The routing settings every app of the scenario gets (tasks/routing.py)."""
    amqp_priorities = config.priorities and config.broker == "amqp"
    conf = {
        "prefix": prefix,
        "routes": mr.QUEUE_OF["routes"] if "routes" in config.route else None,
        "attr": mr.QUEUE_OF["attr"] if "attr" in config.route else None,
        "create_missing": config.create_missing,
        "declared": sorted(mr.consumed(config)),
        "max_priority": mr.MAX_PRIORITY if amqp_priorities else None,
        "strategy": config.strategy if config.broker == "redis" else None,
        "expires_ms": expires_ms,
    }
    return json.dumps(conf, sort_keys=True)


class RoutingRunner(Runner[RoutingRun]):
    max_moves = MAX_MOVES
    config: RoutingConfig

    def __init__(self, cluster: Cluster, config: RoutingConfig) -> None:
        # Queues of one config are its own (a config's label in their names): RabbitMQ
        # refuses to redeclare a queue with other arguments (x-max-priority).
        digest = hashlib.sha256(config.label().encode()).hexdigest()[:6]
        self.prefix = f"{cluster.run_id}{digest}-"
        text = settings(config, self.prefix, int(cluster.env["SUITE_QUEUE_EXPIRES_MS"]))
        self.specs = [
            WorkerSpec("threads", 1, acks_late=config.acks_late, broker=config.broker,
                       queues=tuple(f"{digest}-{q}" for q in queues), routing=text)
            for queues in config.workers
        ]  # fmt: skip
        super().__init__(cluster, config, self.specs[0], 1)
        self.text = text
        self.broker = cluster.broker(config.broker)
        self.universe = sorted(set(mr.QUEUES) | set(mr.consumed(config)))
        cluster.own_queues(config.broker, [self.physical(q) for q in self.universe])
        self._sender: Any = None

    # --- the sender, the workers, the queues ----------------------------------------

    def physical(self, queue: str) -> str:
        return f"{self.prefix}{queue}"

    def sender(self) -> Any:
        """This config's sending app: Celery's router, with the workers' settings.
        On RabbitMQ with publisher confirms, so a send has reached its queue when it
        returns."""
        if self._sender is None:
            from celery import Celery

            from tasks import routing

            _ = self.cluster.app  # tasks.app: how the suite declares queues
            url = (
                self.cluster.env["SUITE_BROKER_URL"]
                if self.config.broker == "redis"
                else self.cluster.amqp_url()
            )
            app = Celery("suite-routing", broker=url, set_as_current=False)
            app.conf.broker_connection_retry_on_startup = False
            if self.config.broker == "amqp":
                app.conf.broker_transport_options = {"confirm_publish": True}
            routing.register(app, self.text)
            self._sender = app
        return self._sender

    def _get_worker(self) -> Worker:
        cluster = self.cluster
        # Only one config's workers live at a time (a later row of a config reuses its
        # queue names, so an old worker must not be left consuming them).
        for spec in list(cluster.workers):
            if spec.routing and spec not in self.specs:
                cluster.evict(spec)
        self.workers = [cluster.worker(spec) for spec in self.specs]
        return self.workers[0]

    def _new_run(self, tasks: int, n: int, history: h.History) -> RoutingRun:
        return RoutingRun(self.config, tasks, history)

    def _begin(self, run: RoutingRun, n: int) -> None:
        ctl = self.cluster.controller
        for i, worker in enumerate(self.workers, start=1):
            ctl.aliases[worker.hostname] = f"w{i}"
        ctl.defer_starts = True  # added at each quiescent point, in task order
        self.run_ = run
        self.order = f"r{n}"
        self.submitted = 0
        self.published = 0  # sends that reached the broker (retries are counted apart)
        self._waiting: str | None = None
        signals.before_task_publish.connect(self._published, weak=False)

    def _published(
        self, sender: Any = None, body: Any = None, routing_key: str = "",
        properties: Any = None, **_: Any,
    ) -> None:  # fmt: skip
        """``before_task_publish`` in this process: a send of this example's task.
        Protocol 2 body: (args, kwargs, embed); args[0] is the spec the runner sent."""
        if sender != TASK:
            return
        spec = body[0][0] if isinstance(body, list | tuple) and body and body[0] else {}
        if not isinstance(spec, dict) or spec.get("order") != self.order:
            return
        priority = (properties or {}).get("priority")
        queue = str(routing_key).removeprefix(self.prefix)
        self.run_.history.append(h.Routed(str(spec["task"]), queue, priority))
        self.published += 1

    # --- moves -------------------------------------------------------------------------

    def enabled(self, run: RoutingRun, tasks: int) -> list[str]:
        live = sorted(self.cluster.controller.live(), key=lambda e: natural(e.id))
        moves = [f"step {e.id}" for e in live if e.state == "parked"]
        if self.submitted < tasks:
            moves += (
                [f"submit p{p}" for p in mr.PRIORITIES] if self.config.priorities else ["submit"]
            )
        return moves

    def apply(self, run: RoutingRun, move: str) -> None:
        verb, _, arg = move.partition(" ")
        if verb == "submit":
            self._submit(run, arg)
        elif verb == "step":
            self.cluster.controller.release(arg)
        else:
            raise HarnessError(f"unknown move {move!r}")
        self._settle()

    def _submit(self, run: RoutingRun, arg: str) -> None:
        from celery.exceptions import QueueNotFound

        if self.config.priorities != bool(arg):
            raise HarnessError(f"'submit {arg}': a priority scenario's submit names a priority")
        ctl = self.cluster.controller
        self.submitted += 1
        task = f"t{self.submitted}"
        tid = run.task_ids[task] = f"{self.order}-{task}"
        ctl.accept(task, tid)
        run.history.append(h.Submitted(task))
        options: dict[str, Any] = {}
        if "option" in self.config.route:
            options["queue"] = self.physical(mr.QUEUE_OF["option"])
        if arg:
            options["priority"] = int(arg.removeprefix("p"))
        spec = {
            "task": task, "order": self.order, "prefix": self.prefix,
            "retries": self.config.retries,
        }  # fmt: skip
        app = self.sender()
        try:
            # A connection of this send's own, closed with it: the sender app keeps no
            # pool open past the example (and its row).
            with app.connection_for_write() as conn, conn.Producer() as producer:
                app.tasks[TASK].apply_async(args=[spec], task_id=tid, producer=producer, **options)
        except QueueNotFound as exc:  # its text names the queue, run id and all
            error = str(exc).replace(self.prefix, "")
            run.history.append(h.SendRefused(task, f"QueueNotFound: {error}"))

    # --- quiescence ----------------------------------------------------------------------

    def runs_on(self, worker: Worker, ex: Execution) -> bool:
        proc = self.cluster.controller.procs.get(ex.pid)
        return proc is not None and proc.worker == worker.hostname

    def ready(self) -> dict[str, int]:
        """Messages waiting in each queue of the scenario."""
        return {q: self.broker.ready(self.physical(q)) for q in self.universe}

    def _unsettled(self) -> str | None:
        ctl = self.cluster.controller
        if any(e.state == "running" for e in ctl.executions.values()):
            return "an execution is running"
        ready = self.ready()
        messages = list(ctl.messages.values())
        published = self.published + sum(m.published for m in messages)  # + retries
        seen = sum(len(m.received) for m in messages) + sum(ready.values())
        if seen < published:
            return f"{published - seen} message(s) neither received nor in a queue of the scenario"
        if seen > published:
            raise HarnessError(f"{seen - published} message(s) in the scenario's queues that "
                               f"it did not send: {ready}")  # fmt: skip
        for i, worker in enumerate(self.workers):
            if why := self._unsettled_on(worker, self.config.workers[i], ready, messages):
                return f"w{i + 1}: {why}"
        return None

    def _unsettled_on(
        self, worker: Worker, queues: tuple[str, ...], ready: dict[str, int],
        messages: list[accounting.Message],
    ) -> str | None:  # fmt: skip
        ctl, host = self.cluster.controller, worker.hostname
        live = [e for e in ctl.live() if self.runs_on(worker, e)]
        held = accounting.held(messages, host, self.config.broker)
        if held < PREFETCH * self.capacity and (full := [q for q in queues if ready[q]]):
            return f"a message waits in {full[0]}, which it consumes, with prefetch room"
        for m in messages:
            runs = [
                e for e in ctl.executions.values() if e.task == m.task and self.runs_on(worker, e)
            ]
            if len(live) < self.capacity and m.received.count(host) > len(runs):
                return f"{m.task}: received with a free slot, not started"
            ended = sum(1 for e in runs if e.state in ("done", "dead"))
            # Early ack: at the start (the threads pool accepts as it starts the job).
            due = ended if self.config.acks_late else len(runs)
            if m.settled_by.count(host) < due:
                return f"{m.task}: the ack of a delivery is not reported"
        return None

    def _settle(self) -> None:
        woken = time.monotonic()

        def check() -> None:
            nonlocal woken
            if time.monotonic() - woken >= WAKE_EVERY:  # an ack a loop queued for itself
                woken = time.monotonic()
                for w in self.workers:
                    self.cluster.wake(w)

        def settled() -> bool:
            self._waiting = self._unsettled()
            return self._waiting is None

        try:
            self.cluster.controller.wait(
                settled, "the workers and the broker to settle", poll=BROKER_POLL, check=check
            )
        except HarnessError as exc:
            raise HarnessError(f"{exc} (still waiting: {self._waiting})") from None
        self.cluster.controller.flush()

    # --- before and after the moves --------------------------------------------------------

    def _before_moves(self, run: RoutingRun) -> None:
        self._settle()

    def _after_moves(self) -> None:
        self.cluster.controller.defer_starts = False
        signals.before_task_publish.disconnect(self._published)

    def _after_error(self) -> None:
        """After a harness error: fresh workers and empty queues for the next example."""
        for worker in self.workers:
            with contextlib.suppress(Exception):  # the error being raised matters more
                worker.kill_main()
            self.cluster.workers.pop(worker.spec, None)
        self._empty()

    def _end(self, run: RoutingRun) -> None:
        """What waits where, once nothing moves: a message in a consumed queue would
        have been taken (quiescence), so whatever is left nobody consumes."""
        owned = mr.consumed(self.config)
        for queue, n in self.ready().items():
            if n and queue in owned:
                raise HarnessError(f"{n} message(s) left in {queue}, which {owned[queue]} consumes")
            if n:
                run.history.append(h.Stuck(queue, n))
        self._empty()

    def _empty(self) -> None:
        if self.config.broker == "redis":
            self.broker.delete([self.physical(q) for q in self.universe])
        else:
            self.broker.purge([self.physical(q) for q in self.universe])
