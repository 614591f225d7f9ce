"""Lock properties on real workers: every property x config in the matrix (or the
plug-in locks given with ``--lock``)."""

from __future__ import annotations

from harness.cluster import Cluster
from properties.findings import Findings
from properties.plugin import Case, verify


def test_lock(lock_case: Case, cluster: Cluster, report: Findings) -> None:
    verify(lock_case, cluster, report)
