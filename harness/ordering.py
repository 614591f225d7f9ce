"""Canonical order: what the history lists in a fixed order although it arrives in a
racy one (several processes report over several connections).

Executions sort by task number, then attempt (``natural``); process names by slot
number, a main process by its primes (``name_order``). The controller uses these at
each quiescent point to append what was deferred, and to hand attempt numbers and
first-use process names out again, so the same scenario gives the same history."""

from __future__ import annotations

import re

from model import history as h


def natural(x: str) -> tuple[int, int]:
    """Execution order: t2 < t10; t1 < t1#2."""
    m = re.fullmatch(r"t(\d+)(?:#(\d+))?", x)
    return (int(m.group(1)), int(m.group(2) or 1)) if m else (10**9, 0)


def name_order(name: str) -> tuple[int, str]:
    """w2.c3 before w2.c10; a main process's primes count."""
    head, _, n = name.rpartition(".c")
    return (int(n) if n.isdigit() else name.count("'"), head)


def receipts(events: list[h.Received]) -> list[h.Received]:
    """Receipts by task, retry level, redelivered flag and worker."""
    return sorted(events, key=lambda e: (natural(e.task), e.level, e.redelivered, e.worker))


def by_task(events: list[h.Event]) -> list[h.Event]:
    """Broker and backend reports grouped by task name, each task's in arrival order
    (they are causally ordered)."""
    order = {t: i for i, t in enumerate(sorted({getattr(e, "task", "") for e in events}))}
    return sorted(events, key=lambda e: order[getattr(e, "task", "")])


def renumbered(starts: list[h.Started]) -> tuple[list[h.Started], dict[str, str]]:
    """The starts in canonical order (task, retry level, redelivered flag; arrival
    order only among equals, which are interchangeable), and the execution id each
    gets: a task's attempt numbers handed out again in that order."""
    order = {e.execution: i for i, e in enumerate(starts)}
    ranked = sorted(
        starts, key=lambda e: (natural(e.task), e.level, e.redelivered, order[e.execution])
    )
    numbers: dict[str, list[int]] = {}
    for e in starts:
        numbers.setdefault(e.task, []).append(natural(e.execution)[1])
    for nums in numbers.values():
        nums.sort(reverse=True)
    renamed: dict[str, str] = {}
    for e in ranked:
        n = numbers[e.task].pop()
        renamed[e.execution] = e.task if n == 1 else f"{e.task}#{n}"
    return ranked, renamed
