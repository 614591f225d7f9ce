"""Delivery properties on real workers and brokers: every property x config in the
delivery matrix (or the plug-in effects given with ``--effect``)."""

from __future__ import annotations

from harness.cluster import Cluster
from model.config import DeliveryConfig
from properties.delivery import search
from properties.findings import Findings
from properties.verdicts import acceptable


def test_delivery(
    delivery_prop: str, delivery_config: DeliveryConfig, cluster: Cluster, report: Findings
) -> None:
    outcome = search(cluster, delivery_config, delivery_prop)
    report.add(outcome)
    ok, why = acceptable(outcome)
    detail = outcome.failure.report() if outcome.failure else (outcome.error or "")
    assert ok, f"{delivery_prop} on {delivery_config.label()}: {outcome.verdict} ({why})\n{detail}"
