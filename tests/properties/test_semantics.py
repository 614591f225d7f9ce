"""The semantics reference (celery-semantics.md sections 1-5), one real run per row
and broker. Each claim states what model/delivery.py assumes; a run that differs fails
here and in the delivery-model property, and the model must follow the run."""

from __future__ import annotations

from harness.cluster import Cluster
from properties.claims import Claim
from properties.findings import Findings
from properties.semantics import check


def test_claim(claim: Claim, broker: str, cluster: Cluster, report: Findings) -> None:
    result = check(cluster, claim, broker)
    report.add_claim(result)
    assert result.verdict == "confirmed", (
        f"{claim.id} on {broker}: {result.verdict}: {result.detail}\n"
        f"{result.scenario}\n{result.timeline}"
    )
