"""An example that ends in a harness error leaves fresh workers behind.

On 2026-12-07 a `nox -s suite` run stalled: once a prefork worker stopped starting
the tasks sent to it, every later example on it waited out the submit timeout (30 s
each, for the rest of the row), because the cleanup found nothing live to end and
kept the worker. The harness error is the row's to report; the next example must
not inherit it."""

from __future__ import annotations

import os
import signal

import pytest

from harness.cluster import Cluster
from harness.errors import HarnessTimeout
from harness.runs.base import Runner
from harness.runs.lock import LockRunner
from harness.runs.state import StateRunner
from harness.workers import Worker
from model import history as h
from model.config import LockConfig, StateConfig

pytestmark = [pytest.mark.servers, pytest.mark.workers]


def _first(options: list[str]) -> str:
    return options[0]  # submit, then step the task to its end


def _stop_children(worker: Worker) -> None:
    """SIGSTOP the pool's children behind the harness's back: it believes them free."""
    children = [p for p in worker.processes() if p.role == "child"]
    assert len(children) == 2
    for p in children:
        os.kill(p.pid, signal.SIGSTOP)


def _fails_then_recovers(runner: Runner, stuck: Worker) -> None:
    runner.start_timeout = 3.0
    _stop_children(stuck)
    with pytest.raises(HarnessTimeout, match="t1 to start"):
        runner.run(1, _first)
    assert not stuck.alive()
    assert runner.worker is not stuck


def test_a_lock_worker_that_stopped_starting_tasks_is_replaced(cluster: Cluster) -> None:
    runner = LockRunner(cluster, LockConfig("cookbook-redis", "prefork", 2), frozenset())
    _fails_then_recovers(runner, cluster.worker(runner.spec))
    run = runner.run(1, _first)  # on the replacement: the task starts and ends
    assert [e for e in run.history.events if isinstance(e, h.InvoiceCount)] == [
        h.InvoiceCount(run.order, 1)
    ]


def test_a_state_worker_that_stopped_starting_tasks_is_replaced(cluster: Cluster) -> None:
    runner = StateRunner(cluster, StateConfig("prefork", 2), "read-your-writes-across-tasks")
    _fails_then_recovers(runner, cluster.worker(runner.spec))
    run = runner.run(1, _first)
    assert run.moves[0].startswith("submit") and not cluster.controller.live()
    assert any(isinstance(e, h.Finished) for e in run.history.events), run.history.events
