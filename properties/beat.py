"""The beat area: one to three real ``celery beat`` processes, a scenario clock, and
whether every due tick of an entry is sent once (``one-send-per-tick``) and at least
once while a beat runs (``every-tick-sent``).

The runner (harness/runs/beat.py) offers ticks, sends, clock advances and the faults
the config allows; each run is checked against model/beat.py first (a step the
scheduler's code does not allow is a model mismatch), then against the property.
When the search finds nothing, the attacks play the classic shapes: two beats in one
due tick, a restart before a save, a lock holder held past its lock's timeout inside
a tick and between ticks, a killed holder's lock expiring.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

from harness.cluster import Cluster
from harness.runs.base import Run
from harness.runs.beat import BeatRunner
from model import beat as mb
from model import history as h
from model.beat import BeatConfig
from model.verdict import Prediction
from properties.engine import Area, Found, Runner, described, plain
from properties.scenario import BeatScenario
from properties.schedule import lenient, schedule

# Examples per row: each starts its beats afresh (a fork each, ~0.3 s on an idle
# machine), so a beat example costs about a lock example's second.
BEAT_EXAMPLES = {"dev": 15, "ci": 8, "nightly": 200}
# Moves that only let a scenario go on; the rest (kill, pause, expire) are faults.
CALM = ("send", "tick", "advance", "resume", "restart", "end")
# Progress sticks with the beat last sent or ticked unless a switch is drawn.
STICKY = ("send", "tick")

# Known shapes, in the runner's move names (the lenient replay skips a move that is
# not enabled, then finishes the simplest way).
SHAPES: dict[str, list[str]] = {
    "two beats in one due tick": ["advance", "tick b1", "send b1", "tick b2", "send b2"],
    "restart before a save": ["advance", "tick b1", "send b1", "kill b1", "restart b1", "send b1"],
    "holder paused inside a tick past its lock timeout": [
        "advance", "tick b1", "pause b1", "expire", "tick b2", "send b2", "resume b1",
        "send b1",
    ],
    "holder paused between ticks past its lock timeout": [
        "advance", "pause b1", "expire", "tick b2", "send b2", "resume b1", "tick b1",
    ],
    "holder killed inside a tick, its lock expires": [
        "advance", "tick b1", "kill b1", "expire", "tick b2", "send b2", "restart b1",
    ],
}  # fmt: skip


class BeatArea(Area[BeatConfig]):
    name = "beat"
    digest = "beat|"
    line = BeatScenario
    config_type = BeatConfig
    properties = tuple(mb.PROPERTIES)
    tasks = st.integers(min_value=1, max_value=3)  # clock periods the scenario advances

    def runner(self, cluster: Cluster, config: BeatConfig, prop: str) -> BeatRunner:
        return BeatRunner(cluster, config)

    def draw(self, data: st.DataObject, runner: Runner) -> Any:
        return runner.run(data.draw(self.tasks, label="periods"), schedule(data, CALM, STICKY))

    def attacks(self, runner: Runner, config: BeatConfig, prop: str) -> Iterator[tuple[str, Run]]:
        for name, moves in SHAPES.items():
            if _fits(name, config):
                yield name, runner.run(3, lenient(moves))

    def passed_note(self, attacks: int) -> list[str]:
        return [f"and {attacks} attack shapes found nothing"] if attacks else []

    def predict(self, config: BeatConfig, prop: str) -> tuple[Prediction, str]:
        return mb.expected_verdict(config, prop), mb.why(config, prop)

    def mismatches(self, config: BeatConfig, events: Sequence[h.Event]) -> Found:
        return described(mb.mismatches(config, events))

    def violations(self, config: BeatConfig, prop: str, events: Sequence[h.Event]) -> Found:
        return plain(mb.violations(config, prop, events))

    def examples(self, config: BeatConfig) -> dict[str, int]:
        return BEAT_EXAMPLES

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, BeatConfig]]:
        return beat_cases(matrix_)


def _fits(shape: str, config: BeatConfig) -> bool:
    """Whether a shape's moves exist on ``config`` (two beats, its faults)."""
    if ("two beats" in shape or "holder" in shape) and config.beats < 2:
        return False
    if "holder" in shape and config.scheduler != "redbeat":
        return False
    if "paused" in shape:
        return config.faults == "pause"
    if "kill" in shape or "restart" in shape:
        return config.faults == "kill"
    return True


def beat_cases(matrix: str) -> list[tuple[str, BeatConfig]]:
    """``ci``: each side of each claim once: two default schedulers (own files, one
    shared file), one killed and restarted, one alone; redbeat's holder paused and
    killed; two django-celery-beat DatabaseSchedulers, one killed and restarted;
    every-tick-sent where beats are killed and paused. ``full``: every scheduler x 1-3
    beats x faults, both properties."""
    if matrix == "full":
        configs = [
            BeatConfig(s, n, f, shared)
            for s in mb.SCHEDULERS for n in (1, 2, 3) for f in mb.FAULTS
            for shared in ((False, True) if s == "persistent" and n > 1 else (False,))
        ]  # fmt: skip
        return [(p, c) for c in configs for p in mb.PROPERTIES]
    once, every = mb.AT_MOST_ONCE, mb.AT_LEAST_ONCE
    return [
        (once, BeatConfig("persistent", 2)),
        (once, BeatConfig("persistent", 2, shared_file=True)),
        (once, BeatConfig("persistent", 1, "kill")),
        (once, BeatConfig("persistent", 1, "pause")),
        (once, BeatConfig("redbeat", 2, "pause")),
        (once, BeatConfig("redbeat", 2, "kill")),
        (once, BeatConfig("django", 2)),
        (once, BeatConfig("django", 1, "kill")),
        (every, BeatConfig("persistent", 2, "kill")),
        (every, BeatConfig("redbeat", 2, "pause")),
    ]


AREA = BeatArea()
