"""Process names: the one grammar every model reads.

A history names processes by role, not pid: ``w1`` the first worker's main process,
``w1.c2`` its prefork child in slot 2 (slots numbered in order of first use), a
trailing ``'`` per respawn (``w1.c2'`` replaced ``w1.c2``; ``w2'`` is a restarted
``w2``), ``app`` the application that sends the tasks. A name is one incarnation: a
replacement always gets a new name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

APP = "app"

Role = Literal["app", "main", "child"]

_NAME_RE = re.compile(r"(w\d+)(?:\.c(\d+))?('*)")


@dataclass(frozen=True)
class ProcessName:
    """``w1.c2'`` read as worker ``w1``, slot 2, one prime."""

    worker: str
    slot: int | None  # None: the main process
    primes: int  # respawns before this incarnation


def parse(process: str) -> ProcessName:
    """Read a worker process's name; a ValueError names the grammar."""
    m = _NAME_RE.fullmatch(process)
    if m is None:
        raise ValueError(
            f"unknown process name {process!r}: expected 'app', 'w1' (main worker process) "
            "or 'w1.c2' (prefork child), with a trailing ' per respawn"
        )
    return ProcessName(m[1], None if m[2] is None else int(m[2]), len(m[3]))


def role_of(process: str) -> Role:
    """``app`` -> app, ``w1`` / ``w1'`` -> main, ``w1.c2`` / ``w1.c2'`` -> child."""
    if process == APP:
        return "app"
    return "main" if parse(process).slot is None else "child"


# The lenient readers below take any string (a plug-in's or a test's own names): they
# split on the grammar's separators without checking the rest of it.


def worker_of(process: str) -> str:
    """``w1.c2'`` -> ``w1``: the worker a process belongs to."""
    return process.split(".", 1)[0].rstrip("'")


def is_child(process: str) -> bool:
    """Whether ``process`` names a pool child (``w1.c2``), not a main process."""
    return ".c" in process


def unprimed(process: str) -> str:
    """``w1.c2''`` -> ``w1.c2``: the name of the first incarnation."""
    return process.rstrip("'")
