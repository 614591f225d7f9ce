"""The cluster keeps at most ``WARM_SPECS`` worker specs warm: using one more stops the
least recently used (its standbys with it), and using that one again starts it anew.
Idle workers are not free, and a full matrix touches hundreds of specs."""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from harness.workers import WorkerSpec

pytestmark = [pytest.mark.servers, pytest.mark.workers]


def test_the_least_recently_used_spec_is_stopped(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "_warm_specs", 2)
    a, b, c = (WorkerSpec("solo", 1, prefetch=p) for p in (7, 8, 9))  # specs no one else uses
    first = cluster.worker(a)
    cluster.prepare_standby(a)
    standby = cluster._standby[a][0]
    cluster.worker(b)
    cluster.worker(a)  # a is used again: b is now the oldest
    cluster.worker(c)
    assert b not in cluster.workers and a in cluster.workers and c in cluster.workers
    assert cluster.workers[a] is first and first.alive()
    cluster.worker(b)  # a is the oldest now: stopped with its standby
    assert a not in cluster.workers and a not in cluster._standby
    cluster.controller.wait(
        lambda: not first.alive() and not standby.alive(), "a's workers to shut down", timeout=30
    )
    again = cluster.worker(a)
    assert again is not first and again.alive() and again.ready()
