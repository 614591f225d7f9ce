"""A lock example that ends in a harness error leaves a fresh worker behind.

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
from harness.runs.lock import LockRunner
from model import history as h
from model.config import LockConfig

pytestmark = [pytest.mark.servers, pytest.mark.workers]


def _first(options: list[str]) -> str:
    return options[0]  # submit, then step the task to its end


def test_a_worker_that_stopped_starting_tasks_is_replaced(cluster: Cluster) -> None:
    runner = LockRunner(cluster, LockConfig("cookbook-redis", "prefork", 2), frozenset())
    runner.start_timeout = 3.0
    stuck = cluster.worker(runner.spec)
    children = [p for p in stuck.processes() if p.role == "child"]
    assert len(children) == 2
    for p in children:  # behind the harness's back: it believes them free
        os.kill(p.pid, signal.SIGSTOP)
    with pytest.raises(HarnessTimeout, match="t1 to start"):
        runner.run(1, _first)
    assert not stuck.alive()
    run = runner.run(1, _first)  # on the replacement: the task starts and ends
    assert runner.worker is not stuck
    assert [e for e in run.history.events if isinstance(e, h.InvoiceCount)] == [
        h.InvoiceCount(run.order, 1)
    ]
