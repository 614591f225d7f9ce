"""The lock model (model/locks.py) on hand-written histories, and against a tiny
reference simulation of an atomic lock under Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.config import BUILTIN_LOCKS, LockSemantics
from model.history import (
    AcquireBegin,
    AcquireEnd,
    Event,
    Expired,
    Killed,
    ReleaseBegin,
    ReleaseEnd,
    Started,
    Submitted,
)
from model.invariants import mutual_exclusion
from model.locks import LockModel, Mismatch, allowed_acquire, check_lock_model
from tests.cover.histories import KEY, hist

LOCMEM = BUILTIN_LOCKS["cookbook-locmem"]
REDIS = BUILTIN_LOCKS["cookbook-redis"]
MEMCACHED = BUILTIN_LOCKS["cookbook-memcached"]
PG = BUILTIN_LOCKS["cookbook-db-postgres"]
SQLITE = BUILTIN_LOCKS["cookbook-db-sqlite"]
REDIS_PY = BUILTIN_LOCKS["redis-py-lock"]


def at(events: list[Event], event: Event) -> int:
    """Index of the last occurrence of ``event``."""
    return max(i for i, e in enumerate(events) if e == event)


def only(mismatches: list[Mismatch]) -> Mismatch:
    assert len(mismatches) == 1, [m.describe() for m in mismatches]
    return mismatches[0]


# --- scope: per process vs server --------------------------------------------------------


def test_locmem_two_prefork_children_both_acquire() -> None:
    events = hist("start t1 w1.c1; start t2 w1.c2; acq t1; acq t2")
    assert check_lock_model(LOCMEM, events) == []


def test_locmem_refusal_in_an_empty_child_is_a_mismatch() -> None:
    events = hist("start t1 w1.c1; start t2 w1.c2; acq t1; no t2")
    m = only(check_lock_model(LOCMEM, events))
    assert (m.index, m.execution, m.expected, m.observed) == (
        at(events, AcquireEnd("t2", KEY, False)),
        "t2",
        "acquired=True",
        "acquired=False",
    )
    assert "in w1.c2" in m.why and "nobody had taken it" in m.why


def test_locmem_same_process_refuses() -> None:
    events = hist("start t1 w1; start t2 w1; acq t1; no t2")
    assert check_lock_model(LOCMEM, events) == []


def test_locmem_same_process_double_acquire_is_a_mismatch() -> None:
    events = hist("start t1 w1; start t2 w1; acq t1; acq t2")
    m = only(check_lock_model(LOCMEM, events))
    got_t1 = at(events, AcquireEnd("t1", KEY, True))
    assert m.expected == "acquired=False" and m.observed == "acquired=True"
    assert m.why == (
        f"t2 acquired {KEY} in w1 although t1 held it there since #{got_t1} and no expiry followed"
    )


def test_server_scope_is_shared_between_processes() -> None:
    events = hist("start t1 w1.c1; start t2 w2.c1; acq t1; acq t2")
    for sem in (REDIS, MEMCACHED, REDIS_PY):
        m = only(check_lock_model(sem, events))
        assert m.execution == "t2" and m.observed == "acquired=True"
        assert f"on {sem.backend}" in m.why


def test_kill_erases_locmem_state() -> None:
    killed = hist("start t1 w1; acq t1; kill w1; start t2 w1; acq t2")
    assert check_lock_model(LOCMEM, killed) == []
    not_killed = hist("start t1 w1; acq t1; start t2 w1; acq t2")
    assert len(check_lock_model(LOCMEM, not_killed)) == 1


def test_restart_erases_locmem_state_of_the_workers_processes() -> None:
    events = hist("start t1 w1.c1; acq t1; kill w1; restart w1; start t2 w1.c1; acq t2")
    assert check_lock_model(LOCMEM, events) == []
    other_worker = hist("start t1 w2.c1; acq t1; restart w1; start t2 w2.c1; acq t2")
    assert len(check_lock_model(LOCMEM, other_worker)) == 1


def test_kill_does_not_erase_server_state() -> None:
    events = hist("start t1 w1.c1; acq t1; kill w1.c1; start t2 w1.c2; acq t2")
    m = only(check_lock_model(REDIS, events))
    assert m.execution == "t2" and "t1 held it" in m.why
    refused = hist("start t1 w1.c1; acq t1; kill w1.c1; start t2 w1.c2; no t2")
    assert check_lock_model(REDIS, refused) == []


def test_orphaned_server_entry_goes_at_expiry() -> None:
    base = "start t1 w1.c1; acq t1; kill w1.c1; expire; start t2 w1.c2;"
    assert check_lock_model(REDIS, hist(base + "acq t2")) == []
    m = only(check_lock_model(REDIS, hist(base + "no t2")))
    assert "t1's lease expired at #" in m.why


def test_expired_db_row_stays_but_lets_an_add_in() -> None:
    base = "start t1 w1.c1; acq t1; expire; start t2 w1.c2;"
    assert check_lock_model(SQLITE, hist(base + "acq t2")) == []
    m = only(check_lock_model(SQLITE, hist(base + "no t2")))
    assert "(the row stays)" in m.why and "no other attempt overlapped" in m.why


# --- the cookbook's unchecked delete -------------------------------------------------------

RACE = """
start t1 w1.c1; start t2 w1.c2; start t3 w1.c3
acq t1; rbegin t1; expire; acq t2; rend t1
"""


@pytest.mark.parametrize("sem", [REDIS, MEMCACHED, SQLITE, PG], ids=lambda s: s.backend)
def test_cookbook_release_race_deletes_the_next_holders_entry(sem: LockSemantics) -> None:
    # t1 passed its clock check (rbegin) before the expiry, so it deletes t2's entry:
    # t3 is predicted to get the lock while t2 still believes it holds it.
    assert check_lock_model(sem, hist(RACE + "; acq t3")) == []
    events = hist(RACE + "; no t3")
    m = only(check_lock_model(sem, events))
    assert m.execution == "t3" and m.expected == "acquired=True"
    assert f"t1's release deleted it at #{at(events, ReleaseEnd('t1', KEY))} while t2 held it" in (
        m.why
    )


def test_cookbook_release_race_in_one_locmem_process() -> None:
    events = hist(
        "start t1 w1; start t2 w1; start t3 w1; acq t1; rbegin t1; expire; acq t2;rend t1; acq t3"
    )
    assert check_lock_model(LOCMEM, events) == []


def test_cookbook_clock_that_saw_the_expiry_does_not_delete() -> None:
    base = "start t1 w1.c1; start t2 w1.c2; start t3 w1.c3; acq t1; expire; acq t2; rel t1;"
    assert check_lock_model(REDIS, hist(base + "no t3")) == []
    m = only(check_lock_model(REDIS, hist(base + "acq t3")))
    assert m.expected == "acquired=False" and "t2 held it" in m.why


def test_cookbook_expiry_inside_the_acquire_allows_either_release() -> None:
    # The cookbook reads its clock before cache.add: an expiry while t1 waits at the
    # SET point may or may not stop its delete; t1's lease itself is fresh.
    base = "start t1 w1.c1; start t2 w1.c2; begin t1; expire; got t1; rel t1;"
    assert check_lock_model(REDIS, hist(base + "acq t2")) == []
    assert check_lock_model(REDIS, hist(base + "no t2")) == []
    # ...but the lease taken after that expiry is live: no one else gets in before release.
    live = hist("start t1 w1.c1; start t2 w1.c2; begin t1; expire; got t1; acq t2")
    assert len(check_lock_model(REDIS, live)) == 1


def test_cookbook_release_must_not_raise() -> None:
    events = hist("start t1 w1.c1; acq t1; rel t1 boom")
    m = only(check_lock_model(REDIS, events))
    assert (m.expected, m.observed) == ("no error", "error boom")


def test_release_without_acquire_is_a_mismatch() -> None:
    events = hist("start t1 w1.c1; start t2 w1.c2; acq t1; no t2; rel t2")
    m = only(check_lock_model(REDIS, events))
    assert (m.execution, m.expected) == ("t2", "no release")


def test_normal_release_frees_the_key() -> None:
    base = "start t1 w1.c1; start t2 w1.c2; acq t1; rel t1;"
    assert check_lock_model(REDIS, hist(base + "acq t2")) == []
    m = only(check_lock_model(REDIS, hist(base + "no t2")))
    assert "t1 released it at #" in m.why


# --- redis-py's token-checked release --------------------------------------------------------


def test_token_checked_release_after_expiry_expects_lock_not_owned() -> None:
    base = "start t1 w1.c1; acq t1; expire;"
    assert check_lock_model(REDIS_PY, hist(base + "rel t1 LockNotOwnedError: lost")) == []
    m = only(check_lock_model(REDIS_PY, hist(base + "rel t1")))
    assert (m.expected, m.observed) == ("LockNotOwned error", "no error")
    assert "must raise LockNotOwnedError" in m.why


def test_token_checked_release_while_held_must_succeed() -> None:
    assert check_lock_model(REDIS_PY, hist("start t1 w1.c1; acq t1; rel t1")) == []
    m = only(check_lock_model(REDIS_PY, hist("start t1 w1.c1; acq t1; rel t1 LockNotOwnedError")))
    assert (m.expected, m.observed) == ("no error", "LockNotOwned error")


def test_token_checked_release_does_not_delete_the_next_holders_key() -> None:
    base = (
        "start t1 w1.c1; start t2 w1.c2; start t3 w1.c3; acq t1; rbegin t1; expire; "
        "acq t2; rend t1 LockNotOwnedError;"
    )
    assert check_lock_model(REDIS_PY, hist(base + "no t3")) == []
    assert len(check_lock_model(REDIS_PY, hist(base + "acq t3"))) == 1


def test_token_checked_release_with_another_error_is_a_mismatch() -> None:
    m = only(check_lock_model(REDIS_PY, hist("start t1 w1.c1; acq t1; rel t1 ConnectionError")))
    assert m.observed == "error ConnectionError"


# --- DatabaseCache's select-then-write add ------------------------------------------------------

OVERLAP = "start t1 w1.c1; start t2 w1.c2; begin t1; begin t2;"


@pytest.mark.parametrize(
    "ends",
    [
        "got t1; got t2",
        "got t1; refused t2",
        "refused t1; got t2",
        "refused t1; refused t2",
        "got t2; got t1",
    ],
)
def test_select_write_overlap_allows_both_outcomes(ends: str) -> None:
    for sem in (SQLITE, PG):
        assert check_lock_model(sem, hist(OVERLAP + ends)) == []


def test_same_overlap_on_an_atomic_lock_is_judged() -> None:
    m = only(check_lock_model(REDIS, hist(OVERLAP + "got t1; got t2")))
    assert m.execution == "t2"
    both = check_lock_model(REDIS, hist(OVERLAP + "refused t1; refused t2"))
    assert [m.execution for m in both] == ["t1", "t2"]


def test_select_write_without_overlap_is_atomic() -> None:
    events = hist("start t1 w1.c1; start t2 w1.c2; acq t1; begin t2; got t2")
    assert len(check_lock_model(PG, events)) == 1


def test_select_write_overlap_with_a_killed_attempt() -> None:
    # t1's transaction dies with its process (rolled back) while t2 is mid-add.
    events = hist(OVERLAP + "kill w1.c1; got t2")
    assert check_lock_model(PG, events) == []
    # After the kill, a fresh attempt does not overlap anything: atomic again.
    later = hist(OVERLAP + "kill w1.c1; got t2; start t3 w1.c3; acq t3")
    m = only(check_lock_model(PG, later))
    assert m.execution == "t3"


def test_select_write_release_inside_the_window_allows_both() -> None:
    base = "start t1 w1.c1; start t2 w1.c2; acq t1; begin t2; rel t1;"
    assert check_lock_model(PG, hist(base + "got t2")) == []
    assert check_lock_model(PG, hist(base + "refused t2")) == []
    # the same release before the attempt began leaves one answer
    assert (
        len(
            check_lock_model(
                PG, hist("start t1 w1.c1; start t2 w1.c2; acq t1; rel t1; begin t2; refused t2")
            )
        )
        == 1
    )


def test_select_write_release_that_does_not_delete_leaves_it_held() -> None:
    # t1's clock saw an expiry, t2 took the expired row; t3 begins, t1's release inside
    # t3's window deletes nothing: t3 must be refused (t2 holds a live row).
    base = (
        "start t1 w1.c1; start t2 w1.c2; start t3 w1.c3; acq t1; expire; acq t2; begin t3; rel t1;"
    )
    assert check_lock_model(PG, hist(base + "refused t3")) == []
    assert len(check_lock_model(PG, hist(base + "got t3"))) == 1


def test_select_write_expiry_inside_the_window_allows_both() -> None:
    base = "start t1 w1.c1; start t2 w1.c2; acq t1; begin t2; expire;"
    assert check_lock_model(SQLITE, hist(base + "got t2")) == []
    assert check_lock_model(SQLITE, hist(base + "refused t2")) == []
    assert len(check_lock_model(REDIS, hist(base + "refused t2"))) == 1  # atomic: at the end


# --- errors, plug-ins, recovery, helpers -----------------------------------------------------


def test_acquire_error_is_a_mismatch_for_builtins() -> None:
    events = [
        Started("t1", "t1", "w1.c1"),
        AcquireBegin("t1", KEY),
        AcquireEnd("t1", KEY, False, "OperationalError: database is locked"),
    ]
    m = only(check_lock_model(SQLITE, events))
    assert m.observed == "error OperationalError: database is locked"
    assert m.expected == "acquired=True"


def test_plugin_lock_has_no_model() -> None:
    assert check_lock_model(None, hist("start t1 w1; start t2 w1; acq t1; acq t2")) == []


def test_one_surprise_is_reported_once() -> None:
    # The model follows the observation after a mismatch: t2 holding is now the truth,
    # so t3's refusal and t2's release are fine.
    events = hist(
        "start t1 w1.c1; start t2 w1.c2; start t3 w1.c3; acq t1; acq t2; no t3;rel t2; rel t1"
    )
    assert [m.execution for m in check_lock_model(REDIS, events)] == ["t2"]


def test_keys_are_independent() -> None:
    events = [
        Started("t1", "t1", "w1.c1"),
        Started("t2", "t2", "w1.c2"),
        AcquireBegin("t1", "invoice:o1"),
        AcquireEnd("t1", "invoice:o1", True),
        AcquireBegin("t2", "invoice:o2"),
        AcquireEnd("t2", "invoice:o2", True),
        Expired("invoice:o2"),
        AcquireBegin("t2", "invoice:o1"),
        AcquireEnd("t2", "invoice:o1", False),
    ]
    assert check_lock_model(REDIS, events) == []


def test_ignored_events_change_nothing() -> None:
    plain = hist("start t1 w1.c1; start t2 w1.c2; acq t1; no t2")
    noisy = hist(
        "start t1 w1.c1; start t2 w1.c2; point t1 cs; acq t1; pause w1.c1; "
        "resume w1.c1; invoice t1; point t2 redis; no t2; done t2; count 1"
    )
    assert check_lock_model(REDIS, plain) == check_lock_model(REDIS, noisy) == []


def test_allowed_acquire_reports_the_expected_outcome() -> None:
    events = hist("start t1 w1.c1; start t2 w1.c2; acq t1; no t2; rel t1; acq t2")
    assert allowed_acquire(REDIS, events, at(events, AcquireEnd("t1", KEY, True))) == {True}
    assert allowed_acquire(REDIS, events, at(events, AcquireEnd("t2", KEY, False))) == {False}
    assert allowed_acquire(REDIS, events, at(events, AcquireEnd("t2", KEY, True))) == {True}
    overlap = hist(OVERLAP + "got t1")
    assert allowed_acquire(PG, overlap, len(overlap) - 1) == {True, False}
    assert allowed_acquire(REDIS, overlap, len(overlap) - 1) == {True}
    with pytest.raises(ValueError, match="not an AcquireEnd"):
        allowed_acquire(REDIS, events, 0)


def test_lock_model_is_online() -> None:
    model = LockModel(REDIS)
    for i, ev in enumerate(hist("start t1 w1.c1; start t2 w1.c2; acq t1")):
        assert model.step(i, ev) is None
    assert model.allowed_acquire("t2", KEY) == {False}


# --- Hypothesis: an atomic lock without expiry against a reference simulation -----------------


@st.composite
def serial_runs(draw: st.DrawFn, per_process: bool) -> tuple[list[Event], list[int]]:
    """A random serial history of an atomic lock with no expiry, produced by a tiny
    reference simulation; also the indices of its AcquireEnd events."""
    procs = ["w1.c1", "w1.c2", "w1.c3"]
    events: list[Event] = []
    holder: dict[str, str] = {}  # scope -> holder
    state: dict[str, str] = {}  # execution -> idle | acquiring | holding | done
    where: dict[str, str] = {}
    n = 0
    for _ in range(draw(st.integers(0, 30))):
        live = sorted(e for e, s in state.items() if s != "done")
        moves = ["start"] + [f"step {e}" for e in live] + [f"kill {p}" for p in procs]
        move = draw(st.sampled_from(moves))
        if move == "start":
            n += 1
            e = f"t{n}"
            where[e] = draw(st.sampled_from(procs))
            state[e] = "idle"
            events += [Submitted(e), Started(e, e, where[e])]
            continue
        verb, arg = move.split()
        if verb == "kill":
            events.append(Killed(arg))
            for e in live:
                if where[e] == arg:
                    state[e] = "done"
            if per_process:
                holder.pop(arg, None)
            continue
        e = arg
        scope = where[e] if per_process else "server"
        if state[e] == "idle":
            events.append(AcquireBegin(e, KEY))
            state[e] = "acquiring"
        elif state[e] == "acquiring":
            ok = scope not in holder
            events.append(AcquireEnd(e, KEY, ok))
            if ok:
                holder[scope] = e
            state[e] = "holding" if ok else "done"
        else:
            events += [ReleaseBegin(e, KEY), ReleaseEnd(e, KEY)]
            del holder[scope]
            state[e] = "done"
    ends = [i for i, ev in enumerate(events) if isinstance(ev, AcquireEnd)]
    return events, ends


@settings(max_examples=200)
@given(serial_runs(per_process=False))
def test_atomic_server_lock_accepts_the_reference(run: tuple[list[Event], list[int]]) -> None:
    events, _ = run
    for sem in (REDIS, MEMCACHED, REDIS_PY, PG, SQLITE):
        assert check_lock_model(sem, events) == []
    assert mutual_exclusion(events) == []


@settings(max_examples=200)
@given(serial_runs(per_process=True))
def test_locmem_accepts_the_per_process_reference(run: tuple[list[Event], list[int]]) -> None:
    assert check_lock_model(LOCMEM, run[0]) == []


@settings(max_examples=200)
@given(serial_runs(per_process=False), st.data())
def test_a_flipped_acquire_outcome_is_caught_there(
    run: tuple[list[Event], list[int]], data: st.DataObject
) -> None:
    events, ends = run
    if not ends:
        return
    k = data.draw(st.sampled_from(ends))
    ev = events[k]
    assert isinstance(ev, AcquireEnd)
    flipped = [*events[:k], AcquireEnd(ev.execution, KEY, not ev.acquired), *events[k + 1 :]]
    found = check_lock_model(REDIS, flipped)
    assert found and found[0].index == k
    assert found[0].observed == f"acquired={not ev.acquired}"


# t4's add SELECTs t1's expired row; t5 takes it (UPDATE) and releases it (DELETE); t4's
# UPDATE then matches no row and add() still returns True (a history a ci run recorded).
GHOST = (
    "start t1 w1.c1; start t4 w1.c3; start t5 w1.c4; start t6 w1.c4;"
    "acq t1; expire; begin t4; acq t5; rel t5; got t4;"
)


def test_select_write_add_over_a_deleted_expired_row_may_store_nothing() -> None:
    assert check_lock_model(PG, hist(GHOST + "acq t6")) == []
    assert check_lock_model(PG, hist(GHOST + "no t6")) == []  # or it did store its row


def test_without_an_expired_row_the_update_path_is_not_taken() -> None:
    # the same interleaving with no expiry: t5 cannot take t1's live row at all, so use
    # a released one; t4's add then INSERTs and holds
    base = (
        "start t1 w1.c1; start t4 w1.c3; start t5 w1.c4; start t6 w1.c4;"
        "acq t1; rel t1; begin t4; acq t5; rel t5; got t4;"
    )
    m = only(check_lock_model(PG, hist(base + "acq t6")))
    assert m.execution == "t6"


def test_atomic_add_has_no_ghost_acquire() -> None:
    # SET NX answers at one instant: t4's True means t4 holds, so t6 must be refused
    m = only(check_lock_model(REDIS, hist(GHOST + "acq t6")))
    assert m.execution == "t6"


def test_sqlite_keeps_its_shared_lock_so_no_ghost_acquire() -> None:
    assert len(check_lock_model(SQLITE, hist(GHOST + "acq t6"))) == 1
