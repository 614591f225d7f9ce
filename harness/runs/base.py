"""The one runner loop every area's runner is built on.

A runner waits for quiescence (every live execution parked, every submitted task
started), computes the *enabled* moves from logical state only (sorted, named by
execution, never by pid) and asks a ``Chooser`` for one. Hypothesis is one chooser; a
replay list is another. ``Runner.run`` is the skeleton of one example; each area's
runner fills in the hooks: what a move does (``apply``), which moves are enabled
(``enabled``), what starts and ends an example (``_begin``, ``_before_moves``,
``_end``) and what leaves the workers clean after it (``_after_error``,
``_after_moves``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from harness import timing
from harness.cluster import Cluster
from harness.controller import DEFAULT_TIMEOUT, Execution
from harness.errors import HarnessError
from harness.ordering import natural
from harness.workers import Worker, WorkerSpec
from model import history as h

Chooser = Callable[[list[str]], str]


@dataclass
class Run:
    """The outcome of one scenario: what happened and the moves that made it happen."""

    config: Any
    tasks: int
    history: h.History
    moves: list[str] = field(default_factory=list)


R = TypeVar("R", bound=Run)


def play(
    moves: list[str], enabled: Callable[[], list[str]], choose: Chooser,
    apply: Callable[[str], None], limit: int,
) -> None:  # fmt: skip
    """Every runner's loop: offer the enabled moves, play the chosen one (recorded in
    ``moves``), until none is enabled; more than ``limit`` moves is a harness error."""
    while options := enabled():
        if len(moves) >= limit:
            raise HarnessError(f"scenario did not finish within {limit} moves")
        move = choose(options)
        moves.append(move)
        with timing.phase(f"move {move.partition(' ')[0]}") if timing.enabled else timing.OFF:
            apply(move)


class Runner(Generic[R]):
    """One area's scenarios on the worker for ``spec``, one example per ``run``."""

    max_moves: int
    worker: Worker
    failed: HarnessError | None = None  # the harness error that ended this example
    start_timeout = DEFAULT_TIMEOUT  # seconds for a submitted task to start

    def __init__(self, cluster: Cluster, config: Any, spec: WorkerSpec, capacity: int) -> None:
        self.cluster = cluster
        self.config = config
        self.spec = spec
        self.capacity = capacity  # executions the worker runs at once

    def run(self, tasks: int, choose: Chooser) -> R:
        """One example of at most ``tasks`` tasks, its moves chosen by ``choose``."""
        with timing.phase("get worker"):
            self.worker = self._get_worker()
        ctl = self.cluster.controller
        n = self.cluster.next_example()
        with timing.phase("reset"):
            run = self._new_run(tasks, n, ctl.begin_example())  # forgets the dead processes
            self._begin(run, n)
        self.failed = None
        try:
            with timing.phase("before moves"):
                self._before_moves(run)
            play(run.moves, lambda: self.enabled(run, tasks), choose,
                 lambda move: self.apply(run, move), self.max_moves)  # fmt: skip
        except BaseException as e:
            # Hypothesis ends examples by raising too (StopTest): only a HarnessError
            # says the workers may not be what the harness believes.
            self.failed = e if isinstance(e, HarnessError) else None
            with timing.phase("reset"):
                self._after_error()
            raise
        finally:
            with timing.phase("reset"):
                self._after_moves()
        with timing.phase("end"):
            self._end(run)
        if ctl.anomalies:
            raise HarnessError("control channel anomalies: " + "; ".join(ctl.anomalies))
        return run

    # --- hooks ---------------------------------------------------------------------------

    def _get_worker(self) -> Worker:
        """The worker the example starts on."""
        return self.cluster.worker(self.spec)

    def _new_run(self, tasks: int, n: int, history: h.History) -> R:
        """The record of example number ``n``."""
        raise NotImplementedError

    def _begin(self, run: R, n: int) -> None:
        """Before the first move: the example's own counters and keys."""

    def _before_moves(self, run: R) -> None:
        """Before the first move is offered (its errors count as the moves')."""

    def enabled(self, run: R, tasks: int) -> list[str]:
        """The moves enabled now, in a fixed order; none when the scenario is over."""
        raise NotImplementedError

    def apply(self, run: R, move: str) -> None:
        """Play one chosen move."""
        raise NotImplementedError

    def _after_error(self) -> None:
        """A move failed: leave nothing behind for the next example."""

    def _settle_pool(self, worker: Worker) -> None:
        """Before a task is sent to a prefork worker: every child there, and free in its
        parent's eyes exactly when it is in the harness's, so which child takes the task
        follows from the moves alone (tasks/patches/child_order.py)."""
        if worker.spec.pool != "prefork":
            return
        ctl = self.cluster.controller
        ctl.wait(
            lambda: worker.ready() and not ctl.unsettled(worker.processes()),
            f"{worker.spec.name}'s parent to take its children's results back",
            timeout=self.start_timeout,
        )

    def _drain(self, movable: Callable[[list[Execution]], list[Execution]]) -> bool:
        """End the example's executions: release those ``movable`` picks from the live
        ones, lowest name first, until none is live. False when the workers are not to
        be trusted with the next example: it ended in a harness error (a task that never
        started is not live, and stalled every later submit on its worker, 2026-12-07),
        or the drain itself failed."""
        if self.failed is not None:
            return False
        ctl = self.cluster.controller
        try:
            for _ in range(self.max_moves):
                parked = movable(ctl.live())
                if not parked:
                    break
                ctl.release(min(parked, key=lambda e: natural(e.id)).id)
            ctl.wait(lambda: not ctl.live(), "the last executions to end")
        except HarnessError:
            return False
        return True

    def _after_moves(self) -> None:
        """After the moves, whether or not one failed."""

    def _end(self, run: R) -> None:
        """After the last move: what the example's verdict also needs to know."""
