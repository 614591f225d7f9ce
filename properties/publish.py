"""The publishing area: a task sent from inside a database transaction, and whether
it finds the row its sender wrote (``task-finds-its-row``), per way of sending.

The sender's transaction runs in this process; ``commit`` and ``rollback`` are moves.
Each run is checked against model/publishing.py first, then against the invariant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from harness.cluster import Cluster
from harness.runs.publish import PublishRunner
from model import history as h
from model import publishing as pub
from model.config import PublishConfig
from model.verdict import Prediction
from properties import matrix, profiles
from properties.engine import Area, Found, described
from properties.scenario import StateScenario


class PublishArea(Area[PublishConfig]):
    name = "publish"
    digest = "state|"
    line = StateScenario
    config_type = PublishConfig
    properties = (pub.PROPERTY,)
    tasks = st.integers(min_value=1, max_value=2)

    def runner(self, cluster: Cluster, config: PublishConfig, prop: str) -> PublishRunner:
        return PublishRunner(cluster, config)

    def predict(self, config: PublishConfig, prop: str) -> tuple[Prediction, str]:
        return pub.expected_verdict(config), pub.why(config)

    def mismatches(self, config: PublishConfig, events: Sequence[h.Event]) -> Found:
        return described(pub.mismatches(config, events))

    def violations(self, config: PublishConfig, prop: str, events: Sequence[h.Event]) -> Found:
        return described(pub.violations(events))

    def examples(self, config: PublishConfig) -> dict[str, int]:
        return profiles.STATE_EXAMPLES

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, PublishConfig]]:
        return [(pub.PROPERTY, c) for c in matrix.publish_cases(matrix_)]

    def case_id(self, prop: str, config: PublishConfig) -> str:
        return config.label()


AREA = PublishArea()
