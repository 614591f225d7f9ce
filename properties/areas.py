"""The registry of areas: every table over areas (pytest's matrix, replay, the
findings) reads this one list. A new area adds its line here."""

from __future__ import annotations

from typing import Any

from properties import beat, canvas, delivery, eager, locks, publish, routing, state
from properties.engine import Area
from properties.scenario import Line

AREAS: dict[str, Area[Any]] = {
    a.name: a
    for a in (
        locks.AREA,
        delivery.AREA,
        state.AREA,
        eager.AREA,
        publish.AREA,
        beat.AREA,
        canvas.AREA,
        routing.AREA,
    )
}


def of_line(scenario: Line[Any]) -> Area[Any]:
    """The area a scenario line belongs to: the one whose config it carries."""
    return next(a for a in AREAS.values() if isinstance(scenario.config, a.config_type))
