"""Throughput and memory of the loop on real workers: ``nox -s bench``.

Writes ``reports/bench.json``: a list of ``{name, scenarios, seconds, scenarios_per_s,
peak_rss_mb}``. Each row runs one fixed scenario over and over through the same runner
the properties use (no Hypothesis: its overhead is not the harness's).
peak_rss_mb is the largest summed RSS of the test process and every process it started
(workers, pool children, servers), sampled every 10 scenarios outside the timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from harness import timing
from harness.cluster import Cluster
from harness.errors import HarnessError
from harness.runs.base import Chooser
from harness.runs.delivery import DeliveryRunner
from harness.runs.lock import LockRunner
from harness.workers import WorkerSpec
from model.config import DeliveryConfig, LockConfig, StateConfig


def tree_rss_mb() -> float:
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it may have just exited
            total += child.memory_info().rss
    return total / 2**20


def submit_then_round_robin(cluster: Cluster, kill_at: str | None = None) -> Chooser:
    """Submit both tasks, then step the lowest parked execution; optionally kill t1
    when it parks at the point ``kill_at``."""
    ctl = cluster.controller

    def choose(enabled: list[str]) -> str:
        if "submit" in enabled:
            return "submit"
        t1 = ctl.executions.get("t1")
        if kill_at and "kill t1" in enabled and t1 is not None and t1.point == kill_at:
            return "kill t1"
        return next(m for m in enabled if m.startswith("step"))

    return choose


def kill_main_mid_task(cluster: Cluster) -> Chooser:
    """Submit t1, let it reach its first SQL statement, kill its worker's main process,
    let the visibility timeout pass, then step whatever runs to the end."""
    ctl = cluster.controller

    def choose(enabled: list[str]) -> str:
        t1 = ctl.executions.get("t1")
        if "submit" in enabled:
            return "submit"
        if t1 is not None and t1.point.startswith("sql") and "kill t1" in enabled:
            return "kill t1"
        calm = [m for m in enabled if m.startswith("step")]
        return calm[0] if calm else "vt"

    return choose


def bench(
    name: str, cluster: Cluster, config: LockConfig | DeliveryConfig, n: int,
    allowed: frozenset[str], chooser: Callable[[], Chooser],
    before: Callable[[], None] | None = None, tasks: int = 2,
) -> dict[str, object]:  # fmt: skip
    runner: LockRunner | DeliveryRunner
    if isinstance(config, DeliveryConfig):
        runner = DeliveryRunner(cluster, config, allowed)
    else:
        runner = LockRunner(cluster, config, allowed)
    runner.run(tasks, chooser())  # warm: the worker is up and the lock clients are made
    peak = tree_rss_mb()
    seconds = 0.0
    for i in range(n):
        started = time.perf_counter()
        if before is not None:
            before()
        runner.run(tasks, chooser())
        seconds += time.perf_counter() - started
        if i % 10 == 0 or i == n - 1:  # sampled outside the timed part: psutil is slow
            peak = max(peak, tree_rss_mb())
    row = {
        "name": name,
        "scenarios": n,
        "seconds": round(seconds, 3),
        "scenarios_per_s": round(n / seconds, 2),
        "peak_rss_mb": round(peak, 1),
    }
    print(json.dumps(row), flush=True)
    return row


# The real searches, as a user's run meets them: one row of each area under the dev
# profile's budget (Hypothesis, shrinking and attacks included; no example database, so
# every run searches from scratch).
SEARCHES: list[tuple[str, str, LockConfig | DeliveryConfig | StateConfig, str]] = [
    ("search-lock-row", "lock", LockConfig("cookbook-redis", "prefork", 2), "mutual-exclusion"),
    ("search-delivery-row", "delivery", DeliveryConfig("redis", "prefork", 2, acks_late=True),
     "at-least-once"),
    ("search-state-row", "state", StateConfig("prefork", 2), "read-your-writes-across-tasks"),
]  # fmt: skip


def dev_profile_without_database() -> None:
    """The searches' settings: the dev profile's budgets, no example database."""
    from hypothesis import settings

    from properties import profiles

    profiles.register()
    settings.register_profile("bench", parent=settings.get_profile("dev"), database=None)
    settings.load_profile("bench")
    profiles.activate("dev")


def search_row(name: str, cluster: Cluster, area: str, config: Any, prop: str) -> dict[str, object]:
    from properties.areas import AREAS
    from properties.engine import search

    search(AREAS[area], cluster, config, prop)  # warm: the row's workers are up
    timing.timings.reset()  # SUITE_PROFILE_MOVES=1: this row's phases only
    outcome = search(AREAS[area], cluster, config, prop)
    row = {
        "name": name,
        "examples": outcome.examples,
        "verdict": outcome.verdict,
        "seconds": round(outcome.seconds, 3),
        "examples_per_s": round(outcome.examples / outcome.seconds, 2),
        "ms_per_example": round(1000 * outcome.seconds / outcome.examples, 1),
        "peak_rss_mb": round(tree_rss_mb(), 1),
    }
    if timing.enabled:
        row["timing"] = timing.snapshot()
        print(timing.timings.report(), flush=True)
        timing.timings.reset()  # the exit report covers what is not in a row
    print(json.dumps(row), flush=True)
    return row


def check_lock_row(name: str, lock: str, first_failure: bool) -> dict[str, object]:
    """Seconds of ``nox -s check-lock -- <lock>``'s pytest run, from a cold start (its
    servers and workers included): until its first counterexample (``-x``: the run stops
    at the first failing row) or to the end."""
    cmd = [
        sys.executable, "-m", "pytest", "tests/properties/test_locks.py", "-q",
        "--lock", lock, "--hypothesis-profile", "dev", "-p", "no:cacheprovider",
        "--findings", f"reports/bench-{name}.json", *(["-x"] if first_failure else []),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    seconds = time.perf_counter() - started
    expected = 1 if first_failure else 0
    if done.returncode != expected:
        tail = "\n".join(done.stdout.splitlines()[-15:])
        raise SystemExit(f"bench {name}: pytest exited {done.returncode}, not {expected}:\n{tail}")
    row = {"name": name, "lock": lock, "seconds": round(seconds, 1)}
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply scenario counts")
    parser.add_argument("--out", default="reports/bench.json")
    parser.add_argument(
        "--only", choices=("loop", "search", "check-lock"), action="append",
        help="run only these groups of rows (repeatable; default: all)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    groups = set(args.only or ("loop", "search", "check-lock"))
    try:
        rows = _run(args, groups)
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 3
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written to {out}")
    return 0


def _run(args: argparse.Namespace, groups: set[str]) -> list[dict[str, object]]:

    def count(k: int) -> int:
        return max(1, int(k * args.scale))

    config = LockConfig("cookbook-redis", "prefork", 2)
    rows: list[dict[str, object]] = []
    if "check-lock" in groups:  # first: its own servers, not beside this process's
        rows.append(check_lock_row(
            "check-lock-broken", "examples.locks.memcached_get_set:make_lock", True
        ))  # fmt: skip
        rows.append(check_lock_row(
            "check-lock-sound", "examples.locks.redis_set_nx_px:make_lock", False
        ))  # fmt: skip
    if groups == {"check-lock"}:
        return rows
    with Cluster() as cluster:
        if "search" in groups:
            dev_profile_without_database()
        for name, area, search_config, prop in SEARCHES if "search" in groups else []:
            rows.append(search_row(name, cluster, area, search_config, prop))
        if "loop" not in groups:
            return rows
        rows.append(bench(
            "lock-redis-2tasks", cluster, config, count(500), frozenset(),
            lambda: submit_then_round_robin(cluster),
        ))  # fmt: skip
        # The kill lands while t1 is inside the critical section; the pool respawns
        # the child before the next scenario can use the slot.
        kill_config = LockConfig("cookbook-redis", "prefork", 2)
        rows.append(bench(
            "lock-redis-2tasks-kill", cluster, kill_config, count(100), frozenset({"kill"}),
            lambda: submit_then_round_robin(cluster, kill_at="cs"),
        ))  # fmt: skip
        # One message under acks_late; the worker's main process dies mid-task; the
        # warm standby takes the queue over and runs the redelivery to completion.
        delivery = DeliveryConfig("redis", "solo", 1, acks_late=True)
        rows.append(bench(
            "delivery-kill-main", cluster, delivery, count(30), frozenset({"kill", "vt"}),
            lambda: kill_main_mid_task(cluster), tasks=1,
        ))  # fmt: skip
        fresh = cluster.worker(WorkerSpec("prefork", 2))
        rows.append(bench(
            "baseline-fresh-worker", cluster, config, count(5), frozenset(),
            lambda: submit_then_round_robin(cluster), before=fresh.restart,
        ))  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
