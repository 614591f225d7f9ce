"""Where state lives, on real workers: every module-state property x config in the
matrix, the same scenarios under task_always_eager, and publishing from inside a
database transaction."""

from __future__ import annotations

from harness.cluster import Cluster
from properties.findings import Findings
from properties.plugin import Case, verify


def test_state(state_case: Case, cluster: Cluster, report: Findings) -> None:
    verify(state_case, cluster, report)


def test_eager(eager_case: Case, cluster: Cluster, report: Findings) -> None:
    """Eager mode must say "holds" for each of these, including those real workers
    violate: that is the finding (docs/findings/eager.md)."""
    verify(eager_case, cluster, report)


def test_publish(publish_case: Case, cluster: Cluster, report: Findings) -> None:
    verify(publish_case, cluster, report)
