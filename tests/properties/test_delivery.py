"""Delivery properties on real workers and brokers: every property x config in the
delivery matrix (or the plug-in effects given with ``--effect``)."""

from __future__ import annotations

from harness.cluster import Cluster
from properties.findings import Findings
from properties.plugin import Case, verify


def test_delivery(delivery_case: Case, cluster: Cluster, report: Findings) -> None:
    verify(delivery_case, cluster, report)
