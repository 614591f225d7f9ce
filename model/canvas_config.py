"""A canvas scenario's config: which canvas (a chord, a chain, a group), the broker, the
ack settings and the shape's own variant, as one label a scenario line carries.

    chord/redis/late/zset/prefork/c2     a chord, its join a sorted set (list: a list;
                                         db: the database backend's chord_unlock)
    chain/amqp/early/retry/prefork/c2    a chain whose second step retries once
    group/redis/late+requeue/plain/prefork/c2
    custom/redis/late/pkg.mod:make_canvas/prefork/c2    a plug-in canvas (check-canvas)

The scenario's tasks are ``t1``..``tN`` (a chord's headers, a chain's steps in order, a
group's members) and a chord's body ``t9`` (``BODY``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from model.config import BROKERS, Broker, Pool, check_concurrency, check_pool

BODY = "t9"  # the chord body's task name in a scenario (headers are t1..t3)
Shape = Literal["chord", "chain", "group", "custom"]
SHAPES: tuple[Shape, ...] = ("chord", "chain", "group", "custom")
# A chord's join: the Redis result backend's sorted set or list, or the database
# backend's chord_unlock polling (model/canvas_unlock.py).
Join = Literal["zset", "list", "db"]
# A chain's variant: ``retry``, its second step calls ``self.retry()`` once (celery #6631).
VARIANTS: dict[str, tuple[str, ...]] = {
    "chord": ("zset", "list", "db"),
    "chain": ("plain", "retry"),
    "group": ("plain",),
    "custom": (),  # the plug-in's spec
}
# How many tasks a scenario draws: a chord's headers, a chain's steps, a group's members
# (a plug-in's canvas is what its factory builds).
TASKS: dict[str, tuple[int, int]] = {
    "chord": (1, 3), "chain": (2, 3), "group": (2, 3), "custom": (1, 1),
}  # fmt: skip
RETRYING_STEP = "t2"  # the step of a ``retry`` chain that retries once


@dataclass(frozen=True)
class CanvasConfig:
    """A canvas scenario's config: the broker, the pool, the ack settings, the shape,
    a chord's join (the Redis result backend's ``zset``, ``result_chord_ordered=True``,
    the default, or ``list``; ``db``: the database result backend, whose chord is
    joined by ``celery.chord_unlock`` polling) and whether a chain's second step
    retries once."""

    broker: Broker = "redis"
    pool: Pool = "prefork"
    concurrency: int = 2
    acks_late: bool = False
    reject_on_worker_lost: bool = False
    join: Join = "zset"
    shape: Shape = "chord"
    retry: bool = False
    plugin: str | None = None  # custom: the plug-in's ``pkg.mod:make_canvas``

    def __post_init__(self) -> None:
        if self.broker not in BROKERS:
            raise ValueError(f"unknown broker {self.broker!r}: choose one of {', '.join(BROKERS)}")
        check_pool(self.pool, ("prefork",))
        check_concurrency(self.pool, self.concurrency)
        if self.reject_on_worker_lost and not self.acks_late:
            raise ValueError("reject_on_worker_lost only acts with acks_late (Celery ignores it)")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown canvas {self.shape!r}: choose one of {', '.join(SHAPES)}")
        if self.join not in VARIANTS["chord"]:
            raise ValueError(f"unknown join {self.join!r}: choose zset, list or db")
        if self.join != "zset" and self.shape != "chord":
            raise ValueError(f"a join mode is a chord's: a {self.shape} has none")
        if self.retry and self.shape != "chain":
            raise ValueError("retry is a chain's variant (its second step retries once)")
        if (self.shape == "custom") != bool(self.plugin):
            raise ValueError("a plug-in canvas (custom) needs its plugin, and only it has one")
        if self.plugin and any(ch in self.plugin for ch in "/ \t"):
            raise ValueError(f"a plug-in spec has no '/' or space: {self.plugin!r}")

    @property
    def ack(self) -> str:
        if not self.acks_late:
            return "early"
        return "late+requeue" if self.reject_on_worker_lost else "late"

    @property
    def variant(self) -> str:
        if self.plugin:
            return self.plugin
        if self.shape == "chord":
            return self.join
        return "retry" if self.retry else "plain"

    def label(self) -> str:
        c = self
        return f"{c.shape}/{c.broker}/{c.ack}/{c.variant}/{c.pool}/c{c.concurrency}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_label(label: str) -> CanvasConfig:
    """The config of ``CanvasConfig.label()``."""
    parts = label.split("/")
    if len(parts) != 6 or parts[0] not in SHAPES or not parts[5].startswith("c"):
        raise ValueError(
            f"a canvas config reads '<chord|chain|group|custom>/<broker>/<early|late|"
            f"late+requeue>/<variant>/<pool>/c<n>', got {label!r}"
        )
    shape, broker, ack, variant, pool, c = parts
    if ack not in ("early", "late", "late+requeue"):
        raise ValueError(f"unknown ack setting {ack!r}")
    if shape != "custom" and variant not in VARIANTS[shape]:
        raise ValueError(
            f"unknown {shape} variant {variant!r}: choose {' or '.join(VARIANTS[shape])}"
        )
    return CanvasConfig(
        broker, pool, int(c[1:]), acks_late=ack != "early",  # type: ignore[arg-type]
        reject_on_worker_lost=ack == "late+requeue",
        join=variant if shape == "chord" else "zset",  # type: ignore[arg-type]
        shape=shape, retry=variant == "retry",  # type: ignore[arg-type]
        plugin=variant if shape == "custom" else None,
    )  # fmt: skip
