"""The plug-ins this process has made: one lock or effect function per spec.

Each is made on first use from the process's one ``Resources`` and kept, as the
plug-in contracts say (tasks/locks/__init__.py, tasks/effects/__init__.py).
"""

from __future__ import annotations

from typing import Any

_locks: dict[str, Any] = {}
_effects: dict[str, Any] = {}
_resources: Any = None


def _shared() -> Any:
    global _resources
    if _resources is None:
        from tasks.resources import Resources

        _resources = Resources()
    return _resources


def resources() -> Any:
    """The process's one ``Resources`` (a plug-in canvas's factory gets it)."""
    return _shared()


def lock(spec: str) -> Any:
    """The lock function for ``spec``."""
    if spec not in _locks:
        from tasks.locks.builtin import load_lock

        resources = _shared()
        _locks[spec] = load_lock(spec)(resources)
    return _locks[spec]


def effect(spec: str) -> Any:
    """The effect function for ``spec``."""
    if spec not in _effects:
        from tasks.effects.builtin import load_effect

        resources = _shared()
        _effects[spec] = load_effect(spec)(resources)
    return _effects[spec]


def end_db_transaction() -> None:
    """End this thread's open database transaction, if resources were ever made."""
    if _resources is not None:
        _resources.end_db_transaction()
