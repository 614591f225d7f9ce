"""Resolving a plug-in spec: a built-in name or a ``pkg.mod:attr`` path.

Shared by the lock loader (``tasks.locks.builtin.load_lock``) and the effect loader
(``tasks.effects.builtin.load_effect``); only the words in the messages differ. Every
failure is a ValueError with a one-line message that says what to fix, because the
suite shows it to someone who typed the spec on a command line.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Builtins(Mapping[str, T]):
    """Built-in plug-ins by name, each named by its ``pkg.mod:attr`` path and imported
    when first looked up, so the package that lists them need not import them (the
    example effects live in ``examples/``, which imports ``tasks``)."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self.paths = dict(paths)

    def __getitem__(self, name: str) -> T:
        module_name, _, attr_path = self.paths[name].partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            target = getattr(target, part)
        loaded: T = target
        return loaded

    def __contains__(self, name: object) -> bool:
        return name in self.paths

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def load_plugin(
    spec: str, builtins: Mapping[str, T], *, kind: str, factory: str, returns: str
) -> T:
    """``builtins[spec]``, or the attribute ``spec`` names as ``pkg.mod:attr``.

    ``kind`` names what is loaded ("lock"), ``factory`` the conventional attribute
    ("make_lock") and ``returns`` what the factory returns ("lock(key, ttl)"); they only
    word the messages. ``attr`` may be dotted (``pkg.mod:Class.make_lock``). Only
    callability is checked: what the factory returns is checked when it is called.
    """
    if spec in builtins:
        return builtins[spec]
    known = ", ".join(sorted(builtins))
    module_name, colon, attr_path = spec.partition(":")
    if not colon:
        raise ValueError(
            f"unknown {kind} {spec!r}: use a built-in ({known}) or a plug-in path "
            f"'pkg.mod:{factory}'"
        )
    if not module_name or not attr_path:
        raise ValueError(f"malformed plug-in {kind} {spec!r}: write it as 'pkg.mod:{factory}'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            top = module_name.split(".")[0]
            raise ValueError(
                f"plug-in {kind} {spec!r}: module {module_name!r} is not importable; check "
                f"the spelling and put the directory containing {top!r} on PYTHONPATH "
                "(the suite and its workers both import it)"
            ) from exc
        raise ValueError(
            f"plug-in {kind} {spec!r}: importing {module_name!r} failed because it needs "
            f"{missing!r}, which is not installed"
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"plug-in {kind} {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(
                f"plug-in {kind} {spec!r}: {module_name!r} has no attribute {attr_path!r}; "
                f"define 'def {factory}(resources)' there or fix the name after the colon"
            ) from None
    if not callable(target):
        raise ValueError(
            f"plug-in {kind} {spec!r}: {attr_path!r} is a {type(target).__name__}, not "
            f"callable; point to a function {factory}(resources) returning {returns}"
        )
    loaded: T = target
    return loaded
