"""The property catalogue and the model's predictions (model/lock_properties.py)."""

from __future__ import annotations

import itertools

import pytest

from model.config import BUILTIN_LOCKS, PLAIN_POOLS, LockConfig
from model.history import (
    AcquireBegin,
    AcquireEnd,
    Event,
    InvoiceCount,
    InvoiceCreated,
    Started,
)
from model.invariants import CHECKERS
from model.lock_properties import MOVES, PROPERTIES, expected, why

PLUGIN = "examples.locks.broken:make_lock"


def all_configs(locks: list[str]) -> list[LockConfig]:
    out = []
    for lock, pool, c in itertools.product(locks, PLAIN_POOLS, range(1, 5)):
        if pool == "solo" and c != 1:
            continue
        out.append(LockConfig(lock, pool, c))
    return out


BUILTINS = all_configs(sorted(BUILTIN_LOCKS))


def test_property_names_are_fixed() -> None:
    assert list(PROPERTIES) == [
        "mutual-exclusion",
        "lease-mutual-exclusion",
        "exactly-one-invoice",
        "invoice-under-expiry",
        "no-orphaned-lock",
    ]


def test_catalogue_moves_and_checkers() -> None:
    moves = {name: set(p.moves) for name, p in PROPERTIES.items()}
    assert moves == {
        "mutual-exclusion": {"kill"},
        "lease-mutual-exclusion": {"kill", "pause", "expire"},
        "exactly-one-invoice": set(),
        "invoice-under-expiry": {"pause", "expire"},
        "no-orphaned-lock": {"kill", "expire"},
    }
    for name, spec in PROPERTIES.items():
        assert spec.name == name
        assert spec.invariant in CHECKERS
        assert set(spec.moves) <= set(MOVES)
        assert spec.statement and "\n" not in spec.statement
    assert PROPERTIES["mutual-exclusion"].invariant == "mutual_exclusion"
    assert PROPERTIES["lease-mutual-exclusion"].invariant == "mutual_exclusion"
    assert PROPERTIES["invoice-under-expiry"].invariant == "exactly_one_invoice"


def test_spec_check_runs_its_invariant() -> None:
    two: list[Event] = [
        InvoiceCreated("t1", "o1"),
        InvoiceCreated("t2", "o1"),
        InvoiceCount("o1", 2),
    ]
    assert [v.invariant for v in PROPERTIES["exactly-one-invoice"].check(two)] == [
        "exactly_one_invoice"
    ]
    overlap: list[Event] = [
        Started("t1", "t1", "w1.c1"),
        Started("t2", "t2", "w1.c2"),
        AcquireBegin("t1", "k"),
        AcquireEnd("t1", "k", True),
        AcquireBegin("t2", "k"),
        AcquireEnd("t2", "k", True),
    ]
    assert len(PROPERTIES["mutual-exclusion"].check(overlap)) == 1
    assert PROPERTIES["no-orphaned-lock"].check(overlap) == []


# --- spot checks of the table ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lock", "pool", "c", "prop", "want"),
    [
        # LocMemCache: a private dict per prefork child
        ("cookbook-locmem", "prefork", 2, "mutual-exclusion", "violated"),
        ("cookbook-locmem", "prefork", 4, "exactly-one-invoice", "violated"),
        ("cookbook-locmem", "prefork", 1, "mutual-exclusion", "holds"),
        ("cookbook-locmem", "threads", 4, "mutual-exclusion", "holds"),
        ("cookbook-locmem", "threads", 4, "exactly-one-invoice", "holds"),
        ("cookbook-locmem", "solo", 1, "exactly-one-invoice", "holds"),
        ("cookbook-locmem", "threads", 2, "lease-mutual-exclusion", "violated"),
        ("cookbook-locmem", "prefork", 2, "no-orphaned-lock", "holds"),
        # server-side cookbook locks
        ("cookbook-redis", "prefork", 4, "mutual-exclusion", "holds"),
        ("cookbook-redis", "prefork", 4, "exactly-one-invoice", "holds"),
        ("cookbook-redis", "prefork", 2, "lease-mutual-exclusion", "violated"),
        ("cookbook-memcached", "threads", 3, "lease-mutual-exclusion", "violated"),
        ("cookbook-db-sqlite", "prefork", 2, "lease-mutual-exclusion", "violated"),
        ("cookbook-db-postgres", "threads", 2, "lease-mutual-exclusion", "violated"),
        ("cookbook-db-postgres", "prefork", 2, "mutual-exclusion", "holds"),
        ("cookbook-redis", "prefork", 1, "lease-mutual-exclusion", "holds"),
        ("cookbook-memcached", "solo", 1, "invoice-under-expiry", "holds"),
        ("cookbook-db-sqlite", "threads", 2, "no-orphaned-lock", "holds"),
        # redis-py's token-checked Lock
        ("redis-py-lock", "prefork", 4, "lease-mutual-exclusion", "holds"),
        ("redis-py-lock", "prefork", 4, "mutual-exclusion", "holds"),
        ("redis-py-lock", "threads", 2, "invoice-under-expiry", "violated"),
        ("redis-py-lock", "prefork", 1, "invoice-under-expiry", "holds"),
        ("redis-py-lock", "prefork", 2, "no-orphaned-lock", "holds"),
    ],
)
def test_spot_checks(lock: str, pool: str, c: int, prop: str, want: str) -> None:
    config = LockConfig(lock, pool, c)  # type: ignore[arg-type]
    assert expected(config, prop) == want


def test_plugins_are_unknown() -> None:
    for config in all_configs([PLUGIN]):
        for prop in PROPERTIES:
            assert expected(config, prop) == "unknown"
            assert "plug-in" in why(config, prop)


# --- rules over the whole matrix ---------------------------------------------------------------


def test_concurrency_one_holds_everything() -> None:
    for config in BUILTINS:
        if config.concurrency == 1:
            assert {expected(config, p) for p in PROPERTIES} == {"holds"}, config.label()


def test_exactly_one_invoice_follows_mutual_exclusion() -> None:
    for config in BUILTINS:
        assert expected(config, "exactly-one-invoice") == expected(config, "mutual-exclusion")


def test_mutual_exclusion_violated_only_for_locmem_under_prefork() -> None:
    violated = {c.label() for c in BUILTINS if expected(c, "mutual-exclusion") == "violated"}
    assert violated == {
        "cookbook-locmem/prefork/c2",
        "cookbook-locmem/prefork/c3",
        "cookbook-locmem/prefork/c4",
    }


def test_lease_mutual_exclusion_follows_the_release() -> None:
    for config in BUILTINS:
        sem = config.semantics
        assert sem is not None
        want = (
            "violated" if sem.release == "unchecked-delete" and config.concurrency >= 2 else "holds"
        )
        assert expected(config, "lease-mutual-exclusion") == want, config.label()


def test_invoice_under_expiry_needs_only_concurrency() -> None:
    for config in BUILTINS:
        want = "violated" if config.concurrency >= 2 else "holds"
        assert expected(config, "invoice-under-expiry") == want, config.label()


def test_no_orphaned_lock_holds_for_builtins() -> None:
    assert {expected(c, "no-orphaned-lock") for c in BUILTINS} == {"holds"}


def test_a_stronger_property_never_holds_where_a_weaker_fails() -> None:
    # lease-mutual-exclusion allows every move mutual-exclusion does, and more.
    for config in BUILTINS:
        if expected(config, "mutual-exclusion") == "violated":
            assert expected(config, "lease-mutual-exclusion") == "violated"
        if expected(config, "exactly-one-invoice") == "violated":
            assert expected(config, "invoice-under-expiry") == "violated"


def test_why_is_one_line_and_names_the_mechanism() -> None:
    for config in BUILTINS + all_configs([PLUGIN]):
        for prop in PROPERTIES:
            reason = why(config, prop)
            assert reason and "\n" not in reason
    assert "prefork child" in why(LockConfig("cookbook-locmem", "prefork", 2), "mutual-exclusion")
    assert "LockNotOwnedError" in why(
        LockConfig("redis-py-lock", "threads", 2), "lease-mutual-exclusion"
    )
    assert "UPDATE" in why(
        LockConfig("cookbook-db-postgres", "threads", 2), "lease-mutual-exclusion"
    )
    assert "UPDATE" not in why(
        LockConfig("cookbook-db-sqlite", "threads", 2), "lease-mutual-exclusion"
    )
    assert "fencing token" in why(
        LockConfig("cookbook-redis", "prefork", 2), "invoice-under-expiry"
    )
    assert "one execution at a time" in why(
        LockConfig("cookbook-locmem", "solo", 1), "mutual-exclusion"
    )


def test_unknown_property_is_named() -> None:
    with pytest.raises(KeyError, match="unknown property 'mutex'"):
        expected(LockConfig("cookbook-redis", "prefork", 2), "mutex")
    with pytest.raises(KeyError, match="unknown property"):
        why(LockConfig(PLUGIN, "prefork", 2), "mutex")
