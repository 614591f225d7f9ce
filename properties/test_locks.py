"""Lock properties on real workers: every property x config in the matrix (or the
plug-in locks given with ``--lock``)."""

from __future__ import annotations

from harness.cluster import Cluster
from model.config import LockConfig
from properties.findings import Findings
from properties.search import search
from properties.verdicts import acceptable


def test_lock(prop: str, lock_config: LockConfig, cluster: Cluster, report: Findings) -> None:
    outcome = search(cluster, lock_config, prop)
    report.add(outcome)
    ok, why = acceptable(outcome)
    detail = outcome.failure.report() if outcome.failure else (outcome.error or "")
    assert ok, f"{prop} on {lock_config.label()}: {outcome.verdict} ({why})\n{detail}"
