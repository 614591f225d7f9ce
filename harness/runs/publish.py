"""One transactional-publishing scenario on a real worker, move by move.

Moves:

    submit     the sender INSERTs tN's row in its open transaction and sends tN the
               config's way (model/publishing.py)
    commit     the sender commits (Django then runs its on_commit callbacks)
    rollback   the sender rolls back
    step tN    let tN run to its next scheduling point (its SELECT has one)

The transaction opens with the example and ends at ``commit`` or ``rollback``; no
submit follows. Whether a send put a message on the broker is not the runner's
guess: Celery's ``before_task_publish`` signal, sent in this process, records
``Published`` (the runner's handler is connected for the length of one example),
and the runner waits for exactly those tasks to start.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from harness.cluster import Cluster
from harness.errors import HarnessError
from harness.ordering import natural
from harness.runs.state import StateLoop, StateRun
from harness.workers import WorkerSpec
from model import history as h
from model.config import PublishConfig

TASK = "suite.find_row"


class PublishRunner(StateLoop):
    """The state runner's loop (process names, clean-up) with the sender's transaction
    as part of the scenario."""

    config: PublishConfig

    def __init__(self, cluster: Cluster, config: PublishConfig) -> None:
        capacity = 1 if config.pool == "solo" else config.concurrency
        super().__init__(cluster, config, WorkerSpec(config.pool, config.concurrency), capacity)
        from tasks import publishing

        publishing.create_table(cluster.pg)

    def _begin(self, run: StateRun, n: int) -> None:
        from tasks import publishing

        super()._begin(run, n)
        self.run_ = run
        self.prefix = f"{self.key}:"
        self.published: list[str] = []  # in publish order, not yet seen to start
        self.pending = 0  # sent, waiting for the commit to publish
        self.txn: publishing.Transaction | None = publishing.Transaction()
        signals.before_task_publish.connect(self._published, weak=False)

    def _end(self, run: StateRun) -> None:
        signals.before_task_publish.disconnect(self._published)
        super()._end(run)

    def _published(self, sender: Any = None, body: Any = None, **_: Any) -> None:
        """``before_task_publish``: a send of this example's task reached the broker.
        Protocol 2 body: (args, kwargs, embed); args[0] is the spec the runner sent."""
        if sender != TASK:
            return
        spec = body[0][0] if isinstance(body, list | tuple) and body and body[0] else {}
        if isinstance(spec, dict) and spec.get("key", "").startswith(self.prefix):
            self.on_published(str(spec["task"]))

    def on_published(self, task: str) -> None:
        self.run_.history.append(h.Published(task))
        self.published.append(task)

    # --- moves -----------------------------------------------------------------------------

    def enabled(self, run: StateRun, tasks: int) -> list[str]:
        ctl = self.cluster.controller
        live = ctl.live()
        open_ = self.txn is not None and self.txn.open
        if not live and not open_ and not self.published:
            return []
        parked = sorted((e for e in live if e.state == "parked"), key=lambda e: natural(e.id))
        moves = [f"step {e.id}" for e in parked]
        if open_:
            if self.submitted < tasks and len(live) + self.pending < self.capacity:
                moves.append("submit")
            if self.submitted:
                moves += ["commit", "rollback"]
        if not moves:
            raise HarnessError(f"no move possible: {ctl.describe()}")
        return moves

    def apply(self, run: StateRun, move: str) -> None:
        ctl = self.cluster.controller
        txn = self.txn
        if txn is None or (move in ("submit", "commit", "rollback") and not txn.open):
            raise HarnessError(f"{move!r} with no open transaction")
        if move == "submit":
            self.submitted += 1
            task = f"t{self.submitted}"
            key = f"{self.prefix}{task}"
            ctl.accept(task)
            run.history.append(h.Submitted(task))
            txn.insert(key)
            run.history.append(h.Inserted(task))
            before = len(self.published)
            spec = {"execution": task, "task": task, "key": key}
            txn.send(self.config.mode, self.cluster.app.tasks[TASK], [spec],
                     {"queue": self.worker.queue})  # fmt: skip
            if len(self.published) == before:
                self.pending += 1
        elif move == "commit":
            run.history.append(h.Committed())
            txn.commit()
            self.pending = 0
        elif move == "rollback":
            run.history.append(h.RolledBack())
            txn.rollback()
            self.pending = 0
        elif move.startswith("step "):
            ctl.release(move[5:])
            return
        else:
            raise HarnessError(f"unknown move {move!r}")
        self._await_published(run)

    def _await_published(self, run: StateRun) -> None:
        while self.published:
            task = self.published.pop(0)
            self._name(run, self._started(task))

    def _cleanup(self) -> None:
        if self.txn is not None and self.txn.open:
            self.txn.rollback()
        signals.before_task_publish.disconnect(self._published)
        self.published.clear()
        super()._cleanup()
