"""The canvas area: a chord's header tasks, its count and its body under faults.

Every run is checked against the join model first (model/canvas.py ``check_join``: at
each count, does the run publish the body or not; the body's state when nothing
published it); a difference is a *model mismatch*. Then the property's invariant.
After the search, the area's attacks play the shapes the questions of issue 16 name:
a header killed (child, or main) at each of its points, then the visibility timeout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from harness.cluster import Cluster
from harness.runs.canvas import CanvasRunner
from harness.runs.delivery import DeliveryRun
from model import history as h
from model.canvas import PROPERTIES, VIOLATIONS, CanvasConfig, check_join, rule
from model.verdict import Prediction
from properties import matrix, profiles
from properties.delivery import Attack
from properties.engine import Area, Found, described, plain
from properties.scenario import CanvasScenario

# A header's points in order (tasks/canvas.py); a kill after k steps lands at the k-th.
HEADER_POINTS = ("done", "count", "published", "counted")


def shapes(config: CanvasConfig) -> list[tuple[str, int, Attack]]:
    """A one-header chord's run killed at each of its points (child, or main with its
    children), then the visibility timeout until every redelivery has run."""
    found = []
    for k, where in enumerate(HEADER_POINTS, start=1):
        for kill in ("kill t1", "kill-main t1"):
            head = ["submit", *["step t1"] * k, kill, "vt"]
            found.append((f"{kill} at {where!r}", 1, Attack(kill, head, False)))
    return found


class CanvasArea(Area[CanvasConfig]):
    name = "canvas"
    digest = "canvas|"
    line = CanvasScenario
    config_type = CanvasConfig
    properties = tuple(PROPERTIES)

    def runner(self, cluster: Cluster, config: CanvasConfig, prop: str) -> CanvasRunner:
        return CanvasRunner(cluster, config, prop)

    def attacks(
        self, runner: Any, config: CanvasConfig, prop: str
    ) -> Iterator[tuple[str, DeliveryRun]]:
        for name, tasks, attack in shapes(config):
            yield name, runner.run(tasks, attack)

    def passed_note(self, attacks: int) -> list[str]:
        return [f"{attacks} attack shapes passed too"]

    def predict(self, config: CanvasConfig, prop: str) -> tuple[Prediction, str]:
        return rule(config, prop)

    def mismatches(self, config: CanvasConfig, events: Sequence[h.Event]) -> Found:
        return described(check_join(config, events))

    def violations(self, config: CanvasConfig, prop: str, events: Sequence[h.Event]) -> Found:
        return plain(VIOLATIONS[prop](events))

    def examples(self, config: CanvasConfig) -> dict[str, int]:
        return profiles.DELIVERY_EXAMPLES

    def shrink(self, expected: str) -> int:
        return profiles.shrink_calls(expected, delivery=True)

    def config_row(self, prop: str, config: CanvasConfig) -> dict[str, Any]:
        moves = ",".join(sorted(PROPERTIES[prop][0]))
        return {**config.as_dict(), "canvas": "chord", "fault": moves}

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, CanvasConfig]]:
        wanted = [p for p in options("property") if p in PROPERTIES]
        return [(p, c) for p, c in matrix.canvas_cases(matrix_) if not wanted or p in wanted]


AREA = CanvasArea()
