"""Canvas properties on real workers: a chord's header tasks and body under faults."""

from __future__ import annotations

from harness.cluster import Cluster
from properties.findings import Findings
from properties.plugin import Case, verify


def test_canvas(canvas_case: Case, cluster: Cluster, report: Findings) -> None:
    verify(canvas_case, cluster, report)
