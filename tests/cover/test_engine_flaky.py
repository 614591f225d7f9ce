"""A search whose runner offers other moves to the same choices: the harness error must
say where the enabled sets first differed, with both timelines. No servers: the runner
is a stand-in whose enabled set depends on outside state, the way a racy harness
would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from model import history as h
from model.verdict import Prediction
from properties.engine import Area, Found, Played, replayed_differently, search
from properties.scenario import Line
from properties.schedule import first_difference, watching


@dataclass(frozen=True)
class _Config:
    def label(self) -> str:
        return "fake"

    def as_dict(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class _Line(Line[_Config]):
    def head(self) -> str:
        return f"{self.prop} fake"


@dataclass
class _Run:
    tasks: int
    history: h.History
    moves: list[str] = field(default_factory=list)


class _Controller:
    def __init__(self) -> None:
        self.history = h.History()


class _Cluster:
    def __init__(self) -> None:
        self.controller = _Controller()


class _Racy:
    """Offers ``go`` and ``wait``, plus ``late`` from the third example on: what a
    harness shows when a delivery it does not wait for lands on some runs only."""

    def __init__(self, cluster: _Cluster) -> None:
        self.cluster, self.runs = cluster, 0

    def run(self, tasks: int, choose: Any) -> _Run:
        self.runs += 1
        history = self.cluster.controller.history = h.History()
        run = _Run(tasks, history)
        for _ in range(3):
            offered = ["go", "wait", *(["late"] if self.runs > 2 else [])]
            run.moves.append(choose(offered))
            history.append(h.Submitted(f"t{len(run.moves)}"))
        return run


class _Area(Area[_Config]):
    name = "fake"
    digest = "fake|"
    line = _Line
    config_type = _Config
    properties = ("always-fails",)
    tasks = st.just(1)

    def runner(self, cluster: Any, config: _Config, prop: str) -> _Racy:
        return _Racy(cluster)

    def draw(self, data: st.DataObject, runner: Any) -> Any:
        return runner.run(1, lambda enabled: data.draw(st.sampled_from(enabled)))

    def predict(self, config: _Config, prop: str) -> tuple[Prediction, str]:
        return "violated", "it always fails"

    def violations(self, config: _Config, prop: str, events: Sequence[h.Event]) -> Found:
        return [(0, "#0 always")]


def test_a_search_that_replays_differently_says_where_the_sets_differ() -> None:
    outcome = search(_Area(), _Cluster(), _Config(), "always-fails")  # type: ignore[arg-type]
    assert outcome.verdict == "harness error"
    assert outcome.error is not None
    assert "FlakyStrategyDefinition" in outcome.error
    assert "their enabled sets first differ at move 1: ['go', 'wait'] against" in outcome.error
    assert "['go', 'wait', 'late']" in outcome.error
    # The earlier example's timeline; the last one stopped at its first draw.
    assert "Example 1:\n     0  -            submit t1" in outcome.error
    assert "The last one raised FlakyStrategyDefinition" in outcome.error


def test_first_difference() -> None:
    assert first_difference([["a"], ["b"]], [["a"], ["b"]]) == ""
    assert first_difference([["a"], ["b"]], [["a"], ["c"]]) == "at move 2: ['b'] against ['c']"
    assert first_difference([["a"]], [["a"], ["b"]]) == "one run was offered 1 sets, the other 2"


def test_the_twin_is_the_example_with_the_longest_common_choices() -> None:
    a = Played((0, 1, 1), [["x", "y"]], [h.Submitted("t1")])
    b = Played((0, 1, 0), [["x", "z"]], [h.Submitted("t2")])
    last = Played((0, 1, 0, 5), [["x", "y"]], [h.Submitted("t3")], "StopTest: boom")
    text = replayed_differently([a, b, last])
    assert "Example 2 and the last one (3) made the same first 3 Hypothesis choices" in text
    assert "first differ at move 1: ['x', 'z'] against ['x', 'y']" in text
    assert "The last one raised StopTest: boom" in text


def test_watching_keeps_each_offered_set() -> None:
    offered: list[list[str]] = []
    choose = watching(lambda enabled: enabled[-1], offered)
    assert [choose(["a", "b"]), choose(["c"])] == ["b", "c"]
    assert offered == [["a", "b"], ["c"]]
