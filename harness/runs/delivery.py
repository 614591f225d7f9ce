"""One delivery scenario: messages, faults and redeliveries on real workers and brokers.

On the runners' loop (harness/runs/base.py), with a quiescence that also covers
the messages: nothing the
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
    idle         wall time passes, past the broker's heartbeat timeout, while a worker
                 shutting down warm holds a parked run (fixed claims only)

(kill-main, term, quit, drop, ctimeout and idle, and the standby's take-over after them,
are harness/runs/faults.py.)
    vt           Redis: the visibility timeout passes now for every unacked message

With a gate (``DeliveryConfig.gate``, fixed claims only), t1's job is held once inside
the prefork pool (tasks/patches/gates.py): ``accept`` in the child that read it,
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
from dataclasses import dataclass, field

from harness import accounting
from harness.cluster import Cluster
from harness.controller import Execution
from harness.errors import HarnessError
from harness.ordering import natural
from harness.runs import faults
from harness.runs.base import Run, Runner
from harness.runs.faults import BROKER_POLL
from harness.workers import Worker, WorkerSpec
from model import history as h
from model.config import DeliveryConfig

MAX_KILLS = 2
MAX_SHUTDOWNS = 1
MAX_VT = 2
MAX_MOVES = 400
# Never reached by itself: a scenario lasts seconds. Only the vt move ages a message.
VISIBILITY_TIMEOUT = 3600.0
WAKE_EVERY = 0.05  # between wakes of the workers' event loops while a settle waits


@dataclass
class DeliveryRun(Run):
    config: DeliveryConfig
    order: str = ""
    task_ids: dict[str, str] = field(default_factory=dict)


class DeliveryRunner(Runner[DeliveryRun]):
    max_moves = MAX_MOVES
    config: DeliveryConfig

    def __init__(self, cluster: Cluster, config: DeliveryConfig, allowed: frozenset[str]) -> None:
        spec = WorkerSpec(
            config.pool, config.concurrency, acks_late=config.acks_late,
            reject_on_worker_lost=config.reject_on_worker_lost, broker=config.broker,
            acks_on_failure=config.acks_on_failure, dedup=config.dedup,
            cancel_on_loss=config.cancel_on_loss, track_started=config.track_started,
            prefetch=config.prefetch, gates=config.gate is not None, results=config.results,
            consumer_timeout_ms=config.consumer_timeout_ms, heartbeat=config.heartbeat,
        )  # fmt: skip
        super().__init__(cluster, config, spec, config.concurrency)
        self.allowed = allowed
        self.broker = cluster.broker(config.broker, config.consumer_timeout_ms)

    def _get_worker(self) -> Worker:
        worker = super()._get_worker()
        self.cluster.prepare_standby(self.spec)
        self.queue = worker.queue  # the scenario's queue, whoever consumes it
        return worker

    def _new_run(self, tasks: int, n: int, history: h.History) -> DeliveryRun:
        return DeliveryRun(self.config, tasks, history, order=f"o{n}")

    def _begin(self, run: DeliveryRun, n: int) -> None:
        ctl = self.cluster.controller
        # Workers are named by role in the example: w1 consumes the queue first, w2
        # takes it over when w1's main process dies, and so on.
        self.consumers = 1
        ctl.aliases[self.worker.hostname] = "w1"
        ctl.defer_starts = True  # added at each quiescent point, in task order
        self._counts = {
            "submit": 0, "kill": 0, "vt": 0, "term": 0, "quit": 0, "drop": 0, "ctimeout": 0,
            "idle": 0,
        }  # fmt: skip
        self._handled: dict[str, int] = {}  # task id -> losses its main must handle
        self.draining: list[Worker] = []  # warm shutdown under way: they finish and exit
        self._waiting: str | None = None  # what the last look at quiescence waited for
        self._eta: dict[str, float] = {}  # task id -> when its countdown ends (monotonic)
        self._held_seen: set[str] = set()  # tasks whose Held event is in the history

    def _before_moves(self, run: DeliveryRun) -> None:
        self._settle(run)

    def _after_error(self) -> None:
        self._reset()

    def _after_moves(self) -> None:
        self.cluster.controller.defer_starts = False

    def _end(self, run: DeliveryRun) -> None:
        cluster, ctl = self.cluster, self.cluster.controller
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

    # --- what the workers and the broker hold ---------------------------------------

    def runs_on(self, worker: Worker, ex: Execution) -> bool:
        """``ex`` runs in a process of ``worker``."""
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
            if any(e.state == "parked" for e in ctl.live() if self.runs_on(w, e)):
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
        live_here = [e for e in ctl.live() if self.runs_on(worker, e)]
        # A job held in a child before it accepts takes that child's slot.
        pending = sum(self._held_on(worker, m.task, "accept") for m in ctl.messages.values())
        held = accounting.held(ctl.messages.values(), host, self.config.broker)
        spare = self.config.prefetch * self.capacity - held
        for tid, m in ctl.messages.items():
            if active and m.owed() > 0 and worker.alive() and spare > 0:
                return f"{m.task}: the broker owes a delivery the worker can take"
            runs = [
                e for e in ctl.executions.values() if e.task == m.task and self.runs_on(worker, e)
            ]
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
        if self.config.broker == "redis":
            for w in [self.worker, *self.draining]:
                if why := accounting.qos_disagreement(ctl.messages.values(), w.hostname):
                    raise HarnessError(why)
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
        here = [e for e in live if self.runs_on(self.worker, e)]
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
        here_parked = [e for e in parked if self.runs_on(self.worker, e)]
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
        draining_parked = [e for e in parked if any(self.runs_on(w, e) for w in self.draining)]
        beat = self.config.heartbeat is not None and not self._counts["idle"]
        if "idle" in self.allowed and beat and draining_parked:
            moves.append("idle")
        shutdowns = self._counts["term"] + self._counts["quit"]
        for verb in ("term", "quit"):
            if verb in self.allowed and shutdowns < MAX_SHUTDOWNS and here_parked:
                moves.append(verb)
        return moves

    # --- applying a move -----------------------------------------------------------------

    def apply(self, run: DeliveryRun, move: str) -> None:
        """Play ``move``, then wait for the system to settle."""
        self._apply(run, move)
        self._settle(run)

    def _apply(self, run: DeliveryRun, move: str) -> None:
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
            here = [e for e in ctl.live() if self.runs_on(self.worker, e)]
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
        if verb in faults.FAULTS:  # term, quit, drop, ctimeout, idle
            self._counts[verb] += 1
            faults.FAULTS[verb](self, run)
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
            faults.kill_main(self, run)
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

    def _reset(self) -> None:
        """After a harness error: no leftovers for the next example."""
        for w in [self.worker, *self.draining]:
            with contextlib.suppress(Exception):  # the error being raised matters more
                w.kill_main()
        self.broker.purge([self.queue])
        self.cluster.workers.pop(self.spec, None)
