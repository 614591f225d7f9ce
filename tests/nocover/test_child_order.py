"""Which prefork child takes a task follows from the moves alone.

Celery's pool hands a job to the first idle child in its event loop's order, and a
child stays busy for the pool until the parent has read its last result. Both vary
from run to run: kills leave file descriptors in another order, and a task's end
reaches the harness before its result reaches the parent. A child can hold state its
sibling does not (a per-process cache's leftover lease), so the same moves replayed
differently (2026-12-07, `lease-mutual-exclusion cookbook-locmem/prefork/c4`). With
tasks/patches/child_order.py the parent offers the lowest-numbered idle child, and
the harness sends only once the parent has taken every ended task's result back."""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from harness.runs.lock import LockRunner
from model.config import LockConfig

pytestmark = [pytest.mark.servers, pytest.mark.workers]


def _steps_first(options: list[str]) -> str:
    """Run each task to its end before the next is submitted."""
    return next((o for o in options if o.startswith("step")), options[0])


def test_each_task_takes_the_lowest_numbered_idle_child(cluster: Cluster) -> None:
    runner = LockRunner(cluster, LockConfig("cookbook-redis", "prefork", 2), frozenset())
    ctl = cluster.controller
    seen = []
    for _ in range(3):
        # The child numbered 0 killed between examples: its replacement takes index 0
        # again, with file descriptors numbered after its sibling's.
        worker = cluster.worker(runner.spec)
        first = next(p for p in worker.processes() if p.role == "child" and p.index == 0)
        worker.kill_child(first)
        for _ in range(3):
            run = runner.run(3, _steps_first)  # t1, t2, t3: each sent as the last ends
            assert run.moves.count("submit") == 3
            seen.append([ctl.procs[ctl.executions[t].pid].index for t in ("t1", "t2", "t3")])
    assert seen == [[0, 0, 0]] * 9
