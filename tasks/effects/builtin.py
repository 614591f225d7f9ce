"""The built-in effects by name, and resolution of an effect spec (built-in or plug-in)."""

from __future__ import annotations

from examples.effects import check_then_insert, insert_always, insert_on_conflict, upsert
from tasks.effects import MakeEffect
from tasks.plugins import load_plugin

# The example effects (examples/effects/), each module's docstring says SOUND or BROKEN.
BUILTIN_EFFECTS: dict[str, MakeEffect] = {
    "insert-always": insert_always.make_effect,
    "check-then-insert": check_then_insert.make_effect,
    "insert-on-conflict": insert_on_conflict.make_effect,
    "upsert": upsert.make_effect,
}


def load_effect(spec: str) -> MakeEffect:
    """The effect factory named by ``spec``: a built-in name or ``pkg.mod:attr``.

    Raises ValueError with a one-line message that says what to fix.
    """
    return load_plugin(
        spec, BUILTIN_EFFECTS, kind="effect", factory="make_effect", returns="effect(order_id)"
    )
