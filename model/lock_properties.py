"""Lock properties: the catalogue and what the model predicts for each lock configuration.

A prediction is about *existence*: "violated" means some scenario allowed by the
property's moves breaks the invariant on that config (the suite must find and shrink
one and report it as a finding); "holds" means no scenario may (a violation is a test
failure); "unknown" means the model has nothing to say (plug-in locks: the suite
reports what it finds).

Assumption behind every "holds when concurrency == 1": one worker serves the config
(model/config.py LockConfig), so concurrency 1 — and the solo pool, which config.py
forces to concurrency 1 — runs one execution at a time; no two can be inside the
critical section together, whatever the lock does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from model.config import LockConfig, LockSemantics
from model.history import Event
from model.invariants import CHECKERS, Violation
from model.libraries import LIBRARIES
from model.verdict import Prediction

Move = Literal["kill", "pause", "expire"]
MOVES: tuple[Move, ...] = ("kill", "pause", "expire")


@dataclass(frozen=True)
class PropertySpec:
    name: str
    invariant: str  # a key of model.invariants.CHECKERS
    moves: frozenset[Move]  # fault moves its scenarios may contain besides submit/release
    statement: str

    def check(self, events: Sequence[Event]) -> list[Violation]:
        return CHECKERS[self.invariant](events)


def _spec(name: str, invariant: str, moves: set[Move], statement: str) -> PropertySpec:
    return PropertySpec(name, invariant, frozenset(moves), statement)


PROPERTIES: dict[str, PropertySpec] = {
    p.name: p
    for p in (
        _spec(
            "mutual-exclusion",
            "mutual_exclusion",
            {"kill"},
            "two executions are never inside the critical section at once, "
            "even when a worker process is killed",
        ),
        _spec(
            "lease-mutual-exclusion",
            "mutual_exclusion",
            {"kill", "pause", "expire"},
            "two executions never hold unexpired leases inside the critical section at "
            "once, even when holders are killed, paused and outlive their lease",
        ),
        _spec(
            "exactly-one-invoice",
            "exactly_one_invoice",
            set(),
            "concurrent runs of the invoice task for one order create exactly one invoice",
        ),
        _spec(
            "invoice-under-expiry",
            "exactly_one_invoice",
            {"pause", "expire"},
            "exactly one invoice even when a holder is paused past its lease; "
            "no lock without a fencing token can promise it",
        ),
        _spec(
            "no-orphaned-lock",
            "no_orphaned_lock",
            {"kill", "expire"},
            "a lock whose holder was killed becomes free again once its lease expires",
        ),
    )
}


def _spec_of(prop: str) -> PropertySpec:
    try:
        return PROPERTIES[prop]
    except KeyError:
        known = ", ".join(PROPERTIES)
        raise KeyError(f"unknown property {prop!r}: choose one of {known}") from None


def _per_process(config: LockConfig, sem: LockSemantics) -> bool:
    # Each prefork child has its own LocMemCache (django/core/cache/backends/locmem.py
    # ``_caches`` is a module global; celery-semantics.md §6: children do not share
    # module state), so two children both "acquire". The threads pool shares one
    # process and LocMemCache.add holds its per-process lock: atomic there.
    return sem.scope == "process" and config.pool == "prefork" and config.concurrency >= 2


def _rule(config: LockConfig, prop: str) -> tuple[Prediction, str]:
    _spec_of(prop)
    sem = config.semantics
    if config.concurrency == 1 and (sem is not None or config.lock in LIBRARIES):
        return "holds", (
            f"{config.pool} with concurrency 1 runs one execution at a time: nothing can overlap"
        )
    if config.lock in LIBRARIES:
        # A library kind: predicted from its source (model/libraries.py). Its adapter
        # path given as a plug-in (check-lock) is judged as any user's lock is.
        return LIBRARIES[config.lock].predictions[prop]
    if sem is None:
        return "unknown", "a plug-in lock: the model predicts nothing, only the runs tell"
    if prop in ("mutual-exclusion", "exactly-one-invoice"):
        if _per_process(config, sem):
            return "violated", (
                f"{sem.backend} is private to each prefork child: two children each take "
                "the lock" + (" and both create an invoice" if prop != "mutual-exclusion" else "")
            )
        if prop == "mutual-exclusion":
            # Without expiry a lease lasts until its holder releases it; a kill leaves
            # the entry (server) or takes the process's whole LocMemCache with it.
            return "holds", (
                f"{sem.backend}'s add is atomic in its scope and, without expiry, a lease "
                "ends only at its holder's release"
            )
        return "holds", (
            "with no kill, pause or expiry the lock is plain mutual exclusion, and the "
            "critical section checks for an existing invoice"
        )
    if prop == "lease-mutual-exclusion":
        if sem.release == "unchecked-delete":
            # task-cookbook.rst: clock check, then cache.delete with no ownership check.
            # A passes the check, parks before the delete, its lease expires, B acquires,
            # A deletes B's entry, C acquires: B and C overlap with unexpired leases.
            extra = ""
            if sem.database == "postgres":
                extra = (
                    "; also two adds racing over an expired row both UPDATE it, and an add "
                    "whose expired row another release deleted returns True storing nothing"
                )
            elif _per_process(config, sem):
                extra = "; and prefork children do not even share the lock"
            return "violated", (
                "the cookbook's release deletes whoever holds the key: a holder paused "
                f"between its clock check and the delete removes the next holder's lease{extra}"
            )
        return "holds", (
            "SET NX PX plus a token-checked Lua delete: a lost lease raises LockNotOwnedError "
            "instead of deleting the next holder's key (redis/lock.py)"
        )
    if prop == "invoice-under-expiry":
        # Kleppmann 2016: a paused holder outlives its lease, another acquires, both
        # write; only a fencing token checked by the invoice store prevents it.
        return "violated", (
            "A checks for an invoice, pauses past its lease, B acquires and checks too, "
            "both insert: no built-in lock has a fencing token"
        )
    # no-orphaned-lock
    if sem.scope == "process":
        return "holds", (
            "the kill takes the process's LocMemCache with it, and entries elsewhere "
            "carry their timeout"
        )
    return "holds", (
        f"{sem.backend} stores the TTL in the same command or statement as the entry, "
        "so an orphaned entry goes at its expiry"
    )


def expected(config: LockConfig, prop: str) -> Prediction:
    """What the model predicts for ``prop`` on ``config``.

    Built-in locks, concurrency >= 2 (concurrency 1: everything holds, module docstring):

    - mutual-exclusion: violated iff the lock state is per process and the pool is
      prefork (each child its own LocMemCache); every other built-in takes the lock
      atomically in its scope and, without expiry, no lease ends but by release.
    - lease-mutual-exclusion: violated for every unchecked-delete (cookbook) lock —
      the paused-before-delete race; holds for the token-checked redis-py Lock.
    - exactly-one-invoice: violated iff mutual-exclusion is (no faults: the critical
      section's check-then-create is safe exactly when the section is exclusive).
    - invoice-under-expiry: violated — a holder outlives its lease and a second one
      enters; nothing fences the stale holder's insert.
    - no-orphaned-lock: holds — every built-in sets the TTL with the entry, and a
      LocMemCache dies with its process.
    """
    return _rule(config, prop)[0]


def why(config: LockConfig, prop: str) -> str:
    """The one-line reason for ``expected(config, prop)``, for the findings report."""
    return _rule(config, prop)[1]


def eager_rule() -> tuple[Prediction, str]:
    """Any lock under ``task_always_eager``: each task runs inline to its end before the
    next is sent, so no two ever hold it at once."""
    return "holds", (
        "task_always_eager: each task runs inline to its end before the next is sent "
        "(celery/app/task.py apply), so no two ever hold the lock at once, whatever "
        "the lock"
    )
