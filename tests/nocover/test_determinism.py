"""Determinism itself, on real workers: the same moves give the same history.

A replay must fail the same way every time, so the whole history — which execution
ran where, which point it reached, what every lock call returned — must repeat, on
workers that are reused between runs (as the property runs reuse them).
"""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from model import history as h
from model.config import LockConfig
from properties.locks import AREA
from properties.scenario import Scenario
from properties.schedule import ReplayDiverged
from properties.timeline import anonymous

pytestmark = [pytest.mark.servers, pytest.mark.workers]

SCENARIOS = [
    # Two prefork children each "acquire" a LocMemCache lock: two invoices.
    "exactly-one-invoice cookbook-locmem prefork/2 tasks=2: submit; step t1; step t1; step t1;"
    " step t1; submit; step t2; step t2; step t2; step t2; step t1; step t1; step t2; step t2",
    # A holder killed inside the critical section, its lease expired, a retry succeeds.
    "no-orphaned-lock cookbook-redis prefork/2 tasks=2: submit; step t1; step t1; kill t1;"
    " expire; submit; step t2; step t2; step t2; step t2; step t2; step t2; step t2",
    # The whole threads worker killed (and replaced) while both tasks are parked.
    "mutual-exclusion cookbook-locmem threads/2 tasks=3: submit; submit; step t1; step t2;"
    " kill t1; submit; step t3; step t3; step t3; step t3; step t3; step t3; step t3",
]


def _normal(events: list[h.Event]) -> list[str]:
    return [anonymous(e.describe()) for e in events]


@pytest.mark.parametrize("line", SCENARIOS, ids=["locmem-2-invoices", "orphan", "threads-kill"])
def test_same_moves_same_history(cluster: Cluster, line: str) -> None:
    scenario = Scenario.decode(line)
    runs = [AREA.replay(cluster, scenario) for _ in range(4)]
    histories = [_normal(run.history.events) for run, _ in runs]
    assert all(hist == histories[0] for hist in histories[1:])
    verdicts = [[anonymous(x) for x in failure.lines] if failure else None for _, failure in runs]
    assert all(v == verdicts[0] for v in verdicts)


def test_the_locmem_counterexample_fails_every_time(cluster: Cluster) -> None:
    scenario = Scenario.decode(SCENARIOS[0])
    for _ in range(3):
        _, failure = AREA.replay(cluster, scenario)
        assert failure is not None and failure.kind == "invariant violated"
        assert "2 invoices" in failure.lines[0]


def test_a_move_that_is_not_enabled_is_a_divergence(cluster: Cluster) -> None:
    scenario = Scenario.decode("exactly-one-invoice cookbook-redis prefork/2 tasks=2: step t1")
    with pytest.raises(ReplayDiverged, match="'step t1' is not enabled"):
        AREA.replay(cluster, scenario)
    # ...and the workers are left idle for whatever runs next.
    assert not cluster.controller.live()


def _lowest_first(enabled: list[str]) -> str:
    """Submit while there is a task to submit, else step the lowest execution."""
    return "submit" if "submit" in enabled else enabled[0]


def test_a_cold_script_cache_replays_like_a_warm_one(cluster: Cluster) -> None:
    """A Lua lock's first release on a server whose script cache is empty takes redis-py's
    NoScriptError path (EVALSHA, SCRIPT LOAD, EVALSHA). The cache outlives an example, so
    if that path were three points a search's first run and its replay would see other
    moves (the check-lock flake of issue 15)."""
    import redis

    config = LockConfig("examples.locks.redis_set_nx_px:make_lock", "prefork", 2)
    runner = AREA.runner(cluster, config, "mutual-exclusion")
    server = redis.Redis.from_url(cluster.env["SUITE_CACHE_REDIS_URL"])
    histories = []
    for _ in range(2):
        server.script_flush()
        cold = runner.run(2, _lowest_first)
        warm = runner.run(2, _lowest_first)
        histories += [_normal(cold.history.events), _normal(warm.history.events)]
    assert any("EVALSHA" in e for e in histories[0])
    assert all(hist == histories[0] for hist in histories[1:])
