"""The gevent pool on a real worker.

A gevent worker must be monkey-patched before Celery and the clients are imported
(celery/__main__.py ``maybe_patch_concurrency``), so the harness starts it as a fresh
``python -m celery``, never from the fork server, which imported them unpatched. Under
the patch every scheduling point is a cooperative socket read: a parked greenlet lets
the others run, which is what makes the lost update of ``value += 1`` expressible.
"""

from __future__ import annotations

import os

import psutil
import pytest

from harness.cluster import Cluster
from harness.workers import WorkerSpec
from model import history as h
from model.config import StateConfig
from properties.scenario import Line, StateScenario
from properties.state import AREA


def _state(text: str) -> Line[StateConfig]:
    """A ``state`` line (the module-state area's; the eager and publish forms are not)."""
    line = StateScenario.decode(text)
    assert isinstance(line.config, StateConfig), text
    return line  # type: ignore[return-value]  # Line is invariant in its config


pytestmark = [pytest.mark.servers, pytest.mark.workers]

LOST = (
    "no-lost-update-unsynchronized state gevent/c2 tasks=2: submit incr; step t1; step t1;"
    " submit incr; step t2; step t2; step t1; step t2"
)


def test_a_gevent_worker_is_a_fresh_interpreter(cluster: Cluster) -> None:
    worker = cluster.worker(WorkerSpec("gevent", 2))
    main = psutil.Process(worker.main().pid)
    assert main.ppid() == os.getpid()  # spawned by the harness, not the fork server
    argv = main.cmdline()
    assert argv[1:3] == ["-m", "celery"] and argv[argv.index("-P") + 1] == "gevent"
    assert [p.role for p in worker.processes()] == ["main"]  # no pool children


def test_two_greenlets_park_at_once_and_lose_an_update(cluster: Cluster) -> None:
    run, failure = AREA.replay(cluster, _state(LOST))
    assert failure is not None and failure.kind == "invariant violated", failure
    assert "lost_updates" in failure.lines[0]
    assert {e.process for e in run.history.events if hasattr(e, "process")} == {"w1"}


def test_the_lock_keeps_the_second_greenlet_waiting(cluster: Cluster) -> None:
    # t1 holds the lock, parked between its read and write-back; t2 finds the lock
    # taken and parks at ``wait``, where it is offered no step until t1 is done.
    line = (
        "no-lost-update-locked state gevent/c2 tasks=2: submit incr-locked; step t1; step t1;"
        " submit incr-locked; step t2; step t2; step t1; step t2; step t2"
    )
    run, failure = AREA.replay(cluster, _state(line))
    assert failure is None, failure.report()
    waits = [e for e in run.history.events if isinstance(e, h.Point) and e.name == "wait"]
    assert [e.execution for e in waits] == ["t2"]


def test_no_worker_process_init_on_gevent(cluster: Cluster) -> None:
    # SUITE_STATE_INIT=7 is what a worker_process_init handler would set; gevent never
    # sends the signal, so a read of an unwritten value is the import value, 0.
    line = (
        "read-your-writes-across-tasks state gevent/c2/init7 tasks=1: submit read; step t1; step t1"
    )
    run, failure = AREA.replay(cluster, _state(line))
    assert failure is None, failure.report()
    assert [e.observed for e in run.history.events if isinstance(e, h.Read)] == [0]
