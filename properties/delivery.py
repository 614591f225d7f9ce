"""The delivery area: messages, acks, redeliveries and retries under faults.

Every run is checked against the delivery model first (a difference is a *model
mismatch*), then against the property's invariant. After the search, generic
schedule shapes run (``Attack``): two runs of one message overlapping at every
point, a kill at each point of the first run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from harness.cluster import Cluster
from harness.runs.delivery import DeliveryRun, DeliveryRunner
from model import history as h
from model.config import DeliveryConfig
from model.delivery import check_delivery
from model.delivery_properties import PROPERTIES, expected, why
from model.verdict import Prediction
from properties import matrix, profiles
from properties.engine import Area, Found, plain
from properties.scenario import DeliveryScenario


class Attack:
    """A generic schedule shape, played when the random search finds nothing: it
    names moves by role (the first task, its redelivery), never an effect's SQL.

    ``head`` is played as far as its moves are enabled; then the steps go round-robin
    over the live executions (``interleave``) or to the lowest one, to the end."""

    def __init__(self, name: str, head: list[str], interleave: bool) -> None:
        self.name, self.head, self.interleave = name, head, interleave
        self._last = ""

    def __call__(self, enabled: list[str]) -> str:
        while self.head:
            move = self.head.pop(0)
            if move in enabled:
                return move
        steps = [m for m in enabled if m.startswith("step")]
        if not steps:
            calm = [m for m in enabled if m == "submit"]
            return calm[0] if calm else enabled[0]
        if self.interleave and len(steps) > 1:
            later = [m for m in steps if m > self._last]
            self._last = (later or steps)[0]
            return self._last
        return steps[0]


def shapes(config: DeliveryConfig, prop: str) -> list[tuple[str, int, Attack]]:
    """Shapes for the deep cases: two runs of one message overlapping at every
    point (a visibility timeout while the first runs), and a kill at each point of
    the first run (child and main), retried or not."""
    found: list[tuple[str, int, Attack]] = []
    moves = PROPERTIES[prop].moves
    for k in range(1, 5):
        if "vt" in moves and config.broker == "redis":
            head = ["submit", *["step t1"] * k, "vt"]
            found.append((f"overlap after {k} steps", 1, Attack("overlap", head, True)))
            if config.retries and config.concurrency == 2:
                # t2 holds the other slot, so t1's retry waits in the buffer, unacked
                # under early ack too, when the visibility timeout passes.
                head = ["submit", "submit", *["step t1"] * k, "vt"]
                found.append((f"waiting retry after {k} steps", 2, Attack("wait", head, False)))
        if "kill" in moves:
            for kill in ("kill t1", "kill-main t1"):
                head = ["submit", *["step t1"] * k, kill, "vt"]
                found.append((f"{kill} after {k} steps", 1, Attack(kill, head, False)))
    return found


class DeliveryArea(Area[DeliveryConfig]):
    name = "delivery"
    digest = "delivery|"
    line = DeliveryScenario
    config_type = DeliveryConfig
    properties = tuple(PROPERTIES)

    def runner(self, cluster: Cluster, config: DeliveryConfig, prop: str) -> DeliveryRunner:
        return DeliveryRunner(cluster, config, frozenset(PROPERTIES[prop].moves))

    def attacks(
        self, runner: Any, config: DeliveryConfig, prop: str
    ) -> Iterator[tuple[str, DeliveryRun]]:
        for name, tasks, attack in shapes(config, prop):
            yield name, runner.run(tasks, attack)

    def passed_note(self, attacks: int) -> list[str]:
        return [f"{attacks} attack shapes passed too"]

    def predict(self, config: DeliveryConfig, prop: str) -> tuple[Prediction, str]:
        return expected(config, prop), why(config, prop)

    def mismatches(self, config: DeliveryConfig, events: Sequence[h.Event]) -> Found:
        return [
            (m.index, f"#{m.index} {m.task}: expected {m.expected}, observed {m.observed}: "
             f"{m.why}")
            for m in check_delivery(config, events)
        ]  # fmt: skip

    def violations(self, config: DeliveryConfig, prop: str, events: Sequence[h.Event]) -> Found:
        return plain(PROPERTIES[prop].check(config, events))

    def examples(self, config: DeliveryConfig) -> dict[str, int]:
        return profiles.DELIVERY_EXAMPLES

    def shrink(self, expected: str) -> int:
        return profiles.shrink_calls(expected, delivery=True)

    def config_row(self, prop: str, config: DeliveryConfig) -> dict[str, Any]:
        """The config, and the fault moves the property's scenarios may contain."""
        return {**config.as_dict(), "fault": ",".join(sorted(PROPERTIES[prop].moves)) or "none"}

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, DeliveryConfig]]:
        wanted = [p for p in options("property") if p in PROPERTIES]
        return matrix.delivery_cases(matrix_, options("effect"), wanted or None)


AREA = DeliveryArea()
