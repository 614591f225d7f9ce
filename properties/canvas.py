"""The canvas area: a chord's header tasks, its count and its body, a chain's steps and
a group's members under faults.

Every run is checked against the shape's model first (model/canvas_properties.py
``check``: a chord's join, model/canvas.py ``check_join``: at each count, does the run
publish the body or not, the body's state when nothing published it; a chain's or a
group's messages, model/canvas_steps.py: deliveries, states, which run publishes the
next step); a difference is a *model mismatch*. Then the property's invariant. After
the search, the area's attacks play the shapes the questions of issue 16 name: a
header or a step killed (child, or main) at each of its points, then the visibility
timeout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

from harness.cluster import Cluster
from harness.runs.canvas import CanvasRunner
from harness.runs.delivery import DeliveryRun
from model import history as h
from model.canvas_config import TASKS, CanvasConfig
from model.canvas_properties import PROPERTIES, VIOLATIONS, check, rule
from model.canvas_unlock import UNLOCK
from model.verdict import Prediction
from properties import matrix, profiles
from properties.delivery import Attack
from properties.engine import Area, Found, described, plain
from properties.scenario import CanvasScenario
from properties.schedule import schedule

# A header's points in order (tasks/canvas.py); a kill after k steps lands at the k-th.
HEADER_POINTS = ("done", "count", "published", "counted")
STEP_POINTS = ("done", "published", "stored")  # a chain step's, but the last's
RETRY_POINTS = ("retry", "retried")  # the retrying step's first run


def shapes(config: CanvasConfig) -> list[tuple[str, int, Attack]]:
    """A one-header chord's run killed at each of its points (child, or main with its
    children), then the visibility timeout until every redelivery has run. A chain's
    (two steps; a ``retry`` chain's three): its first step killed at each of its points,
    and the retrying step at each of its first run's; a group's first member at each."""
    kills = ("kill t1", "kill-main t1")
    # What lets time pass after the kill: Redis's visibility timeout, RabbitMQ's wait.
    after = "vt" if config.broker == "redis" else "expire"
    if config.plugin:
        return plugin_shapes(after)
    if config.shape == "chord":
        points: tuple[str, ...] = HEADER_POINTS
        tasks = 1
    elif config.shape == "chain":
        points, tasks = STEP_POINTS, 3 if config.retry else 2
    else:
        points, tasks = ("done", "stored"), 2
    found = []
    for k, where in enumerate(points, start=1):
        for kill in kills:
            head = ["submit", *["step t1"] * k, kill, after]
            found.append((f"{kill} at {where!r}", tasks, Attack(kill, head, False)))
    if config.shape == "chord" and config.join == "db":
        # The chord_unlock poll killed once it published the body (the header ended
        # first: its points, then the poll's step that finds the chord ready). The
        # search missed it on RabbitMQ in the full matrix of 2026-12-07.
        to_ready = ["submit", *["step t1"] * len(HEADER_POINTS), f"step {UNLOCK}"]
        for kill in (f"kill {UNLOCK}", f"kill-main {UNLOCK}"):
            head = [*to_ready, kill, after]
            found.append((f"{kill} at 'published'", tasks, Attack(kill, head, False)))
    if config.retry:
        to_t2 = ["submit", *["step t1"] * (len(STEP_POINTS) + 1)]  # t1 to its end
        for k, where in enumerate(RETRY_POINTS, start=1):
            for kill in ("kill t2", "kill-main t2"):
                head = [*to_t2, *["step t2"] * k, kill, after]
                found.append((f"{kill} at {where!r}", tasks, Attack(kill, head, False)))
    return found


def plugin_shapes(after: str) -> list[tuple[str, int, Attack]]:
    """A plug-in canvas's first task, and its second once the first ended, killed
    (child, or main) after each of its first steps: its own points (its statements)
    are unknown here, so a kill after 1 to 4 steps lands wherever they are."""
    found = []
    for task in ("t1", "t2"):
        to_it = ["step t1"] * 12 if task == "t2" else []  # moves not enabled are skipped
        for k in range(1, 5):
            for kill in (f"kill {task}", f"kill-main {task}"):
                head = ["submit", *to_it, *[f"step {task}"] * k, kill, after]
                found.append((f"{kill} after {k} steps", 1, Attack(kill, head, False)))
    return found


class CanvasArea(Area[CanvasConfig]):
    name = "canvas"
    digest = "canvas|"
    line = CanvasScenario
    config_type = CanvasConfig
    properties = tuple(PROPERTIES)

    def runner(self, cluster: Cluster, config: CanvasConfig, prop: str) -> CanvasRunner:
        return CanvasRunner(cluster, config, prop)

    def draw(self, data: st.DataObject, runner: Any) -> Any:
        """The number of tasks the shape draws (a chord's headers, a chain's steps, a
        group's members), then every move."""
        low, high = TASKS[runner.canvas.shape]
        tasks = data.draw(st.integers(min_value=low, max_value=high), label="tasks")
        return runner.run(tasks, schedule(data))

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
        return described(check(config, events))

    def violations(self, config: CanvasConfig, prop: str, events: Sequence[h.Event]) -> Found:
        return plain(VIOLATIONS[prop](events))

    def examples(self, config: CanvasConfig) -> dict[str, int]:
        return profiles.DELIVERY_EXAMPLES

    def shrink(self, expected: str) -> int:
        return profiles.shrink_calls(expected, delivery=True)

    def config_row(self, prop: str, config: CanvasConfig) -> dict[str, Any]:
        moves = ",".join(sorted(PROPERTIES[prop][1]))
        return {**config.as_dict(), "canvas": config.shape, "fault": moves}

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, CanvasConfig]]:
        """The built-in rows, or only a plug-in canvas's (``--canvas``): effects-once
        under acks_late on both brokers."""
        if plugins := options("canvas"):
            return [
                ("effects-once", CanvasConfig(b, "prefork", 2, True, shape="custom", plugin=p))
                for p in plugins for b in ("redis", "amqp")
            ]  # fmt: skip
        wanted = [p for p in options("property") if p in PROPERTIES]
        return [(p, c) for p, c in matrix.canvas_cases(matrix_) if not wanted or p in wanted]


AREA = CanvasArea()
