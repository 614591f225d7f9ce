"""One lock scenario on real workers, with the interleaving chosen move by move
(the loop: harness/runs/base.py). Moves:

    submit         send the next task (only when a pool slot is free, so it starts now)
    step tN        let tN run to its next scheduling point
    kill tN        SIGKILL tN's process (a prefork child; the whole worker otherwise)
    pause tN       SIGSTOP tN's process          resume tN   SIGCONT it
    expire         the lock's TTL elapses now (servers expire the entries; the
                   virtual clock jumps past the TTL)
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.cluster import Cluster
from harness.controller import Execution, Proc
from harness.errors import HarnessError
from harness.ordering import natural
from harness.runs.base import Run, Runner
from harness.workers import WorkerSpec
from model import history as h
from model.config import LockConfig

MAX_KILLS = 2
MAX_PAUSES = 2
MAX_EXPIRIES = 2
MAX_MOVES = 800
TTL = 3600.0  # never elapses by itself during a scenario: only the expire move ends a lease


@dataclass
class LockRun(Run):
    config: LockConfig
    order: str = ""
    key: str = ""


class LockRunner(Runner[LockRun]):
    max_moves = MAX_MOVES
    config: LockConfig

    def __init__(self, cluster: Cluster, config: LockConfig, allowed: frozenset[str]) -> None:
        capacity = 1 if config.pool == "solo" else config.concurrency
        super().__init__(cluster, config, WorkerSpec(config.pool, config.concurrency), capacity)
        self.allowed = allowed

    def _new_run(self, tasks: int, n: int, history: h.History) -> LockRun:
        return LockRun(self.config, tasks, history, order=f"o{n}", key=f"invoice:{n}")

    def _begin(self, run: LockRun, n: int) -> None:
        self._counts = {"submit": 0, "kill": 0, "pause": 0, "expire": 0}
        self._acquiring_since_expiry = False

    def _after_moves(self) -> None:
        self._cleanup()

    def _end(self, run: LockRun) -> None:
        run.history.append(h.InvoiceCount(run.order, self.cluster.invoices(run.order)))

    # --- enabled moves -------------------------------------------------------------------

    def _proc(self, ex: Execution) -> Proc:
        return self.cluster.controller.procs[ex.pid]

    def enabled(self, run: LockRun, tasks: int) -> list[str]:
        ctl = self.cluster.controller
        live = sorted(ctl.live(), key=lambda e: natural(e.id))
        parked = [e for e in live if e.state == "parked"]
        free = [e for e in parked if not self._proc(e).paused]
        paused = [e for e in parked if self._proc(e).paused]
        if not live and self._counts["submit"] >= tasks:
            return []  # every task submitted and ended: the scenario is over
        moves = [f"step {e.id}" for e in free]
        main_paused = any(p.paused for p in self.worker.processes() if p.role == "main")
        if self._counts["submit"] < tasks and len(live) < self.capacity and not main_paused:
            moves.append("submit")
        seen: set[int] = set()
        for e in paused:  # one resume per paused process, named by its first execution
            if e.pid not in seen:
                seen.add(e.pid)
                moves.append(f"resume {e.id}")
        if (
            "expire" in self.allowed
            and self._counts["expire"] < MAX_EXPIRIES
            and self._acquiring_since_expiry
        ):
            moves.append("expire")
        # Faults land on executions that are past their start: a task killed or paused
        # before it touched the lock is the same as one never submitted.
        busy = [e for e in parked if e.point != "start"]
        if "pause" in self.allowed and self._counts["pause"] < MAX_PAUSES:
            moves += [f"pause {e.id}" for e in busy if not self._proc(e).paused]
        if "kill" in self.allowed and self._counts["kill"] < MAX_KILLS:
            moves += [f"kill {e.id}" for e in busy]
        return moves

    # --- applying a move -----------------------------------------------------------------

    def apply(self, run: LockRun, move: str) -> None:
        ctl = self.cluster.controller
        worker = self.worker
        verb, _, target = move.partition(" ")
        if verb == "submit":
            self._settle_pool(worker)
            self._counts["submit"] += 1
            task = f"t{self._counts['submit']}"
            ctl.accept(task)
            run.history.append(h.Submitted(task))
            spec = {
                "execution": task, "task": task, "key": run.key, "order": run.order,
                "ttl": TTL, "lock": self.config.lock,
            }  # fmt: skip
            self.cluster.send(worker, "suite.invoice", spec)
            ctl.wait(
                lambda: ctl.started(task) is not None,
                lambda: f"{task} to start on {worker.spec.name} ({self._slots()})",
                timeout=self.start_timeout,
            )
            return
        if verb == "expire":
            self._counts["expire"] += 1
            self._acquiring_since_expiry = False
            ctl.expiries += 1
            ctl.clock += TTL + 1
            run.history.append(h.Expired(run.key))
            self.cluster.expire(run.key)
            return
        ex = ctl.executions[target]
        proc = self._proc(ex)
        if verb == "step":
            if ex.point.startswith("start"):
                self._acquiring_since_expiry = True  # it will try the lock before parking
            ctl.release(target)
        elif verb == "kill":
            self._counts["kill"] += 1
            run.history.append(h.Killed(proc.name))
            worker.kill(proc)
            if proc.role == "main":
                self.worker = self.cluster.replace(self.spec)
                run.history.append(h.Restarted(self.worker.alias))
        elif verb == "pause":
            self._counts["pause"] += 1
            run.history.append(h.Paused(proc.name))
            worker.pause(proc)
        elif verb == "resume":
            run.history.append(h.Resumed(proc.name))
            worker.resume(proc)
        else:
            raise HarnessError(f"unknown move {move!r}")

    def _slots(self) -> str:
        """The worker's processes as the harness sees them, for a timeout's message."""
        procs = self.worker.processes()
        return ", ".join(f"{p.role} {p.name or p.pid}{' paused' * p.paused}" for p in procs)

    def _cleanup(self) -> None:
        """Leave the worker idle for the next example, or replace it (``_drain``)."""
        worker = self.worker
        if self.failed is None:
            for p in worker.processes():
                if p.paused:
                    worker.resume(p)
        if self._drain(lambda live: [e for e in live if e.state == "parked"]):
            return
        worker.kill_main()
        self.worker = self.cluster.replace(self.spec)
