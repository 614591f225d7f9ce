"""The invariant checkers (model/invariants.py), each with passing and failing histories."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model.history import (
    AcquireEnd,
    InvoiceCount,
    Killed,
    Restarted,
    Started,
)
from model.invariants import (
    CHECKERS,
    Executions,
    exactly_one_invoice,
    mutual_exclusion,
    no_orphaned_lock,
    outlived_lease,
)
from tests.cover.histories import hist

TWO = "start t1 w1.c1; start t2 w1.c2;"
THREE = TWO + "start t3 w1.c3;"


# --- helpers ----------------------------------------------------------------------------


def test_executions_kill_only_their_process() -> None:
    lives = Executions()
    events = hist("start t1 w1.c1; start t2 w1.c2; start t3 w2.c1")
    for i, ev in enumerate(events):
        assert lives.observe(i, ev) == []
    assert lives.observe(6, Killed("w1.c1")) == ["t1"]
    assert lives.observe(7, Killed("w1")) == []  # prefork: the main runs no task
    assert lives.observe(8, Restarted("w1")) == ["t2"]
    assert not lives.alive("t1") and lives.alive("t3")


# --- (a) mutual exclusion --------------------------------------------------------------------


def test_mutual_exclusion_holds_for_serial_holders() -> None:
    assert mutual_exclusion(hist(THREE + "acq t1; no t2; rel t1; acq t3; rel t3")) == []


def test_mutual_exclusion_two_holders() -> None:
    events = hist(TWO + "acq t1; acq t2")
    [v] = mutual_exclusion(events)
    assert v.invariant == "mutual_exclusion"
    assert (v.index, v.executions) == (len(events) - 1, ("t1", "t2"))
    assert "t2 (w1.c2) acquired" in v.message and "t1 (w1.c1)" in v.message


def test_mutual_exclusion_ignores_an_expired_lease() -> None:
    assert mutual_exclusion(hist(TWO + "acq t1; expire; acq t2")) == []


def test_mutual_exclusion_a_reacquired_lease_is_fresh() -> None:
    # t1's first lease expired, but it acquired again afterwards: that lease is live.
    events = hist(TWO + "acq t1; expire; acq t1; acq t2")
    assert len(mutual_exclusion(events)) == 1


def test_mutual_exclusion_killed_holder_has_left() -> None:
    assert mutual_exclusion(hist(TWO + "acq t1; kill w1.c1; acq t2")) == []
    # killing another process does not take t1 out
    assert len(mutual_exclusion(hist(TWO + "acq t1; kill w1.c3; acq t2"))) == 1


def test_mutual_exclusion_leaves_at_release_begin_or_finish() -> None:
    assert mutual_exclusion(hist(TWO + "acq t1; rbegin t1; acq t2")) == []
    assert mutual_exclusion(hist(TWO + "acq t1; done t1; acq t2")) == []


def test_mutual_exclusion_race_after_deleted_entry() -> None:
    # The cookbook race: t1 deletes t2's entry, t3 gets in beside t2.
    events = hist(THREE + "acq t1; rbegin t1; expire; acq t2; rend t1; acq t3")
    [v] = mutual_exclusion(events)
    assert v.executions == ("t2", "t3")


def test_mutual_exclusion_three_at_once_reports_each_pair() -> None:
    events = hist(THREE + "acq t1; acq t2; acq t3")
    assert [v.executions for v in mutual_exclusion(events)] == [
        ("t1", "t2"),
        ("t1", "t3"),
        ("t2", "t3"),
    ]


def test_mutual_exclusion_is_per_key() -> None:
    events = [
        Started("t1", "t1", "w1.c1"),
        Started("t2", "t2", "w1.c2"),
        AcquireEnd("t1", "invoice:o1", True),
        AcquireEnd("t2", "invoice:o2", True),
    ]
    assert mutual_exclusion(events) == []


# --- (b) exactly one invoice ---------------------------------------------------------------------


def test_exactly_one_invoice_holds() -> None:
    assert exactly_one_invoice(hist(TWO + "acq t1; invoice t1; rel t1; no t2; count 1")) == []


def test_two_invoices_name_their_creators() -> None:
    events = hist(TWO + "acq t1; acq t2; invoice t1; invoice t2; count 2")
    [v] = exactly_one_invoice(events)
    assert (v.invariant, v.index, v.executions) == (
        "exactly_one_invoice",
        len(events) - 1,
        ("t1", "t2"),
    )
    assert v.message == "order o1 has 2 invoices, expected exactly 1 (created by t1, t2)"


def test_zero_invoices_is_a_violation_too() -> None:
    [v] = exactly_one_invoice(hist(TWO + "acq t1; kill w1.c1; no t2; count 0"))
    assert v.executions == () and "has 0 invoices" in v.message


def test_the_last_count_wins_and_orders_are_separate() -> None:
    assert exactly_one_invoice([InvoiceCount("o1", 2), InvoiceCount("o1", 1)]) == []
    found = exactly_one_invoice([InvoiceCount("o1", 1), InvoiceCount("o2", 3)])
    assert [v.message.split()[1] for v in found] == ["o2"]


def test_no_count_no_judgement() -> None:
    assert exactly_one_invoice(hist(TWO + "acq t1; invoice t1; invoice t1")) == []


# --- (c) no orphaned lock ------------------------------------------------------------------

ORPHAN = TWO + "acq t1; kill w1.c1; expire;"


def test_orphan_comes_back_after_expiry() -> None:
    assert no_orphaned_lock(hist(ORPHAN + "acq t2")) == []


def test_orphan_stuck_after_expiry() -> None:
    events = hist(ORPHAN + "no t2")
    [v] = no_orphaned_lock(events)
    assert (v.invariant, v.index, v.executions) == (
        "no_orphaned_lock",
        len(events) - 1,
        ("t1", "t2"),
    )
    assert "killed holding it at #" in v.message and "expired at #" in v.message


def test_killed_inside_acquire_arms_too() -> None:
    assert len(no_orphaned_lock(hist(TWO + "begin t1; kill w1.c1; expire; no t2"))) == 1


def test_killed_by_a_restart_arms_too() -> None:
    events = hist("start t1 w1; start t2 w2; acq t1; kill w1; restart w1; expire; no t2")
    assert len(no_orphaned_lock(events)) == 1


def test_no_expiry_after_the_kill_no_judgement() -> None:
    assert no_orphaned_lock(hist(TWO + "acq t1; kill w1.c1; no t2")) == []
    # an expiry *before* the kill does not count either
    assert no_orphaned_lock(hist(TWO + "acq t1; expire; kill w1.c1; no t2")) == []


def test_killing_a_process_that_released_does_not_arm() -> None:
    assert no_orphaned_lock(hist(TWO + "acq t1; rel t1; kill w1.c1; expire; no t2")) == []
    # ...but dying between the two halves of the release does
    assert len(no_orphaned_lock(hist(TWO + "acq t1; rbegin t1; kill w1.c1; expire; no t2"))) == 1


def test_contended_attempt_is_not_judged_but_the_next_is() -> None:
    contended = hist(
        THREE + "acq t1; kill w1.c1; expire; begin t2; begin t3; refused t2;refused t3"
    )
    assert no_orphaned_lock(contended) == []
    start4 = "start t4 w1.c4;"
    assert len(no_orphaned_lock(contended + hist(start4 + "no t4"))) == 1
    assert no_orphaned_lock(contended + hist(start4 + "acq t4")) == []


def test_a_successful_acquire_after_the_expiry_disarms() -> None:
    # The lock came back (t3 got it); t2's refusal while t3 holds it is no orphan.
    assert no_orphaned_lock(hist(THREE + "acq t1; kill w1.c1; expire; acq t3; no t2")) == []
    # ...nor after t3 released: (c) is about the orphan only.
    assert no_orphaned_lock(hist(THREE + "acq t1; kill w1.c1; expire; acq t3; rel t3; no t2")) == []


def test_a_second_orphan_rearms() -> None:
    # t3 finished its acquire after the expiry (disarm), then died holding the lock.
    base = (
        "start t1 w1.c1; start t2 w1.c2; start t3 w2.c1; begin t3; acq t1;"
        "kill w1.c1; expire; got t3; kill w2.c1;"
    )
    assert no_orphaned_lock(hist(base + "no t2")) == []  # t3's lease is still live
    [v] = no_orphaned_lock(hist(base + "expire; no t2"))
    assert v.executions == ("t3", "t2")


def test_a_cut_short_attempt_is_not_judged() -> None:
    events = hist(ORPHAN + "begin t2; kill w1.c2; start t3 w1.c3; no t3")
    assert len(no_orphaned_lock(events)) == 1
    assert no_orphaned_lock(hist(ORPHAN + "begin t2; kill w1.c2")) == []


# --- precondition of (b) --------------------------------------------------------------------------


def test_outlived_lease() -> None:
    assert outlived_lease(hist(TWO + "acq t1; kill w1.c1"))
    assert outlived_lease(hist(TWO + "acq t1; pause w1.c1; resume w1.c1; rel t1"))
    assert outlived_lease(hist(TWO + "acq t1; expire; rel t1"))
    assert outlived_lease(hist(TWO + "begin t1; expire; got t1"))
    assert outlived_lease(hist(TWO + "acq t1; rbegin t1; kill w1.c1"))
    assert outlived_lease(hist("start t1 w1.c1; acq t1; restart w1"))


def test_no_outlived_lease() -> None:
    assert not outlived_lease(hist(TWO + "acq t1; rel t1; expire; kill w1.c1; pause w1.c1"))
    assert not outlived_lease(hist(TWO + "acq t1; kill w1.c2; pause w1.c3; no t2"))
    assert not outlived_lease(hist(TWO + "no t1; expire; done t1"))
    assert not outlived_lease(hist("start t1 w2.c1; acq t1; restart w1; rel t1"))
    assert not outlived_lease([])


def test_checkers_table() -> None:
    assert dict(CHECKERS) == {
        "mutual_exclusion": mutual_exclusion,
        "exactly_one_invoice": exactly_one_invoice,
        "no_orphaned_lock": no_orphaned_lock,
    }


@given(st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=12))
def test_strictly_serial_sections_never_violate(order: list[str]) -> None:
    """Any sequence of acquire-then-release, one at a time, is mutually exclusive and
    leaves nothing orphaned."""
    script = THREE + "".join(f"acq {e}; rel {e};" for e in order)
    events = hist(script)
    assert mutual_exclusion(events) == []
    assert no_orphaned_lock(events) == []
    assert not outlived_lease(events)
