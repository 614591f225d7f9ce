"""Which configs a run covers.

``full`` is every built-in lock on every pool and concurrency the issue names; ``ci``
keeps every lock and property but fewer pool shapes so ``nox -s tests`` stays bounded;
a plug-in lock runs on the two shapes that expose the classic races (several
processes, several threads).
"""

from __future__ import annotations

from model.config import BUILTIN_LOCKS, LockConfig, Pool

SHAPES_FULL: list[tuple[Pool, int]] = [
    *(("prefork", c) for c in (1, 2, 3, 4)),
    *(("threads", c) for c in (1, 2, 3, 4)),
    ("solo", 1),
]
SHAPES_PLUGIN: list[tuple[Pool, int]] = [("prefork", 2), ("threads", 2)]

MATRICES = ("full", "ci")


def builtin_configs(matrix: str) -> list[LockConfig]:
    if matrix not in MATRICES:
        raise ValueError(f"unknown matrix {matrix!r}: choose one of {', '.join(MATRICES)}")
    if matrix == "full":
        return [LockConfig(lock, pool, c) for lock in BUILTIN_LOCKS for pool, c in SHAPES_FULL]
    # ci: every lock where the races live (two prefork children), and the LocMemCache
    # lock also where it is safe from the per-process trap (threads share one
    # process), so the bounded run shows both sides of it. Concurrency 1 and solo,
    # safe for every lock, are left to the full matrix.
    configs = [LockConfig(lock, "prefork", 2) for lock in BUILTIN_LOCKS]
    return [*configs, LockConfig("cookbook-locmem", "threads", 2)]


def plugin_configs(lock: str) -> list[LockConfig]:
    return [LockConfig(lock, pool, c) for pool, c in SHAPES_PLUGIN]
