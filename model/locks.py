"""The lock model: what each built-in lock may answer, replayed over a history.

The model follows the history event by event and keeps the *set* of lock states the
real system may be in (Jepsen/Knossos style): where the history alone cannot tell what
happened (two DatabaseCache adds interleaving, a cookbook clock that may or may not have
seen an expiry) both successors are kept, and an observation that fits no state is a
mismatch. After a mismatch the observation is taken as the truth, so one surprise is
reported once, not at every later step.

State: for each place — (scope, key), scope being the process for LocMemCache and
``server`` otherwise — either the lease that holds it or a note on how it became free
(the note only feeds the one-line ``why``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from model.config import LockSemantics
from model.history import (
    AcquireBegin,
    AcquireEnd,
    Event,
    Expired,
    ReleaseBegin,
    ReleaseEnd,
)
from model.invariants import Executions


@dataclass(frozen=True)
class Mismatch:
    index: int  # the AcquireEnd / ReleaseEnd whose outcome the model did not allow
    execution: str
    expected: str
    observed: str
    why: str

    def describe(self) -> str:
        return (
            f"#{self.index} {self.execution}: expected {self.expected}, "
            f"observed {self.observed} — {self.why}"
        )


@dataclass(frozen=True)
class _Held:
    holder: str
    since: int  # index of the AcquireEnd that took it


@dataclass(frozen=True)
class _Free:
    note: str  # how it became free: "t1 released it at #9"


_Slot = _Held | _Free
_Place = tuple[str, str]  # (scope, key)
_State = tuple[tuple[_Place, _Slot], ...]  # sorted by place; hashable

# What the cookbook's release does after reading its clock at ReleaseBegin.
_Clock = Literal["delete", "keep", "either"]

OK = "no error"
NOT_OWNED = "LockNotOwned error"
NO_RELEASE = "no release"


def _get(state: _State, place: _Place) -> _Slot | None:
    for p, slot in state:
        if p == place:
            return slot
    return None


def _put(state: _State, place: _Place, slot: _Slot) -> _State:
    d = dict(state)
    d[place] = slot
    return tuple(sorted(d.items(), key=lambda kv: kv[0]))


def _free(state: _State, place: _Place) -> bool:
    return not isinstance(_get(state, place), _Held)


def _dedupe(states: Iterable[_State]) -> list[_State]:
    return list(dict.fromkeys(states))  # keeps first-seen order: deterministic messages


def _fmt_acquire(allowed: frozenset[bool]) -> str:
    if allowed == {True, False}:
        return "acquired=True or False"
    return f"acquired={next(iter(allowed))}" if allowed else "nothing"


class LockModel:
    """Online replay of one built-in lock. Feed events in order with ``step``."""

    def __init__(self, sem: LockSemantics) -> None:
        self.sem = sem
        self.executions = Executions()
        self._states: list[_State] = [()]
        self._open: dict[str, tuple[str, int]] = {}  # attempt in flight: e -> (key, begin)
        self._closed: list[tuple[str, str, int, int]] = []  # (e, key, begin, end)
        self._begin_states: dict[str, list[_State]] = {}
        self._held: dict[tuple[str, str], tuple[int, int]] = {}  # (e, key) -> (begin, end)
        self._clock: dict[tuple[str, str], tuple[_Clock, str]] = {}
        self._expiries: dict[str, list[int]] = {}
        self._deletes: dict[str, list[tuple[int, str]]] = {}  # key -> (index, releaser)
        self._index = 0

    # --- where ------------------------------------------------------------------------

    def _place(self, execution: str, key: str) -> _Place:
        if self.sem.scope == "process":
            return (self.executions.process.get(execution, "?"), key)
        return ("server", key)

    def _where(self, place: _Place) -> str:
        return f"in {place[0]}" if self.sem.scope == "process" else f"on {self.sem.backend}"

    # --- acquire ----------------------------------------------------------------------

    def _contended(self, execution: str, key: str) -> str | None:
        """For select-write: another attempt on ``key`` whose window overlaps this one."""
        _, begin = self._open.get(execution, (key, self._index))
        for other, (k, _) in self._open.items():
            if k == key and other != execution:
                return other
        for other, k, _, end in self._closed:
            if k == key and other != execution and end > begin:
                return other
        return None

    def _allowed_per_state(self, execution: str, key: str) -> list[tuple[_State, frozenset[bool]]]:
        place = self._place(execution, key)
        extra: frozenset[bool] = frozenset()
        if self.sem.acquire == "select-write":
            # Django DatabaseCache.add (django/core/cache/backends/db.py ``_base_set``):
            # SELECT, then UPDATE (row expired) or INSERT (no row, or a live one: the
            # IntegrityError makes it False), then commit; each statement is a point.
            # With another add in flight the two may both INSERT (one gets an
            # IntegrityError -> False), both UPDATE an expired row (PostgreSQL READ
            # COMMITTED: both True), or fail on SQLite's file lock -> False: anything.
            if self._contended(execution, key) is not None:
                extra = frozenset({True, False})
            else:
                # Alone, the SELECT saw the key as it was at some moment of the window;
                # without another acquire, the key can only become free inside it (an
                # expiry, a release, a kill), so the window's ends bound the answers.
                begin = self._begin_states.get(execution, [])
                extra = frozenset(_free(s, place) for s in begin)
        return [(s, frozenset({_free(s, place)}) | extra) for s in self._states]

    def allowed_acquire(self, execution: str, key: str) -> frozenset[bool]:
        """What an ``AcquireEnd`` of ``execution`` on ``key`` may say right now."""
        out: frozenset[bool] = frozenset()
        for _, allowed in self._allowed_per_state(execution, key):
            out |= allowed
        return out

    def _acquire_why(self, ev: AcquireEnd, state: _State) -> str:
        place = self._place(ev.execution, ev.key)
        where = self._where(place)
        slot = _get(state, place)
        if ev.acquired and isinstance(slot, _Held):
            who = "it already" if slot.holder == ev.execution else slot.holder
            return (
                f"{ev.execution} acquired {ev.key} {where} although {who} held it there "
                f"since #{slot.since} and no expiry followed"
            )
        how = slot.note if isinstance(slot, _Free) else "nobody had taken it"
        alone = " and no other attempt overlapped" if self.sem.acquire == "select-write" else ""
        return f"{ev.execution} was refused {ev.key} {where} although it was free ({how}){alone}"

    def _on_acquire_end(self, i: int, ev: AcquireEnd) -> Mismatch | None:
        per_state = self._allowed_per_state(ev.execution, ev.key)
        allowed: frozenset[bool] = frozenset()
        for _, a in per_state:
            allowed |= a
        mismatch: Mismatch | None = None
        acquired = ev.acquired and ev.error is None
        if ev.error is not None:
            # Every built-in acquire returns a bool: redis SET NX, memcached ADD and
            # LocMemCache.add cannot fail on a held key, and DatabaseCache.add turns a
            # DatabaseError into False (db.py ``_base_set``).
            mismatch = Mismatch(
                i,
                ev.execution,
                _fmt_acquire(allowed),
                f"error {ev.error}",
                f"{ev.execution}'s acquire of {ev.key} raised {ev.error}; "
                f"a {self.sem.backend} acquire returns a bool",
            )
            fits = list(self._states)
        else:
            fits = [s for s, a in per_state if acquired in a]
            if not fits:
                mismatch = Mismatch(
                    i,
                    ev.execution,
                    _fmt_acquire(allowed),
                    f"acquired={acquired}",
                    self._acquire_why(ev, self._states[0]),
                )
                fits = list(self._states)
        if acquired:
            place = self._place(ev.execution, ev.key)
            begin = self._open.get(ev.execution, (ev.key, i))[1]
            ghost = self._vanished_row(ev.execution, ev.key, begin, i)
            held = [_put(s, place, _Held(ev.execution, i)) for s in fits]
            fits = held + ([_put(s, place, _Free(ghost)) for s in fits] if ghost else [])
            self._held[(ev.execution, ev.key)] = (begin, i)
        self._states = _dedupe(fits)
        self._close_attempt(ev.execution, i)
        return mismatch

    def _vanished_row(self, execution: str, key: str, begin: int, end: int) -> str | None:
        """DatabaseCache.add over an expired row runs ``UPDATE ... WHERE cache_key = %s``
        and returns True whatever the row count (db.py ``_base_set``). If another
        execution's release DELETEd the row between this add's SELECT and its UPDATE,
        the add "acquires" and stores nothing: the key stays free. On
        cookbook-db-postgres/prefork/c2: t4 SELECTs an expired row, t5 takes and releases
        it, t4's UPDATE matches no row, and t6's INSERT acquires too."""
        # PostgreSQL only: under READ COMMITTED the parked add holds no lock after its
        # SELECT. SQLite's deferred transaction keeps a SHARED lock, so the other's
        # commit cannot go through in between (not seen there; a run would say).
        if self.sem.acquire != "select-write" or self.sem.database != "postgres":
            return None
        expiries = self._expiries.get(key, [])
        for at, who in self._deletes.get(key, []):
            # the UPDATE path needs a row that had expired and stayed (an add's SELECT
            # saw it), then a delete inside this add's window
            if begin < at < end and who != execution and any(x < at for x in expiries):
                return (
                    f"{execution}'s add at #{end} may have UPDATEd the row {who}'s release "
                    f"deleted at #{at}: acquired, nothing stored"
                )
        return None

    def _close_attempt(self, execution: str, index: int) -> None:
        if execution in self._open:
            key, begin = self._open.pop(execution)
            self._closed.append((execution, key, begin, index))
        self._begin_states.pop(execution, None)

    # --- release ------------------------------------------------------------------------

    def _read_clock(self, execution: str, key: str) -> tuple[_Clock, str]:
        """The cookbook releases only ``if monotonic() < timeout_at`` with ``timeout_at``
        taken *before* ``cache.add`` (docs/tutorials/task-cookbook.rst); the suite's
        clock jumps at every expiry move (tasks/locks/__init__.py: time comes from
        ``resources.clock()``). So an expiry after the successful ``AcquireEnd`` surely
        stops the delete; one inside the acquire window (the lease itself was taken
        after it) may or may not, depending on when the lock read the clock."""
        begin, end = self._held.get((execution, key), (self._index, self._index))
        seen = self._expiries.get(key, [])
        after = [x for x in seen if x > end]
        if after:
            return "keep", f"its clock saw the expiry at #{after[0]}"
        during = [x for x in seen if begin < x < end]
        if during:
            return "either", f"the expiry at #{during[0]} came inside its acquire"
        return "delete", "no expiry since it acquired"

    def _on_release_begin(self, ev: ReleaseBegin) -> None:
        if self.sem.release == "unchecked-delete":
            self._clock[(ev.execution, ev.key)] = self._read_clock(ev.execution, ev.key)

    def _on_release_end(self, i: int, ev: ReleaseEnd) -> Mismatch | None:
        observed = (
            OK
            if ev.error is None
            else NOT_OWNED
            if "LockNotOwned" in ev.error
            else f"error {ev.error}"
        )
        if (ev.execution, ev.key) not in self._held:
            self._clock.pop((ev.execution, ev.key), None)
            return Mismatch(
                i,
                ev.execution,
                NO_RELEASE,
                observed,
                f"{ev.execution} released {ev.key} without holding it: only an execution "
                "whose acquire returned True releases",
            )
        place = self._place(ev.execution, ev.key)
        if self.sem.release == "unchecked-delete":
            mismatch = self._unchecked_delete(i, ev, place, observed)
        else:
            mismatch = self._token_checked(i, ev, place, observed)
        del self._held[(ev.execution, ev.key)]
        return mismatch

    def _unchecked_delete(
        self, i: int, ev: ReleaseEnd, place: _Place, observed: str
    ) -> Mismatch | None:
        # The cookbook's ``cache.delete(lock_id)`` (docs/tutorials/task-cookbook.rst):
        # no ownership check, so it deletes whoever holds the key now — the race when
        # the holder paused between its clock check and the delete.
        read = self._clock.pop((ev.execution, ev.key), None)
        clock, reason = read if read is not None else self._read_clock(ev.execution, ev.key)
        nxt: list[_State] = []
        for s in self._states:
            if clock in ("keep", "either"):
                nxt.append(s)
            if clock in ("delete", "either"):
                slot = _get(s, place)
                if isinstance(slot, _Held) and slot.holder != ev.execution:
                    note = (
                        f"{ev.execution}'s release deleted it at #{i} while {slot.holder} held it"
                    )
                else:
                    note = f"{ev.execution} released it at #{i}"
                nxt.append(_put(s, place, _Free(note)))
        if clock in ("delete", "either"):
            self._deletes.setdefault(ev.key, []).append((i, ev.execution))
        self._states = _dedupe(nxt)
        if observed == OK:
            return None
        return Mismatch(
            i,
            ev.execution,
            OK,
            observed,
            f"{ev.execution}'s release of {ev.key} raised: the cookbook's cache.delete "
            f"reports nothing ({reason})",
        )

    def _token_checked(
        self, i: int, ev: ReleaseEnd, place: _Place, observed: str
    ) -> Mismatch | None:
        # redis-py Lock.release runs LUA_RELEASE_SCRIPT (redis/lock.py): delete only if
        # the key still holds our token, else raise LockNotOwnedError.
        def outcome(s: _State) -> str:
            slot = _get(s, place)
            return OK if isinstance(slot, _Held) and slot.holder == ev.execution else NOT_OWNED

        allowed = {outcome(s) for s in self._states}
        fits = [s for s in self._states if outcome(s) == observed]
        mismatch = None
        if not fits:
            slot = _get(self._states[0], place)
            where = self._where(place)
            if isinstance(slot, _Held) and slot.holder == ev.execution:
                why = (
                    f"{ev.execution}'s release of {ev.key} failed ({observed}) although it "
                    f"held it {where} since #{slot.since} and no expiry followed"
                )
            else:
                now = (
                    f"{slot.holder} held it since #{slot.since}"
                    if isinstance(slot, _Held)
                    else slot.note
                    if isinstance(slot, _Free)
                    else "nobody held it"
                )
                why = (
                    f"{ev.execution}'s release of {ev.key} gave {observed} although its "
                    f"lease was gone ({now}): the token check must raise LockNotOwnedError"
                )
            mismatch = Mismatch(i, ev.execution, " or ".join(sorted(allowed)), observed, why)
            fits = list(self._states)
        if observed == OK:
            fits = [_put(s, place, _Free(f"{ev.execution} released it at #{i}")) for s in fits]
        self._states = _dedupe(fits)
        return mismatch

    # --- faults and time ------------------------------------------------------------------

    def _on_expired(self, i: int, ev: Expired) -> None:
        # Redis PEXPIREAT / memcached touch -1 delete the entry; DatabaseCache keeps the
        # row with expires in the past (db.py: an add UPDATEs it); LocMemCache keeps it
        # until touched (locmem.py ``_has_expired``). Every one of them lets an add in.
        stays = " (the row stays)" if self.sem.expired_row_stays else ""
        nxt = []
        for s in self._states:
            for place, slot in s:
                if place[1] == ev.key and isinstance(slot, _Held):
                    s = _put(s, place, _Free(f"{slot.holder}'s lease expired at #{i}{stays}"))
            nxt.append(s)
        self._states = _dedupe(nxt)
        self._expiries.setdefault(ev.key, []).append(i)

    def _erase(self, i: int, processes: set[str]) -> None:
        # LocMemCache's ``_caches`` is a module global (locmem.py): it dies with the
        # process. Server-side entries outlive their holder until they expire.
        if self.sem.scope != "process" or not processes:
            return
        nxt = []
        for s in self._states:
            for place, slot in s:
                if place[0] in processes and isinstance(slot, _Held):
                    s = _put(s, place, _Free(f"{place[0]} died at #{i} and its memory with it"))
            nxt.append(s)
        self._states = _dedupe(nxt)

    # --- the loop ------------------------------------------------------------------------

    def step(self, index: int, event: Event) -> Mismatch | None:
        self._index = index
        erased = self.executions.processes_erased(event)
        for dead in self.executions.observe(index, event):
            self._close_attempt(dead, index)  # a killed add never committed anything
        self._erase(index, erased)
        if isinstance(event, Expired):
            self._on_expired(index, event)
        elif isinstance(event, AcquireBegin):
            self._close_attempt(event.execution, index)
            self._open[event.execution] = (event.key, index)
            if self.sem.acquire == "select-write":
                self._begin_states[event.execution] = list(self._states)
        elif isinstance(event, AcquireEnd):
            return self._on_acquire_end(index, event)
        elif isinstance(event, ReleaseBegin):
            self._on_release_begin(event)
        elif isinstance(event, ReleaseEnd):
            return self._on_release_end(index, event)
        # Submitted, Started, Point, Paused, Resumed, InvoiceCreated, Finished,
        # InvoiceCount: no effect on the lock state.
        return None


def check_lock_model(sem: LockSemantics | None, events: Sequence[Event]) -> list[Mismatch]:
    """Every AcquireEnd / ReleaseEnd whose outcome the lock's semantics do not allow.
    A plug-in lock (``sem`` None) has no model: nothing to check."""
    if sem is None:
        return []
    model = LockModel(sem)
    out = []
    for i, ev in enumerate(events):
        m = model.step(i, ev)
        if m is not None:
            out.append(m)
    return out


def allowed_acquire(sem: LockSemantics, events: Sequence[Event], index: int) -> frozenset[bool]:
    """What the ``AcquireEnd`` at ``events[index]`` was allowed to say, given what came
    before it (for timelines: "expected acquired=False")."""
    ev = events[index]
    if not isinstance(ev, AcquireEnd):
        raise ValueError(f"event #{index} is {ev.describe()}, not an AcquireEnd")
    model = LockModel(sem)
    for i in range(index):
        model.step(i, events[i])
    model._index = index
    return model.allowed_acquire(ev.execution, ev.key)
