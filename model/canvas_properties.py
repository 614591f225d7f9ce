"""Canvas properties: each shape's invariants and what the model predicts per config.

A chord's (model/canvas.py) and a chain's or a group's (model/canvas_steps.py), in one
registry: the moves each property's scenarios may contain, its description, its
invariant, its prediction, and the replay every run is checked against first (a
difference is a *model mismatch*).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model import history as h
from model.canvas import CHORD_PROPERTIES, CHORD_VIOLATIONS, CanvasMove, check_join, chord_rule
from model.canvas_config import CanvasConfig, Shape
from model.canvas_steps import STEPS_VIOLATIONS, check_steps, steps_rule
from model.canvas_unlock import check_unlock, unlock_rule
from model.invariants import Violation
from model.verdict import Mismatch, Prediction

# A warm shutdown (term) is not drawn: a step published while its worker drains was
# not delivered to the standby in the first runs (the draining worker's pending
# BRPOP on Redis?), an open harness question, docs/findings/canvas.md.
_FAULTS: frozenset[CanvasMove] = frozenset({"kill", "vt"})

# property -> (the shape it is about, the moves of its scenarios, what it says)
PROPERTIES: dict[str, tuple[Shape, frozenset[CanvasMove], str]] = {
    **{p: ("chord", moves, text) for p, (moves, text) in CHORD_PROPERTIES.items()},
    "chain-order": (
        "chain", _FAULTS,
        "a chain step runs only after its predecessor returned, with its result, and "
        "never next to a predecessor that did not end SUCCESS",
    ),
    "chain-once": ("chain", _FAULTS, "no chain step runs to completion twice"),
    "chain-complete": (
        "chain", _FAULTS,
        "the chain's result ends SUCCESS or FAILURE: a waiter on it does not wait forever",
    ),
    "group-once": ("group", _FAULTS, "no member of a group runs to completion twice"),
    "group-complete": (
        "group", _FAULTS, "every member ends SUCCESS or FAILURE: the GroupResult becomes ready"
    ),
    "effects-once": (
        "custom", _FAULTS,
        "each effect of a plug-in canvas happens at most once: no invoice key has two rows",
    ),
}  # fmt: skip

VIOLATIONS: dict[str, Callable[[Sequence[h.Event]], list[Violation]]] = {
    **CHORD_VIOLATIONS,
    **STEPS_VIOLATIONS,
}


def moves(prop: str) -> frozenset[CanvasMove]:
    return PROPERTIES[prop][1]


def properties_of(shape: Shape) -> list[str]:
    return [p for p, (s, _, _) in PROPERTIES.items() if s == shape]


def rule(config: CanvasConfig, prop: str) -> tuple[Prediction, str]:
    """Does some scenario with the property's moves break it on ``config``, and why."""
    shape = PROPERTIES[prop][0]
    if shape != config.shape:
        raise KeyError(f"{prop} is a {shape}'s property, not a {config.shape}'s")
    if shape == "custom":
        return "unknown", "a plug-in canvas: the suite has no model of it, so it must hold"
    if config.join == "db":
        return unlock_rule(config, prop)
    return chord_rule(config, prop) if shape == "chord" else steps_rule(config, prop)


def check(config: CanvasConfig, events: Sequence[h.Event]) -> list[Mismatch]:
    """The run against the shape's replay: a chord's join, a chain's or a group's
    messages (the delivery model's, which name the task)."""
    if config.shape == "chord" and config.join == "db":
        return check_unlock(config, events)
    if config.shape == "chord":
        return check_join(config, events)
    if config.shape == "custom":
        return []  # no model of a plug-in: only its invariant
    return [
        Mismatch(m.index, f"{m.task}: {m.expected}", m.observed, m.why)
        for m in check_steps(config, events)
    ]
