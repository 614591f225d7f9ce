"""Known attack patterns, tried on every config after the random search.

Random interleavings find shallow races quickly; some classic lock bugs are deep (the
cookbook's release race needs a lease to run out in the few instructions between a
holder's clock check and its delete, then two more tasks in the right order). Like a
fuzzer's dictionary, these scripts describe *shapes* of schedule, not results: each
one runs on the real workers and is judged by the same invariants, so a sound lock
passes them all. They are generic — no lock's commands are named — and a move a
property does not allow makes the attack inapplicable there.

Script items, separated by ``;``: any move (``submit``, ``step t1``, ``kill t1``,
``expire``...) or ``run tN to COND``, which steps tN until it is parked at COND:

    acquiring+K   the K-th scheduling point inside its acquire call (before that
                  command runs); a lock with fewer commands stops once it decided
    acquired      inside the critical section
    releasing     inside its release call, at the release's first command
    releasing+K   the K-th scheduling point inside its release call (before that
                  command runs): a release of several commands (GET, compare, DEL)
                  can lose its lease between them; one with fewer stops once done
    point NAME    a point whose name starts with NAME
    done          ended
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from harness.controller import Controller, Execution
from harness.runs.lock import LockRun, LockRunner
from properties.schedule import simplest

ORDER = {
    "start": 0, "acquiring": 1, "holding": 2, "refused": 2, "releasing": 3, "released": 4,
}  # fmt: skip

INSERT = "sql INSERT suite_invoice"

ATTACKS: dict[str, list[tuple[str, str]]] = {
    "mutual-exclusion": [
        ("two holders", "submit; run t1 to acquired; submit; run t2 to acquired"),
        (
            "check-then-set acquire interleaved",
            "submit; submit; run t1 to acquiring+2; run t2 to acquired; run t1 to acquired",
        ),
    ],
    "lease-mutual-exclusion": [
        (
            "release after the lease ran out deletes the next holder's entry",
            "submit; run t1 to releasing; expire; submit; run t2 to acquired;"
            " run t1 to done; submit; run t3 to acquired",
        ),
        *(
            (
                f"release after the lease ran out deletes the next holder's entry (+{k})",
                f"submit; run t1 to releasing+{k}; expire; submit; run t2 to acquired;"
                " run t1 to done; submit; run t3 to acquired",
            )
            for k in (2, 3)
        ),
        *(
            (
                f"two writers over an expired entry (+{k})",
                "submit; run t1 to acquired; expire; run t1 to done; submit; submit;"
                f" run t2 to acquiring+{k}; run t3 to acquired; run t2 to acquired",
            )
            for k in (2, 3)
        ),
    ],
    "exactly-one-invoice": [
        (
            "both check before either inserts",
            f"submit; submit; run t1 to point {INSERT}; run t2 to point {INSERT};"
            " run t1 to done; run t2 to done",
        ),
    ],
    "invoice-under-expiry": [
        (
            "holder outlives its lease",
            f"submit; run t1 to point {INSERT}; expire; submit; run t2 to done; run t1 to done",
        ),
        (
            "paused holder outlives its lease",
            f"submit; run t1 to point {INSERT}; pause t1; expire; submit; run t2 to done;"
            " resume t1; run t1 to done",
        ),
    ],
    "no-orphaned-lock": [
        (
            f"holder killed before its acquire command {k}",
            f"submit; run t1 to acquiring+{k}; kill t1; expire; submit; run t2 to done",
        )
        for k in (2, 3)
    ]
    + [
        (
            "holder killed inside the critical section",
            "submit; run t1 to acquired; kill t1; expire; submit; run t2 to done",
        )
    ],
}
# Two holders at once break every lease too.
ATTACKS["lease-mutual-exclusion"] += ATTACKS["mutual-exclusion"]

_RUN = re.compile(r"run (t\d+) to (.+)")


class NotApplicable(Exception):
    """The attack needs a move this property or config does not offer."""


def _reached(ex: Execution, cond: str) -> bool:
    """Whether tN should stop stepping: it is at COND, or already past it."""
    if ex.state != "parked":
        return True
    rank = ORDER[ex.phase]
    if cond.startswith("acquiring+"):
        k = int(cond.removeprefix("acquiring+"))
        return rank > ORDER["acquiring"] or (ex.phase == "acquiring" and ex.acquiring_points >= k)
    if cond == "acquired":
        return rank >= ORDER["holding"]
    if cond.startswith("releasing+"):
        k = int(cond.removeprefix("releasing+"))
        return rank > ORDER["releasing"] or (ex.phase == "releasing" and ex.releasing_points >= k)
    if cond == "releasing":
        return rank >= ORDER["releasing"]
    if cond.startswith("point "):
        return ex.point.startswith(cond.removeprefix("point "))
    if cond == "done":
        return False
    raise ValueError(f"unknown condition {cond!r} in an attack script")


def chooser(script: str, ctl: Controller) -> Callable[[list[str]], str]:
    """A chooser that plays ``script``, then runs the rest to the end in order."""
    items = [s.strip() for s in script.split(";") if s.strip()]

    def choose(enabled: list[str]) -> str:
        while items:
            item = items[0]
            m = _RUN.fullmatch(item)
            if m is None:
                items.pop(0)
                if item not in enabled:
                    raise NotApplicable(f"{item!r} is not enabled (enabled: {enabled})")
                return item
            x, cond = m.groups()
            ex = ctl.executions.get(x)
            if ex is None:
                raise NotApplicable(f"{x} has not started")
            if _reached(ex, cond) or f"step {x}" not in enabled:
                items.pop(0)
                continue
            return f"step {x}"
        return simplest(enabled)

    return choose


def play(runner: LockRunner, prop: str) -> Iterator[tuple[str, LockRun]]:
    """Run each attack of ``prop`` that applies; yield its name and what happened."""
    for name, script in ATTACKS.get(prop, []):
        try:
            run = runner.run(script.count("submit"), chooser(script, runner.cluster.controller))
        except NotApplicable:
            continue
        yield name, run
