"""A scenario as one line of text: what the findings print and ``replay`` reads back.

    mutual-exclusion cookbook-locmem prefork/2 tasks=2: submit; step t1; submit; step t2

The config, the property and the exact list of moves; nothing else is needed to run
it again, so the line is the reproduction.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from model import canvas_config, lock_properties, routing
from model.beat import BeatConfig, parse_beat_label
from model.canvas_config import CanvasConfig
from model.config import (
    Broker,
    DeliveryConfig,
    EagerConfig,
    LockConfig,
    Pool,
    PublishConfig,
    StateConfig,
    parse_publish_label,
    parse_state_label,
)
from model.routing import RoutingConfig

C = TypeVar("C")


@dataclass(frozen=True)
class Line(Generic[C]):
    """What every scenario line holds; each kind spells its config in ``head``."""

    prop: str
    config: C
    tasks: int
    moves: tuple[str, ...]

    def head(self) -> str:
        raise NotImplementedError

    def encode(self) -> str:
        return f"{self.head()} tasks={self.tasks}: " + "; ".join(self.moves)

    def command(self) -> str:
        return f"nox -s replay -- {shlex.quote(self.encode())}"


def split_moves(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(";") if s.strip())


_FORMAT = re.compile(
    r"(?P<prop>\S+) (?P<lock>\S+) (?P<pool>\w+)/(?P<c>\d+) tasks=(?P<n>\d+):(?P<moves>.*)"
)


@dataclass(frozen=True)
class Scenario(Line[LockConfig]):
    def head(self) -> str:
        c = self.config
        return f"{self.prop} {c.lock} {c.pool}/{c.concurrency}"

    @classmethod
    def decode(cls, text: str) -> Scenario:
        m = _FORMAT.fullmatch(text.strip())
        if not m:
            raise ValueError(
                "a scenario reads '<property> <lock> <pool>/<concurrency> tasks=<n>: "
                f"<move>; <move>; ...', got {text!r}"
            )
        pool: Pool = m["pool"]  # type: ignore[assignment]  # LockConfig validates it
        config = LockConfig(m["lock"], pool, int(m["c"]))
        return cls(m["prop"], config, int(m["n"]), split_moves(m["moves"]))


_DELIVERY = re.compile(
    r"(?P<prop>\S+) (?P<effect>\S+) (?P<broker>\w+)/(?P<ack>early|late|late\+requeue)"
    r"/(?P<pool>\w+)/(?P<c>\d+)(?:/retry(?P<retries>\d+)max(?P<max>\d+)(?P<auto>auto)?)?"
    r" tasks=(?P<n>\d+):(?P<moves>.*)"
)


@dataclass(frozen=True)
class DeliveryScenario(Line[DeliveryConfig]):
    """``at-least-once insert-on-conflict redis/late/prefork/2 tasks=1: submit; kill t1``"""

    def head(self) -> str:
        c = self.config
        retry = f"/{c.retry}" if c.retries else ""
        return f"{self.prop} {c.effect} {c.broker}/{c.ack}/{c.pool}/{c.concurrency}{retry}"

    @classmethod
    def decode(cls, text: str) -> DeliveryScenario:
        m = _DELIVERY.fullmatch(text.strip())
        if not m:
            raise ValueError(
                "a delivery scenario reads '<property> <effect> <broker>/<early|late|"
                f"late+requeue>/<pool>/<concurrency> tasks=<n>: <move>; ...', got {text!r}"
            )
        pool: Pool = m["pool"]  # type: ignore[assignment]  # DeliveryConfig validates it
        broker: Broker = m["broker"]  # type: ignore[assignment]
        config = DeliveryConfig(
            broker, pool, int(m["c"]), acks_late=m["ack"] != "early",
            reject_on_worker_lost=m["ack"] == "late+requeue", effect=m["effect"],
            retries=int(m["retries"] or 0), max_retries=int(m["max"] or 3),
            autoretry=bool(m["auto"]),
        )  # fmt: skip
        return cls(m["prop"], config, int(m["n"]), split_moves(m["moves"]))


StateLine = StateConfig | EagerConfig | PublishConfig

_STATE = re.compile(
    r"(?P<prop>\S+) (?P<mode>state|eager|publish) (?P<label>\S+) tasks=(?P<n>\d+):(?P<m>.*)"
)


@dataclass(frozen=True)
class StateScenario(Line[StateLine]):
    """``read-your-writes-across-tasks state prefork/c2 tasks=2: submit write; ...``; the
    eager form has ``eager`` and a store or lock in place of ``state`` and a config; the
    publishing form ``task-finds-its-row publish in-transaction/prefork/c2 tasks=1: ...``."""

    def head(self) -> str:
        c = self.config
        mode, label = (
            ("eager", c.target)
            if isinstance(c, EagerConfig)
            else ("publish", c.label())
            if isinstance(c, PublishConfig)
            else ("state", c.label())
        )
        return f"{self.prop} {mode} {label}"

    @classmethod
    def decode(cls, text: str) -> StateScenario:
        m = _STATE.fullmatch(text.strip())
        if not m:
            raise ValueError(
                "a state scenario reads '<property> state <config> tasks=<n>: <move>; ...' "
                "or '<property> eager|publish <store, lock or config> tasks=<n>: ...', "
                f"got {text!r}"
            )
        config: StateLine
        if m["mode"] == "state":
            config = parse_state_label(m["label"])
        elif m["mode"] == "publish":
            config = parse_publish_label(m["label"])
        elif m["prop"] in lock_properties.PROPERTIES:
            config = EagerConfig("lock", m["label"])
        else:
            config = EagerConfig("state", m["label"])
        return cls(m["prop"], config, int(m["n"]), split_moves(m["m"]))


_BEAT = re.compile(r"(?P<prop>\S+) beat (?P<label>\S+) tasks=(?P<n>\d+):(?P<m>.*)")


@dataclass(frozen=True)
class BeatScenario(Line[BeatConfig]):
    """``one-send-per-tick beat persistent/b2/none tasks=1: advance; tick b1; ...``:
    ``tasks`` is the number of clock periods the scenario advances."""

    def head(self) -> str:
        return f"{self.prop} beat {self.config.label()}"

    @classmethod
    def decode(cls, text: str) -> BeatScenario:
        m = _BEAT.fullmatch(text.strip())
        if not m:
            raise ValueError(
                "a beat scenario reads '<property> beat <scheduler>/bN[/shared]/<faults> "
                f"tasks=<n>: <move>; ...', got {text!r}"
            )
        return cls(m["prop"], parse_beat_label(m["label"]), int(m["n"]), split_moves(m["m"]))


@dataclass(frozen=True)
class CanvasScenario(Line[CanvasConfig]):
    """``body-once canvas chord/redis/late/zset/prefork/c2 tasks=2: submit; step t1; ...``
    (``tasks``: the chord's header tasks, a chain's steps, a group's members:
    model/canvas_config.py)."""

    def head(self) -> str:
        return f"{self.prop} canvas {self.config.label()}"

    @classmethod
    def decode(cls, text: str) -> CanvasScenario:
        m = _CANVAS.fullmatch(text.strip())
        if not m:
            raise ValueError(
                "a canvas scenario reads '<property> canvas <chord|chain|group>/<broker>/"
                f"<ack>/<variant>/<pool>/c<n> tasks=<n>: <move>; ...', got {text!r}"
            )
        config = canvas_config.parse_label(m["label"])
        return cls(m["prop"], config, int(m["n"]), split_moves(m["m"]))


_CANVAS = re.compile(r"(?P<prop>\S+) canvas (?P<label>\S+) tasks=(?P<n>\d+):(?P<m>.*)")


_ROUTING = re.compile(r"(?P<prop>\S+) routing (?P<label>\S+) tasks=(?P<n>\d+):(?P<m>.*)")


@dataclass(frozen=True)
class RoutingScenario(Line[RoutingConfig]):
    """``no-stuck-task routing redis/routes/celery/create tasks=1: submit``: the
    broker, the route, each worker's -Q (``|`` between workers), missing queues
    (model/routing.py)."""

    def head(self) -> str:
        return f"{self.prop} routing {self.config.label()}"

    @classmethod
    def decode(cls, text: str) -> RoutingScenario:
        m = _ROUTING.fullmatch(text.strip())
        if not m:
            raise ValueError(
                "a routing scenario reads '<property> routing <broker>/<route>/<queues>"
                f"[|<queues>]/<create|declared>[/...] tasks=<n>: <move>; ...', got {text!r}"
            )
        config = routing.parse_label(m["label"])
        return cls(m["prop"], config, int(m["n"]), split_moves(m["m"]))


def decode_any(text: str) -> Line[Any]:
    """A lock, delivery, state, publishing, beat, canvas or routing scenario line,
    whichever it is."""
    head = text.strip().split(" ", 3)
    if len(head) >= 2 and head[1] == "beat":
        return BeatScenario.decode(text)
    if len(head) >= 2 and head[1] == "canvas":
        return CanvasScenario.decode(text)
    if len(head) >= 2 and head[1] == "routing":
        return RoutingScenario.decode(text)
    if len(head) >= 2 and head[1] in ("state", "eager", "publish"):
        return StateScenario.decode(text)
    if len(head) >= 3 and head[2].count("/") >= 3:
        return DeliveryScenario.decode(text)
    return Scenario.decode(text)
