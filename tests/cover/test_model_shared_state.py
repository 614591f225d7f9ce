"""The module-state model's shared stores (cache servers) and its config labels."""

from __future__ import annotations

import pytest

from model.config import STORES, StateConfig, parse_state_label
from model.history import (
    Killed,
    Read,
    ReadForUpdate,
    Write,
    WriteBack,
    WriteBegin,
    observed,
)
from model.state import mismatches
from model.state_properties import PROPERTIES, expected_verdict, violations

REDIS2 = StateConfig("prefork", 2, store="redis")
DB2 = StateConfig("prefork", 2, store="db-postgres")


def test_a_shared_store_is_one_copy_for_every_process() -> None:
    events = [Write("t1", "w1.c1", 5), Read("t2", "w1.c2", 5), Read("a", "app", 5)]
    assert mismatches(REDIS2, events) == []
    assert violations(REDIS2, "read-your-writes-across-tasks", events) == []
    assert violations(REDIS2, "sender-sees-task-writes", events) == []
    # The same history on the module global is three copies: the reads are wrong.
    assert len(mismatches(StateConfig("prefork", 2), events)) == 2


def test_a_kill_loses_no_completed_write_in_a_shared_store() -> None:
    events = [Write("t1", "w1.c1", 5), Killed("w1"), Read("t2", "w2.c1", 5)]
    assert mismatches(REDIS2, events) == []


def test_increments_in_two_processes_race_on_a_shared_store() -> None:
    events = [
        ReadForUpdate("t1", "w1.c1", 0),
        ReadForUpdate("t2", "w1.c2", 0),
        WriteBack("t1", "w1.c1", 1),
        WriteBack("t2", "w1.c2", 1),
    ]
    assert mismatches(REDIS2, events) == []
    assert len(violations(REDIS2, "no-lost-update-locked", events)) == 1
    # Per-process copies: two separate counters, nothing lost.
    assert violations(StateConfig("prefork", 2), "no-lost-update-locked", events) == []


def test_database_cache_may_drop_one_of_two_racing_sets() -> None:
    raced = [
        WriteBegin("t1", "w1.c1"),
        WriteBegin("t2", "w1.c2"),
        Write("t1", "w1.c1", 1),
        Write("t2", "w1.c2", 2),
        Read("t3", "w1.c1", 1),
    ]
    assert mismatches(DB2, raced) == []
    assert len(violations(DB2, "read-your-writes-across-tasks", raced)) == 1
    # Redis SET is one command: the same reads are a mismatch there.
    assert len(mismatches(REDIS2, raced)) == 1
    # Sets that do not overlap never drop one, even on the database cache.
    serial = [raced[0], raced[2], raced[1], raced[3], Read("t3", "w1.c1", 1)]
    assert len(mismatches(DB2, serial)) == 1


@pytest.mark.parametrize("store", STORES)
def test_every_label_reads_back(store: str) -> None:
    configs = [
        StateConfig("threads", 3, store=store),
        StateConfig("solo", 1, store=store, kills=True),
    ]
    if store == "module":
        configs.append(StateConfig("prefork", 2, max_tasks_per_child=1, init_value=5))
        configs.append(StateConfig("prefork", 1, max_tasks_per_child=2, kills=True))
    for config in configs:
        assert parse_state_label(config.label()) == config


@pytest.mark.parametrize(
    "label", ["prefork", "nosuch/prefork/c2", "prefork/c2/x1", "gevent/2", "prefork/kill"]
)
def test_a_bad_label_is_one_clear_error(label: str) -> None:
    with pytest.raises(ValueError, match="state config"):
        parse_state_label(label)


def test_a_config_with_kills_predicts_as_kills_do() -> None:
    ryw = "read-your-writes-across-tasks"
    for pool, n in (("prefork", 1), ("threads", 2), ("solo", 1)):
        assert expected_verdict(StateConfig(pool, n), ryw) == "holds"  # type: ignore[arg-type]
        killed = StateConfig(pool, n, kills=True)  # type: ignore[arg-type]
        assert expected_verdict(killed, ryw) == "violated"
        assert expected_verdict(killed, ryw) == expected_verdict(
            StateConfig(pool, n),  # type: ignore[arg-type]
            ryw,
            kills=True,
        )
    assert expected_verdict(StateConfig("prefork", 2, store="redis", kills=True), ryw) == "holds"


def test_init_value_belongs_to_the_module_global() -> None:
    with pytest.raises(ValueError, match="shared store"):
        StateConfig("prefork", 2, store="redis", init_value=3)


def test_predictions_for_shared_stores() -> None:
    ryw, unsync = "read-your-writes-across-tasks", "no-lost-update-unsynchronized"
    assert expected_verdict(REDIS2, ryw) == "holds"
    assert expected_verdict(DB2, ryw) == "violated"
    assert expected_verdict(StateConfig("solo", 1, store="db-postgres"), ryw) == "holds"
    assert expected_verdict(StateConfig("threads", 2, store="memcached"), unsync) == "violated"
    assert expected_verdict(StateConfig("threads", 2, store="redis"), "no-lost-update-locked") == (
        "holds"
    )
    assert expected_verdict(REDIS2, "no-lost-update-locked") == "violated"
    for prop in PROPERTIES:
        assert expected_verdict(StateConfig("solo", 1, store="memcached"), prop) == "holds"


def test_reports_become_events() -> None:
    assert observed("write", "t1", "w1", {"value": 3}) == Write("t1", "w1", 3)
    assert observed("writing", "t1", "w1", {}) == WriteBegin("t1", "w1")
    with pytest.raises(ValueError, match="unknown state report"):
        observed("nonsense", "t1", "w1", {})
