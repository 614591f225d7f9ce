"""Self-tests of detection power: the shipped plug-in locks and canvases, checked like
a user's.

Each broken example must be caught (by the property its docstring names) and each
sound one must pass every property ``check-lock`` (``check-canvas``) fails on. If a
broken one slips through, the suite has lost the power to find that bug.
"""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from model.canvas_config import CanvasConfig
from model.config import LockConfig
from properties.canvas import AREA as CANVAS
from properties.engine import search
from properties.findings import Findings
from properties.locks import AREA

BROKEN = {
    "examples.locks.cookbook_locmem:make_lock": "mutual-exclusion",
    "examples.locks.memcached_get_set:make_lock": "mutual-exclusion",
    "examples.locks.redis_setnx_expire:make_lock": "no-orphaned-lock",
}
SOUND = [
    "examples.locks.redis_set_nx_px:make_lock",
    "examples.locks.redis_py_lock:make_lock",
    "examples.locks.memcached_add_cas:make_lock",
]
CHECKED = ["mutual-exclusion", "lease-mutual-exclusion", "exactly-one-invoice", "no-orphaned-lock"]


@pytest.mark.parametrize("lock", sorted(BROKEN))
def test_broken_lock_is_caught(lock: str, cluster: Cluster, report: Findings) -> None:
    outcome = search(AREA, cluster, LockConfig(lock, "prefork", 2), BROKEN[lock])
    report.add(outcome)
    assert outcome.verdict == "violated" and not outcome.passed, (
        f"{lock} is broken but {BROKEN[lock]} {outcome.verdict} in {outcome.examples} examples"
        + (f": {outcome.error}" if outcome.error else "")
    )


@pytest.mark.parametrize("prop", CHECKED)
@pytest.mark.parametrize("lock", SOUND)
def test_sound_lock_passes(lock: str, prop: str, cluster: Cluster, report: Findings) -> None:
    outcome = search(AREA, cluster, LockConfig(lock, "prefork", 2), prop)
    report.add(outcome)
    assert outcome.passed, (
        f"{lock} should pass {prop}: {outcome.verdict} ({outcome.reason})\n{outcome.detail()}"
    )


# Plug-in canvases (examples/canvas/), on RabbitMQ with acks_late (check-canvas runs
# them on Redis too): a kill-main redelivers at once there, so the broken one falls to
# an attack shape, unshrunk, in a third of the time the Redis search and shrink take.
BROKEN_CANVASES = {"examples.canvas.ship_twice:make_canvas": "effects-once"}
SOUND_CANVASES = ["examples.canvas.charge_then_ship:make_canvas"]


def _canvas(spec: str) -> CanvasConfig:
    return CanvasConfig("amqp", "prefork", 2, True, shape="custom", plugin=spec)


@pytest.mark.parametrize("canvas", sorted(BROKEN_CANVASES))
def test_broken_canvas_is_caught(canvas: str, cluster: Cluster, report: Findings) -> None:
    outcome = search(CANVAS, cluster, _canvas(canvas), BROKEN_CANVASES[canvas])
    report.add(outcome)
    assert outcome.verdict == "violated" and not outcome.passed, (
        f"{canvas} is broken but {BROKEN_CANVASES[canvas]} {outcome.verdict} in "
        f"{outcome.examples} examples" + (f": {outcome.error}" if outcome.error else "")
    )


@pytest.mark.parametrize("canvas", SOUND_CANVASES)
def test_sound_canvas_passes(canvas: str, cluster: Cluster, report: Findings) -> None:
    outcome = search(CANVAS, cluster, _canvas(canvas), "effects-once")
    report.add(outcome)
    assert outcome.passed, (
        f"{canvas} should pass effects-once: {outcome.verdict} ({outcome.reason})\n"
        f"{outcome.detail()}"
    )
