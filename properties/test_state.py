"""Where state lives, on real workers: every module-state property x config in the
matrix, the same scenarios under task_always_eager, and publishing from inside a
database transaction."""

from __future__ import annotations

from harness.cluster import Cluster
from model.config import PublishConfig, StateConfig
from model.publishing import PROPERTY
from properties import state
from properties.findings import Findings
from properties.verdicts import acceptable


def test_state(
    state_prop: str, state_config: StateConfig, cluster: Cluster, report: Findings
) -> None:
    outcome = state.search(cluster, state_config, state_prop)
    report.add(outcome)
    ok, why = acceptable(outcome)
    detail = outcome.failure.report() if outcome.failure else (outcome.error or "")
    assert ok, f"{state_prop} on {state_config.label()}: {outcome.verdict} ({why})\n{detail}"


def test_eager(
    eager_prop: str, eager_config: state.EagerConfig, cluster: Cluster, report: Findings
) -> None:
    """Eager mode must say "holds" for each of these, including those real workers
    violate: that is the finding (README, "Eager mode")."""
    outcome = state.search_eager(eager_config, eager_prop)
    report.add(outcome)
    ok, why = acceptable(outcome)
    detail = outcome.failure.report() if outcome.failure else (outcome.error or "")
    assert ok, f"{eager_prop} on {eager_config.label()}: {outcome.verdict} ({why})\n{detail}"


def test_publish(publish_config: PublishConfig, cluster: Cluster, report: Findings) -> None:
    outcome = state.search_publish(cluster, publish_config)
    report.add(outcome)
    ok, why = acceptable(outcome)
    detail = outcome.failure.report() if outcome.failure else (outcome.error or "")
    assert ok, f"{PROPERTY} on {publish_config.label()}: {outcome.verdict} ({why})\n{detail}"
