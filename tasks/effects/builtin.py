"""The built-in effects by name, and resolution of an effect spec (built-in or plug-in)."""

from __future__ import annotations

from tasks.effects import MakeEffect
from tasks.plugins import Builtins, load_plugin

# The example effects (examples/effects/), each module's docstring says SOUND or BROKEN;
# imported on first use: examples/ imports tasks/, not the other way round.
BUILTIN_EFFECTS: Builtins[MakeEffect] = Builtins(
    {
        "insert-always": "examples.effects.insert_always:make_effect",
        "check-then-insert": "examples.effects.check_then_insert:make_effect",
        "insert-on-conflict": "examples.effects.insert_on_conflict:make_effect",
        "upsert": "examples.effects.upsert:make_effect",
    }
)


def load_effect(spec: str) -> MakeEffect:
    """The effect factory named by ``spec``: a built-in name or ``pkg.mod:attr``.

    Raises ValueError with a one-line message that says what to fix.
    """
    return load_plugin(
        spec, BUILTIN_EFFECTS, kind="effect", factory="make_effect", returns="effect(order_id)"
    )
