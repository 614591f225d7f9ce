"""One module-state scenario on a real worker, move by move (the loop:
harness/runs/base.py). Moves:

    submit write   send a task that writes the value (tN writes N)
    submit read    send a task that reads it
    submit incr    send a task that does ``value += 1`` (read, park at ``rmw``, write)
    submit incr-locked   the same under the process's ``threading.Lock``
    submit write q2 (``config.queues`` 2: two workers, ``w1`` consuming queue q1 and
                   ``w2`` q2) the same, sent to that queue
    step tN        let tN run to its next scheduling point
    kill tN        (``config.kills``; tN parked at ``done``, its operation over)
                   SIGKILL tN's process: a prefork child, which the
                   pool replaces; the whole worker on the other pools, which a fresh
                   one (the standby) replaces, so module state starts again

A task blocked on the lock (parked at ``wait`` while another task of its process
holds it) is not offered a step: stepping it would only spin. For
``sender-sees-task-writes`` the sending application (this process) reads the value
once every task has ended.

Process names follow the model (model/processes.py): prefork children are named
by slot, ``w1.c1``, and a child forked in place of one that exited
(``--max-tasks-per-child``) or died takes its slot's name with a ``'``, introduced
by a ``ChildReplaced`` event. Which idle child runs a task is Celery's choice; the
names depend only on the order children are first used and replaced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

from harness.cluster import Cluster
from harness.controller import Execution
from harness.errors import HarnessError
from harness.ordering import natural
from harness.runs.base import Run, Runner
from harness.workers import Worker, WorkerSpec
from model import history as h
from model.config import IMPORT_VALUE, StateConfig
from model.processes import APP

MAX_MOVES = 400
MAX_KILLS = 1

# The task operations each property's scenarios are made of.
OPS: dict[str, tuple[str, ...]] = {
    "read-your-writes-across-tasks": ("write", "read"),
    "sender-sees-task-writes": ("write", "read"),
    "no-lost-update-unsynchronized": ("incr",),
    "no-lost-update-locked": ("incr-locked",),
}


@dataclass
class StateRun(Run):
    """A module-state or publishing scenario (``config``: a StateConfig, or
    a PublishConfig)."""


def spec_of(config: StateConfig) -> WorkerSpec:
    return WorkerSpec(
        config.pool, config.concurrency, max_tasks_per_child=config.max_tasks_per_child,
        state_init=config.init_value,
    )  # fmt: skip


class StateLoop(Runner[StateRun]):
    """What the module-state and publishing runners share: the example's key and
    counters, the model's process names, and the clean-up after an error."""

    max_moves = MAX_MOVES
    workers: list[Worker]

    def _specs(self) -> list[WorkerSpec]:
        """The workers the scenario runs on (``w1`` first)."""
        return [self.spec]

    def _get_worker(self) -> Worker:
        self.workers = [self.cluster.worker(spec) for spec in self._specs()]
        return self.workers[0]

    def _new_run(self, tasks: int, n: int, history: h.History) -> StateRun:
        return StateRun(self.config, tasks, history)

    def _begin(self, run: StateRun, n: int) -> None:
        self.key = f"{self.cluster.run_id}state:{n}"
        self.submitted = 0
        self.kills = 0
        self.names: dict[str, str] = {}  # the controller's name -> the model's
        # (worker, slot) -> (pid, model name) holding it
        self.slots: dict[tuple[str, int], tuple[int, str]] = {}
        ctl = self.cluster.controller
        for i, worker in enumerate(self.workers, start=1):
            ctl.aliases[worker.hostname] = f"w{i}"

    def _after_error(self) -> None:
        self._cleanup()

    def _end(self, run: StateRun) -> None:
        run.history.events[:] = [self._renamed(e) for e in run.history.events]

    def _blocked(self, ex: Execution, live: list[Execution]) -> bool:
        return ex.point == "wait" and any(o.holds_lock and o.pid == ex.pid for o in live)

    def _started(self, task: str) -> Execution:
        """Wait for ``task``'s execution to start, and return it."""
        ctl = self.cluster.controller
        ctl.wait(
            lambda: ctl.started(task) is not None, f"{task} to start", timeout=self.start_timeout
        )
        ex = ctl.started(task)
        assert ex is not None
        return ex

    # --- names -----------------------------------------------------------------------------

    def _name(self, run: StateRun, ex: Execution) -> None:
        """Give the process ``ex`` runs in its model name, on its first task."""
        ctl = self.cluster.controller
        proc = ctl.procs[ex.pid]
        if proc.name in self.names:
            return
        if proc.role != "child":
            self.names[proc.name] = proc.name
            return
        alias = ctl.aliases.get(proc.worker, self.worker.alias)
        mine = {k: held for (w, k), held in self.slots.items() if w == alias}
        free = [k for k in range(1, self.config.concurrency + 1) if k not in mine]
        if free:
            k, name = free[0], f"{alias}.c{free[0]}"
        else:

            def gone(pid: int) -> bool:
                return pid not in ctl.procs or not ctl.procs[pid].alive

            # At most ``concurrency`` children live at once: a new one means one went.
            ctl.wait(
                lambda: any(gone(pid) for pid, _ in mine.values()),
                f"a child of {alias} to exit before {proc.name} replaced it",
            )
            k = min(s for s, (pid, _) in mine.items() if gone(pid))
            old = mine[k][1]
            name = old + "'"
            run.history.append(h.ChildReplaced(old, name))
        self.slots[(alias, k)] = (proc.pid, name)
        self.names[proc.name] = name

    def _renamed(self, e: h.Event) -> h.Event:
        process = getattr(e, "process", None)
        if isinstance(process, str) and process in self.names:
            return dataclasses.replace(e, process=self.names[process])  # type: ignore[call-arg]
        return e

    def _cleanup(self) -> None:
        """Leave the workers idle for the next example, or replace them (``_drain``)."""

        def movable(live: list[Execution]) -> list[Execution]:
            return [e for e in live if e.state == "parked" and not self._blocked(e, live)]

        if self._drain(movable):
            return
        for worker in self.workers:
            worker.kill_main()
        self.workers = [self.cluster.replace(w.spec) for w in self.workers]
        self.worker = self.workers[0]


class StateRunner(StateLoop):
    config: StateConfig

    def __init__(self, cluster: Cluster, config: StateConfig, prop: str) -> None:
        if config.parent_value != IMPORT_VALUE:
            raise HarnessError("parent_value is a model-only setting: workers import afresh")
        capacity = 1 if config.pool == "solo" else config.concurrency
        super().__init__(cluster, config, spec_of(config), capacity)
        self.prop = prop
        self.ops = OPS[prop]
        # Two workers on two queues: the same shape, each its own queue. A queue's name
        # carries the shape: every config's workers stay up, and two shapes consuming
        # one queue would take each other's tasks.
        self.queues = [f"q{i}" for i in range(1, config.queues + 1)] if config.queues > 1 else []

    def _specs(self) -> list[WorkerSpec]:
        own = [replace(self.spec, queues=(f"state-{self.spec.name}-{q}",)) for q in self.queues]
        return own or [self.spec]

    def _end(self, run: StateRun) -> None:
        """The sender's own read, for ``sender-sees-task-writes``; then the model's names."""
        if self.prop == "sender-sees-task-writes":
            from tasks import state

            run.history.append(h.Read("app", APP, state.get(self.config.store, self.key)))
        super()._end(run)

    # --- moves -----------------------------------------------------------------------------

    def enabled(self, run: StateRun, tasks: int) -> list[str]:
        live = sorted(self.cluster.controller.live(), key=lambda e: natural(e.id))
        if not live and self.submitted >= tasks:
            return []
        moves = [f"step {e.id}" for e in live if e.state == "parked" and not self._blocked(e, live)]
        if self.submitted < tasks and not self.queues and len(live) < self.capacity:
            moves += [f"submit {op}" for op in self.ops]
        if self.submitted < tasks and self.queues:  # one worker per queue, in queue order
            moves += [
                f"submit {op} {q}" for q, worker in zip(self.queues, self.workers, strict=True)
                if len(self._on(worker, live)) < self.capacity for op in self.ops
            ]  # fmt: skip
        if self.config.kills and self.kills < MAX_KILLS:
            # Only once its operation is done: a kill before it loses nothing a read could
            # miss, so those would only thin out the search.
            moves += [f"kill {e.id}" for e in live if e.state == "parked" and e.point == "done"]
        if not moves:
            raise HarnessError(f"no move possible: {self.cluster.controller.describe()}")
        return moves

    def apply(self, run: StateRun, move: str) -> None:
        ctl = self.cluster.controller
        verb, _, arg = move.partition(" ")
        if verb == "submit":
            op, _, queue = arg.partition(" ")
            if op not in self.ops or (queue not in self.queues if self.queues else queue):
                raise HarnessError(
                    f"unknown operation {arg!r}: choose one of {self.ops}"
                    + (f", each followed by one of {self.queues}" if self.queues else "")
                )
            worker = self.workers[self.queues.index(queue)] if queue else self.worker
            self._settle_pool(worker)
            self.submitted += 1
            task = f"t{self.submitted}"
            ctl.accept(task)
            run.history.append(h.Submitted(task))
            spec = {
                "execution": task, "task": task, "op": op, "store": self.config.store,
                "key": self.key, "value": self.submitted, "linger": self.config.kills,
            }  # fmt: skip
            self.cluster.send(worker, "suite.state", spec, queue=worker.queues[0])
            self._name(run, self._started(task))
        elif verb == "step":
            ctl.release(arg)
        elif verb == "kill" and self.config.kills:
            self._kill(run, ctl.executions[arg])
        else:
            raise HarnessError(f"unknown move {move!r}")

    def _on(self, worker: Worker, live: list[Execution]) -> list[Execution]:
        procs = self.cluster.controller.procs
        return [e for e in live if e.pid in procs and procs[e.pid].worker == worker.hostname]

    def _kill(self, run: StateRun, ex: Execution) -> None:
        """SIGKILL ``ex``'s process. A prefork child is replaced by the pool (named on
        its first task, ``_name``); any other pool loses the whole worker, and the
        next task runs on a fresh one, as a restarted worker would."""
        ctl = self.cluster.controller
        proc = ctl.procs[ex.pid]
        self.kills += 1
        run.history.append(h.Killed(proc.name))  # renamed to the model's name at the end
        self.worker.kill(proc)
        if proc.role != "child":
            self.worker = self.workers[0] = self.cluster.replace(self.spec)
