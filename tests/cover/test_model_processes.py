"""Process names (model/processes.py): the one grammar every model reads."""

from __future__ import annotations

import pytest

from model.processes import ProcessName, is_child, parse, role_of, unprimed, worker_of


def test_worker_of_strips_child_and_respawn_marks() -> None:
    assert [worker_of(p) for p in ("w1", "w1.c2", "w1.c2'", "w2'", "w10.c1''")] == [
        "w1",
        "w1",
        "w1",
        "w2",
        "w10",
    ]


def test_names() -> None:
    assert [role_of(p) for p in ("app", "w1", "w2'", "w1.c3", "w1.c1''")] == [
        "app",
        "main",
        "main",
        "child",
        "child",
    ]
    assert [worker_of(p) for p in ("w1", "w1.c2'", "w3'")] == ["w1", "w1", "w3"]
    for bad in ("c1", "w1.x", "App", ""):
        with pytest.raises(ValueError, match="unknown process name"):
            role_of(bad)


def test_parse_reads_worker_slot_and_primes() -> None:
    assert parse("w1") == ProcessName("w1", None, 0)
    assert parse("w2'") == ProcessName("w2", None, 1)
    assert parse("w1.c3''") == ProcessName("w1", 3, 2)
    assert [is_child(p) for p in ("w1", "w1.c2", "w2'", "w1.c1'")] == [False, True, False, True]
    assert unprimed("w1.c2''") == "w1.c2"
    with pytest.raises(ValueError, match="unknown process name"):
        parse("app")
