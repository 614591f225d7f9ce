"""One delivery scenario: messages, faults and redeliveries on real workers and brokers.

Like the lock runner, it waits for quiescence and offers the enabled moves, sorted and
named by task, to a chooser. Quiescence here also covers the messages: nothing the
broker holds is about to reach a worker that could take it, nothing a worker received
is about to start, every loss of a pool child has been handled by the main process,
and every finished execution has had its result stored (and, with acks_late, its
message acked). Moves:

    submit       publish the next task (only when a pool slot is free, unless the
                 scenario allows ``reserve``: then it waits in the worker's prefetch
                 buffer; with a countdown it waits in the worker's timer, unacked)
    eta          wait for every countdown to pass and its runs to start (fixed claims)
    step tN      let tN run to its next scheduling point
    kill tN      SIGKILL tN's process: a prefork child, the whole worker otherwise
    kill-main tN SIGKILL the main process of tN's worker (prefork: children die too)
    term         SIGTERM to the active worker (warm shutdown); the standby takes over
    quit         SIGQUIT to the active worker (cold shutdown); it exits, the standby
                 takes over (fixed claims only: properties/semantics.py)
    drop         cut the active worker's broker connections; it reconnects (fixed
                 claims only)
    ctimeout     RabbitMQ's consumer_timeout passes (a private node; fixed claims only)
    vt           Redis: the visibility timeout passes now for every unacked message

With a gate (``DeliveryConfig.gate``, fixed claims only), t1's job is held once inside
the prefork pool (tasks/app.py ``_gates``): ``accept`` in the child that read it,
before it tells the parent; ``kill t1`` then kills that child. ``accepted`` in the
main process, before it acks; the run goes on in the child.

When the active worker's main process dies, the warm standby adopts its queue. A
scenario ends when every task was submitted, nothing runs, and (Redis) no message is
left unacked by a dead worker: if one is, ``vt`` is the only move left, so every
redelivery has run before the invariants are checked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.cluster import Cluster
from harness.controller import Execution, natural, play
from harness.errors import HarnessError
from harness.workers import Worker, WorkerSpec
from model import history as h
from model.config import DeliveryConfig

Chooser = Callable[[list[str]], str]

MAX_KILLS = 2
MAX_SHUTDOWNS = 1
MAX_VT = 2
MAX_MOVES = 400
# Never reached by itself: a scenario lasts seconds. Only the vt move ages a message.
VISIBILITY_TIMEOUT = 3600.0
BROKER_POLL = 0.01  # between looks at a broker queue while a move's effect lands
WAKE_EVERY = 0.05  # between wakes of the workers' event loops while a settle waits


@dataclass
class DeliveryRun:
    config: DeliveryConfig
    tasks: int
    history: h.History
    moves: list[str] = field(default_factory=list)
    order: str = ""
    task_ids: dict[str, str] = field(default_factory=dict)


class DeliveryRunner:
    def __init__(self, cluster: Cluster, config: DeliveryConfig, allowed: frozenset[str]) -> None:
        self.cluster = cluster
        self.config = config
        self.allowed = allowed
        self.spec = WorkerSpec(
            config.pool, config.concurrency, acks_late=config.acks_late,
            reject_on_worker_lost=config.reject_on_worker_lost, broker=config.broker,
            acks_on_failure=config.acks_on_failure, dedup=config.dedup,
            cancel_on_loss=config.cancel_on_loss, track_started=config.track_started,
            prefetch=config.prefetch, gates=config.gate is not None, results=config.results,
            consumer_timeout_ms=config.consumer_timeout_ms,
        )  # fmt: skip
        self.capacity = config.concurrency
        self.broker = cluster.broker(config.broker, config.consumer_timeout_ms)

    def run(self, tasks: int, choose: Chooser) -> DeliveryRun:
        cluster, ctl = self.cluster, self.cluster.controller
        self.worker = cluster.worker(self.spec)
        cluster.prepare_standby(self.spec)
        self.queue = self.worker.queue  # the scenario's queue, whoever consumes it
        ctl.forget_dead()
        n = cluster.next_example()
        run = DeliveryRun(self.config, tasks, ctl.begin_example(), order=f"o{n}")
        # Workers are named by role in the example: w1 consumes the queue first, w2
        # takes it over when w1's main process dies, and so on.
        self._workers = 1
        ctl.aliases[self.worker.hostname] = "w1"
        ctl.defer_starts = True  # added at each quiescent point, in task order
        self._counts = {
            "submit": 0, "kill": 0, "vt": 0, "term": 0, "quit": 0, "drop": 0, "ctimeout": 0,
        }  # fmt: skip
        self._handled: dict[str, int] = {}  # task id -> losses its main must handle
        self.draining: list[Worker] = []  # warm shutdown under way: they finish and exit
        self._waiting: str | None = None  # what the last look at quiescence waited for
        self._eta: dict[str, float] = {}  # task id -> when its countdown ends (monotonic)
        self._held_seen: set[str] = set()  # tasks whose Held event is in the history
        try:
            self._settle(run)

            def apply(move: str) -> None:
                self.apply(run, move)
                self._settle(run)

            play(run.moves, lambda: self.enabled(run, tasks), choose, apply, MAX_MOVES)
        except BaseException:
            self._reset()
            raise
        finally:
            ctl.defer_starts = False
        for task, tid in run.task_ids.items():
            run.history.append(h.FinalState(task, cluster.state(tid, self.config.results)))
        if self.config.chord:  # the body runs, or is failed, once its header has ended
            for task, tid in run.task_ids.items():
                bid = f"{tid}-body"
                what = f"the chord body of {task} to end"
                ctl.wait(lambda: cluster.state(bid) != "PENDING", what, poll=BROKER_POLL)  # noqa: B023
                run.history.append(h.FinalState(f"chord({task})", cluster.state(bid)))
        for task in run.task_ids:  # one order per task: only its own runs may overlap
            order = f"{run.order}-{task}"
            run.history.append(h.InvoiceCount(order, cluster.effect_count(order)))
        if ctl.anomalies:
            raise HarnessError("control channel anomalies: " + "; ".join(ctl.anomalies))
        return run

    # --- what the workers and the broker hold ---------------------------------------

    def _on(self, worker: Worker, ex: Execution) -> bool:
        proc = self.cluster.controller.procs.get(ex.pid)
        return proc is not None and proc.worker == worker.hostname

    def _unacked(self) -> list[str]:
        """Task ids of messages the broker holds delivered and unacked (Redis)."""
        ids = self.broker.unacked_ids() if self.config.broker == "redis" else []
        return [i for i in ids if i in self.cluster.controller.messages]

    def _held_on(self, worker: Worker, task: str, gate: str) -> int:
        """1 if ``task``'s job is held at ``gate`` by a live process of ``worker``."""
        g = self.cluster.controller.held.get(task)
        proc = self.cluster.controller.procs.get(g.pid) if g is not None else None
        if g is None or proc is None:
            return 0
        return int(g.alive and g.name == gate and proc.alive and proc.worker == worker.hostname)

    def _settled(self) -> bool:
        self._waiting = self._unsettled()
        return self._waiting is None

    def _unsettled(self) -> str | None:
        """What the system is still doing, or None when it is quiescent."""
        ctl, worker = self.cluster.controller, self.worker
        if any(e.state == "running" for e in ctl.executions.values()):
            return "an execution is running"
        for tid, m in ctl.messages.items():
            if m.handled < self._handled.get(tid, 0):
                return f"{m.task}: the main process is handling its lost child"
        for g in ctl.held.values():
            if g.alive and g.pid not in ctl.procs:
                return f"{g.task}: the hello of the process holding it at {g.name!r}"
        if why := self._unsettled_on(worker, active=True):
            return why
        for w in list(self.draining):
            if why := self._unsettled_on(w, active=False):
                return why
            if any(e.state == "parked" for e in ctl.live() if self._on(w, e)):
                continue  # still finishing its runs; they move when stepped
            # Exited is not enough: its last reports (the ack of the run it finished)
            # may still be unread. A process's report stream ends after them.
            if w.alive() or any(p.alive for p in w.processes()):
                return f"{ctl.aliases.get(w.hostname)} to finish its warm shutdown and exit"
            self.draining.remove(w)
        redis = self.config.broker == "redis"
        if redis and worker.alive() and self.broker.aged(VISIBILITY_TIMEOUT):
            return "a consuming worker's scan has not restored the timed-out messages"
        return None

    def _unsettled_on(self, worker: Worker, active: bool) -> str | None:
        """The same, for what one worker holds. Only the active worker consumes."""
        ctl = self.cluster.controller
        host = worker.hostname
        live_here = [e for e in ctl.live() if self._on(worker, e)]
        # A job held in a child before it accepts takes that child's slot.
        pending = sum(self._held_on(worker, m.task, "accept") for m in ctl.messages.values())
        if self.config.broker == "redis":
            held = sum(m.held_by(host) for m in ctl.messages.values())
        else:  # AMQP counts every unacked delivery on the channel
            held = sum(m.outstanding(host) for m in ctl.messages.values())
        spare = self.config.prefetch * self.capacity - held
        for tid, m in ctl.messages.items():
            if active and m.owed() > 0 and worker.alive() and spare > 0:
                return f"{m.task}: the broker owes a delivery the worker can take"
            runs = [e for e in ctl.executions.values() if e.task == m.task and self._on(worker, e)]
            # A delivery the tracer skipped (dedup) took a slot and ended without a run.
            skipped = m.skipped.count(host)
            due_now = tid not in self._eta  # else in the worker's timer: not due yet
            free = len(live_here) + pending < self.capacity
            waiting = len(runs) + skipped + self._held_on(worker, m.task, "accept")
            if active and due_now and free and m.received.count(host) > waiting:
                return f"{m.task}: received with a free slot, not started"
            ok = sum(1 for e in runs if e.status == "ok") + skipped
            if any(e.status == "ok" and e.stored is None for e in runs):
                return f"{m.task}: the result of a finished run is not stored"
            # Early ack: each run's delivery is acked as it starts. acks_late: once it
            # returns, or once the main process has dealt with its lost child.
            ended = ok + sum(1 for e in runs if e.state == "dead")
            # (The solo pool runs the task inside the event loop that performs the
            # deferred early ack, so that ack comes when the task returns.)
            early_at_start = not self.config.acks_late and self.config.pool != "solo"
            due = len(runs) if early_at_start else ended
            due -= self._held_on(worker, m.task, "accepted")  # held before its ack
            if worker.alive() and m.settled_by.count(host) < due:
                return f"{m.task}: the ack or reject of a delivery is not reported"
        return None

    def _settle(self, run: DeliveryRun) -> None:
        self._waiting = None
        woken = time.monotonic()

        def wake() -> None:
            # A worker's event loop can sit in its poll for up to 10 s with work it
            # has queued for itself (a solo worker's ack on AMQP); waking it changes
            # when that work runs, not what runs.
            nonlocal woken
            if time.monotonic() - woken >= WAKE_EVERY:
                woken = time.monotonic()
                for w in [self.worker, *self.draining]:
                    self.cluster.wake(w)

        try:
            self.cluster.controller.wait(
                self._settled, "the workers and the broker to settle", poll=BROKER_POLL,
                check=wake,
            )  # fmt: skip
        except HarnessError as exc:
            raise HarnessError(f"{exc} (still waiting: {self._waiting})") from None
        ctl = self.cluster.controller
        for task, g in sorted(ctl.held.items()):
            if task not in self._held_seen:
                self._held_seen.add(task)
                ctl.report(h.Held(task, g.name, ctl.name_of(ctl.procs[g.pid])))
        ctl.flush()

    # --- enabled moves -------------------------------------------------------------------

    def enabled(self, run: DeliveryRun, tasks: int) -> list[str]:
        ctl = self.cluster.controller
        live = sorted(ctl.live(), key=lambda e: natural(e.id))
        parked = [e for e in live if e.state == "parked"]
        eta = ["eta"] if self._eta else []
        # A job held in a child before it accepts: no execution yet, only its child.
        held = [t for t in sorted(ctl.held) if self._held_on(self.worker, t, "accept")]
        if not live and self._counts["submit"] >= tasks and not eta and not held:
            # Every redelivery runs before the verdict: a message left unacked by a
            # dead worker comes back once its visibility timeout passes.
            # (AMQP gives a dead holder's messages back at once.)
            return ["vt"] if self._unacked() else []
        moves = [f"step {e.id}" for e in parked] + eta
        here = [e for e in live if self._on(self.worker, e)]
        free = len(here) < self.capacity or "reserve" in self.allowed
        if self._counts["submit"] < tasks and free:
            moves.append("submit")
        if (
            "vt" in self.allowed
            and self.config.broker == "redis"
            and self._counts["vt"] < MAX_VT
            and self._unacked()
        ):
            moves.append("vt")
        here_parked = [e for e in parked if self._on(self.worker, e)]
        if "kill" in self.allowed and self._counts["kill"] < MAX_KILLS:
            moves += [f"kill {e.id}" for e in here_parked]
            moves += [f"kill {t}" for t in held]
            if self.config.pool == "prefork":
                moves += [f"kill-main {e.id}" for e in here_parked]
        if "drop" in self.allowed and self._counts["drop"] < MAX_SHUTDOWNS and here_parked:
            moves.append("drop")
        timeout = self.config.consumer_timeout_ms is not None and not self._counts["ctimeout"]
        if "ctimeout" in self.allowed and timeout and here_parked:
            moves.append("ctimeout")
        shutdowns = self._counts["term"] + self._counts["quit"]
        for verb in ("term", "quit"):
            if verb in self.allowed and shutdowns < MAX_SHUTDOWNS and here_parked:
                moves.append(verb)
        return moves

    # --- applying a move -----------------------------------------------------------------

    def apply(self, run: DeliveryRun, move: str) -> None:
        ctl = self.cluster.controller
        verb, _, target = move.partition(" ")
        if verb == "submit":
            self._counts["submit"] += 1
            task = f"t{self._counts['submit']}"
            tid = run.task_ids[task] = f"{run.order}-{task}"
            ctl.accept(task, tid)
            run.history.append(h.Submitted(task))
            c = self.config
            spec = {
                "task": task, "order": f"{run.order}-{task}", "effect": c.effect,
                "retries": c.retries,
                "max_retries": c.max_retries, "autoretry": c.autoretry,
            }  # fmt: skip
            here = [e for e in ctl.live() if self._on(self.worker, e)]
            countdown = c.countdown or None
            if countdown:
                self._eta[tid] = time.monotonic() + c.countdown
            if c.gate is not None and task == "t1":
                ctl.gates.add((c.gate, task))
            if c.chord:
                self.cluster.send_chord(self.worker, spec, tid, f"{tid}-body", self.queue)
            else:
                self.cluster.send(
                    self.worker, "suite.deliver", spec, task_id=tid, queue=self.queue,
                    countdown=countdown,
                )  # fmt: skip
            if countdown or len(here) >= self.capacity:  # held by the worker, not started
                m = ctl.messages[tid]
                ctl.wait(lambda: bool(m.received), f"{task} to reach the worker")
            else:
                ctl.wait(
                    lambda: ctl.started(task) is not None or task in ctl.held, f"{task} to start"
                )
            return
        if verb == "eta":
            self._await_eta()
            return
        if verb == "term":
            self._counts["term"] += 1
            self._warm_shutdown(run)
            return
        if verb == "quit":
            self._counts["quit"] += 1
            self._cold_shutdown(run)
            return
        if verb == "drop":
            self._counts["drop"] += 1
            self._drop(run)
            return
        if verb == "ctimeout":
            self._counts["ctimeout"] += 1
            self._consumer_timeout(run)
            return
        if verb == "vt":
            self._counts["vt"] += 1
            run.history.append(h.VisibilityTimeout())
            # One task's messages at a time, in task order, each restore settled
            # before the next: a scan restores them one by one while the worker
            # consumes, so restoring all at once would hand them out in a racy order.
            # (Any order is one the real scan could produce.)
            rank = {tid: i for i, tid in enumerate(run.task_ids.values())}
            entries = [e for e in self.broker.entries() if e[1] in rank]
            for tag, tid, _level in sorted(entries, key=lambda e: (rank[e[1]], e[2], e[0])):
                ctl.messages[tid].closed += 1
                self.broker.age_unacked(tag)
                self._settle(run)
            return
        if verb == "kill" and target not in ctl.executions and target in ctl.held:
            self._counts["kill"] += 1
            proc = ctl.procs[ctl.held[target].pid]
            run.history.append(h.Killed(ctl.name_of(proc)))
            self.worker.kill(proc)
            return
        ex = ctl.executions[target]
        proc = ctl.procs[ex.pid]
        if verb == "step":
            ctl.release(target)
        elif verb == "kill" and proc.role == "child":
            self._counts["kill"] += 1
            run.history.append(h.Killed(proc.name))
            for e in self.worker.kill(proc):
                tid = run.task_ids[e.task]
                self._handled[tid] = ctl.messages[tid].handled + 1
        elif verb in ("kill", "kill-main"):
            self._counts["kill"] += 1
            self._kill_main(run)
        else:
            raise HarnessError(f"unknown move {move!r}")

    def _await_eta(self) -> None:
        """Wait for the countdowns to pass (wall time inside Celery: nothing the harness
        can advance, so claims keep it to a few seconds). The deliveries are then due,
        and the settle after the move waits for them to start like any other."""
        due = max(self._eta.values())
        left = due - time.monotonic()
        self.cluster.controller.wait(
            lambda: time.monotonic() >= due, "the countdowns to pass", timeout=left + 30
        )
        self._eta.clear()

    def _take_over(self, run: DeliveryRun) -> None:
        """The standby adopts the scenario's queue and becomes the next wK."""
        ctl = self.cluster.controller
        self.worker = self.cluster.replace(self.spec, adopt=[self.queue])
        self._workers += 1
        alias = ctl.aliases[self.worker.hostname] = f"w{self._workers}"
        run.history.append(h.Restarted(alias))

    def _warm_shutdown(self, run: DeliveryRun) -> None:
        """SIGTERM to the active worker's main process: it stops consuming, finishes
        what runs (as the scenario steps it), acks, gives back what it holds unstarted,
        and exits. The standby takes the queue over at once."""
        ctl, worker = self.cluster.controller, self.worker
        run.history.append(h.Shutdown(ctl.aliases.get(worker.hostname, "?"), "warm"))
        worker.terminate()
        self._drain(worker, run)

    def _drain(self, worker: Worker, run: DeliveryRun) -> None:
        """``worker`` is on its way out, finishing what runs: the settles wait for its
        exit, and the standby takes the queue over now."""
        self.draining.append(worker)
        self.cluster.retire(worker)
        self._take_over(run)

    def _cold_shutdown(self, run: DeliveryRun) -> None:
        """SIGQUIT to the active worker's main process: Celery cancels the runs (their
        children get SIGTERM), stops the pool and exits on its own; this waits for
        the exit. What the worker held unacked goes back to the broker: RabbitMQ when
        the connection closes, Redis if the worker's own restore at shutdown finishes
        (otherwise the entry stays unacked until a ``vt``)."""
        ctl, worker = self.cluster.controller, self.worker
        host = worker.hostname
        run.history.append(h.Shutdown(ctl.aliases.get(host, "?"), "cold"))
        victims = [e for e in ctl.live() if self._on(worker, e)]
        worker.quit()
        # A cancelled prefork run gets SIGTERM, which billiard turns into SystemExit
        # inside the task: it ends ("done", error) rather than vanishing.
        ctl.wait(
            lambda: all(e.state in ("dead", "done") for e in victims), "the cancelled runs to go"
        )
        unacked = set(self.broker.unacked_ids()) if self.config.broker == "redis" else set()
        for tid, m in ctl.messages.items():
            # Given back by the broker (AMQP) or restored by the worker (Redis).
            if tid not in unacked:
                m.closed += m.outstanding(host)
        if self.config.broker == "amqp":
            self._await_consumer_gone()
        self.cluster.retire(worker)
        self._take_over(run)

    def _drop(self, run: DeliveryRun) -> None:
        """The active worker loses the broker and reconnects by itself. Its unacked
        deliveries come back: RabbitMQ requeues a dead connection's at once, and on
        Redis the worker restores its own as it closes the dead channel (kombu's
        virtual ``Channel.close``: ``restore_unacked_once``; seen in every run here).
        The next settle waits for those redeliveries to arrive."""
        ctl, worker = self.cluster.controller, self.worker
        run.history.append(h.ConnectionDropped(ctl.aliases.get(worker.hostname, "?")))
        self.cluster.drop_connection(worker)
        for m in ctl.messages.values():
            m.closed += m.outstanding(worker.hostname)

    def _consumer_timeout(self, run: DeliveryRun) -> None:
        """RabbitMQ's ``consumer_timeout`` passes for the active worker's oldest
        unacked delivery: the broker closes that channel, dropping its consumer, and
        requeues what was unacked on it (about the timeout plus one channel tick after
        the delivery: harness/rabbit.py). Celery 5.7 takes the channel error for an
        unrecoverable one ("Unrecoverable error: PreconditionFailed", celery #6760):
        the worker begins a warm shutdown by itself and finishes what runs, so the
        standby takes the queue over, as after ``term``; the settles wait for the
        redelivery and for the old worker's exit."""
        ctl, worker = self.cluster.controller, self.worker
        run.history.append(h.ConsumerTimedOut(ctl.aliases.get(worker.hostname, "?")))
        self._await_consumer_gone()
        for m in ctl.messages.values():
            m.closed += m.outstanding(worker.hostname)
        self._drain(worker, run)

    def _kill_main(self, run: DeliveryRun) -> None:
        ctl, worker = self.cluster.controller, self.worker
        main = worker.main()
        run.history.append(h.Killed(ctl.name_of(main)))
        victims = [e for e in ctl.live() if self._on(worker, e)]
        worker.kill_main()
        ctl.wait(lambda: all(e.state == "dead" for e in victims), f"{main.name}'s executions to go")
        if self.config.broker == "amqp":
            for m in ctl.messages.values():
                m.closed += m.outstanding(worker.hostname)
            self._await_consumer_gone()
        self._take_over(run)

    def _await_consumer_gone(self) -> None:
        """RabbitMQ requeues a closed connection's unacked messages when it drops its
        consumer: wait for that, or the requeue could land after the verdict."""
        self.cluster.controller.wait(
            lambda: self.broker.consumers(self.queue) == 0,
            "RabbitMQ to drop the gone worker's consumer", poll=BROKER_POLL,
        )  # fmt: skip

    def _reset(self) -> None:
        """After a harness error: no leftovers for the next example."""
        for w in [self.worker, *self.draining]:
            with contextlib.suppress(Exception):  # the error being raised matters more
                w.kill_main()
        self.broker.purge([self.queue])
        self.cluster.workers.pop(self.spec, None)
