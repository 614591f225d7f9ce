"""Beat: which periodic sends one to three ``celery beat`` processes may make, and must.

A scenario runs ``beats`` real beat processes with one scheduler, every schedule
entry due once per period (``PERIOD`` seconds of the scenario clock, a *slot*), and
the clock moved only by the scenario (``advance``). Two schedulers:

- ``persistent``: Celery's default ``PersistentScheduler`` (celery/beat.py). No lock:
  each process keeps its entries in its own memory (shelve ``writeback=True``) and
  reads its schedule file once, in ``setup_schedule``, which saves it at once. Each
  send first sets the entry's ``last_run_at`` in memory (``Scheduler.tick`` calls
  ``reserve`` before ``apply_entry``); the file is saved again only when
  ``should_sync()``: once soon after start (``_last_sync`` is unset: the loop's check
  after its first sleep, or the first send's), then once ``sync_every`` (180 s) has
  passed or ``beat_sync_every`` tasks were sent (0 here: off). The runs record every
  save (``BeatSaved``) and the model takes them as observed. A SIGKILL after an
  unsaved send and a restart on the same file sends that tick again
  (celery-semantics.md 8, 8a; docs ``userguide/periodic-tasks.rst``: run one
  scheduler only; celery #2856 closed "this is how beat works"). ``shared_file``:
  every beat on one file; each still reads it only at start.
- ``redbeat``: celery-redbeat's ``RedBeatScheduler`` (redbeat/schedulers.py). The
  entries' ``last_run_at`` live in Redis (``meta``), written when an entry is sent
  (``reserve`` -> ``_next_instance``, inside ``apply_async``). A lock (redis-py
  ``Lock``, token-checked) is taken in ``beat_init``; a standby retries every loop
  interval. The holder extends it at the start of each ``tick`` and, once it lost it,
  dies there with ``LockNotOwnedError`` (#230). A tick loads the due entries first
  (``schedule``) and sends them after: a holder held up between the two past the
  lock's timeout sends what it loaded even if the new holder sent it already
  (inferred, celery-semantics.md 8a: the runs here measure it).
- ``django``: django-celery-beat's ``DatabaseScheduler`` (django_celery_beat/
  schedulers.py) on the run's PostgreSQL, the schedule one ``PeriodicTask`` row per
  entry, created at slot 0 with an empty ``last_run_at`` (read as its
  ``date_changed``: ``ModelEntry.__init__``). No lock (#229 closed; #337, #576 open;
  duplicate sends #558, celery #7577). Each process reads every row at start (the
  first ``schedule`` read), again only when ``PeriodicTasks.last_change`` moved
  (``schedule_changed``: nothing here saves a row that way once the beats run) or
  five minutes passed (``SCHEDULE_SYNC_MAX_INTERVAL``), and otherwise keeps the
  entries in memory; a send sets ``last_run_at`` and ``total_run_count`` there first
  (``reserve`` -> ``ModelEntry.__next__``) and marks the entry dirty. ``sync`` saves
  the dirty entries' rows (``ModelEntry.save``: those two fields over the row) when
  ``should_sync()`` (as for ``persistent``), and before every re-read. The runs record
  every row saved (``BeatWrote``) and re-read (``BeatReloaded``); the model checks that
  a save writes what the beat's memory holds and that a re-read comes only after five
  minutes, and, at the end, that the rows (``BeatRow``) hold the last saves.

``mismatches`` replays a history and reports every step the scheduler's code does not
allow (a send of an entry that was not due for that beat, a standby that took a lock
someone held, a holder that kept ticking without its lock, a broker holding another
number of messages than were sent). Then the properties:

- ``one-send-per-tick``: no entry's due tick is sent twice (at most once);
- ``every-tick-sent``: every tick a beat that may send (any persistent beat, the
  redbeat lock holder) completed at slot n sent every entry due at n (at least once,
  while some beat runs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from model.history import (
    BeatAsleep,
    BeatDue,
    BeatEvent,
    BeatExited,
    BeatLocked,
    BeatQueued,
    BeatReloaded,
    BeatRow,
    BeatSaved,
    BeatSent,
    BeatStarted,
    BeatTick,
    BeatWrote,
    ClockAdvanced,
    Event,
    Expired,
    Killed,
)
from model.invariants import Violation
from model.verdict import Mismatch, Prediction

Scheduler = Literal["persistent", "redbeat", "django"]
Faults = Literal["none", "kill", "pause"]
SCHEDULERS: tuple[Scheduler, ...] = ("persistent", "redbeat", "django")
FAULTS: tuple[Faults, ...] = ("none", "kill", "pause")
SCHEDULER_CLASS = {
    "persistent": "celery.beat:PersistentScheduler",
    "redbeat": "redbeat.RedBeatScheduler",
    "django": "django_celery_beat.schedulers:DatabaseScheduler",
}
PERIOD = 60  # seconds of the scenario clock per slot: every entry is due once a slot
CREATED = 0  # the slot the django rows are created at (their date_changed)
FULL_READ = 300  # django_celery_beat SCHEDULE_SYNC_MAX_INTERVAL: seconds between re-reads
ENTRIES = ("e1",)
AT_MOST_ONCE = "one-send-per-tick"
AT_LEAST_ONCE = "every-tick-sent"
PROPERTIES = {
    AT_MOST_ONCE: "no due tick of an entry is sent twice",
    AT_LEAST_ONCE: "every due tick of every entry is sent while a beat that may send runs",
}


@dataclass(frozen=True)
class BeatConfig:
    """``beats`` processes of ``scheduler``; ``faults``: what the scenario may do to
    them (kill: SIGKILL and restart; pause: SIGSTOP and SIGCONT); for redbeat, the
    lock's timeout passes (``expire``) only under a killed or paused holder."""

    scheduler: Scheduler
    beats: int
    faults: Faults = "none"
    shared_file: bool = False

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}: choose one of {SCHEDULERS}")
        if self.faults not in FAULTS:
            raise ValueError(f"unknown faults {self.faults!r}: choose one of {FAULTS}")
        if not 1 <= self.beats <= 3:
            raise ValueError(f"beats must be 1 to 3, got {self.beats}")
        if self.shared_file and (self.scheduler != "persistent" or self.beats < 2):
            raise ValueError("a shared schedule file needs two or more persistent beats")

    def label(self) -> str:
        shared = "/shared" if self.shared_file else ""
        return f"{self.scheduler}/b{self.beats}{shared}/{self.faults}"

    def as_dict(self) -> dict[str, object]:
        return {
            "scheduler": self.scheduler, "beats": self.beats, "faults": self.faults,
            "shared_file": self.shared_file,
        }  # fmt: skip

    def file_of(self, beat: str) -> str:
        """The schedule file a beat (``b2``, ``b2'``) reads and saves."""
        return "shared" if self.shared_file else role(beat)


def parse_beat_label(label: str) -> BeatConfig:
    m = re.fullmatch(r"([a-z]+)/b(\d)(/shared)?/([a-z]+)", label)
    if not m or m[1] not in SCHEDULERS or m[4] not in FAULTS:
        raise ValueError(
            f"a beat config reads '<{'|'.join(SCHEDULERS)}>/bN[/shared]/<{'|'.join(FAULTS)}>', "
            f"got {label!r}"
        )
    return BeatConfig(m[1], int(m[2]), m[4], bool(m[3]))


def role(beat: str) -> str:
    """``b1'`` -> ``b1``: the beat a restarted process stands in for."""
    return beat.rstrip("'")


def clock(slot: int) -> str:
    """A slot as the scenario clock's time, ``00:01`` for slot 1."""
    minutes = slot * PERIOD // 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _row(last: int | None, runs: int | None) -> str:
    """A django row's two saved fields, as the timeline writes them."""
    return f"last_run_at {'empty' if last is None else clock(last)}, {runs} run(s)"


# --- the model ------------------------------------------------------------------------------


@dataclass
class _Beat:
    phase: str = "booting"  # booting | lock | acquiring | ticking | asleep | exiting | dead
    last: dict[str, int] = field(default_factory=dict)  # persistent, django: in memory
    runs: dict[str, int] = field(default_factory=dict)  # django: total_run_count in memory
    dirty: set[str] = field(default_factory=set)  # django: sent since its last sync
    loaded: int = 0  # django: the slot it last read every row at
    view: dict[str, int] = field(default_factory=dict)  # redbeat: what its tick loaded
    pending: tuple[str, int] | None = None  # (entry, due) it is about to send


def mismatches(config: BeatConfig, events: Sequence[Event]) -> list[Mismatch]:
    """Every step of the history the scheduler's code does not allow."""
    out: list[Mismatch] = []
    slot = 0
    beats: dict[str, _Beat] = {}
    saved: dict[str, dict[str, int]] = {}  # persistent: schedule file -> last_run_at
    redis: dict[str, int] = {}  # redbeat: entry -> last_run_at in Redis
    rows: dict[str, tuple[int | None, int]] = dict.fromkeys(ENTRIES, (None, 0))  # django
    holder: str | None = None  # redbeat: the process whose token the lock holds
    sent: dict[str, int] = {}
    redbeat = config.scheduler == "redbeat"
    django = config.scheduler == "django"
    scheduler = SCHEDULER_CLASS[config.scheduler].rpartition(".")[2].rpartition(":")[2]

    def load(b: _Beat) -> None:
        """Every row read: an empty last_run_at is the row's date_changed."""
        b.loaded, b.dirty = slot, set()
        for name, (last, runs) in rows.items():
            b.last[name] = CREATED if last is None else last
            b.runs[name] = runs

    def bad(i: int, expected: str, observed: str, why: str) -> None:
        out.append(Mismatch(i, expected, observed, why))

    for i, e in enumerate(events):
        who = e.beat if isinstance(e, BeatEvent) else ""
        b = beats.get(who) if who else None
        if isinstance(e, BeatEvent) and not isinstance(e, BeatStarted) and b is None:
            bad(i, "events of started beats only", e.describe(), "no BeatStarted before it")
            continue
        if b is not None and b.phase == "exiting" and not isinstance(e, BeatExited):
            bad(i, f"{who} to exit", e.describe(),
                "redbeat's tick extends its lock first and raises LockNotOwnedError once "
                "the lock is not its own (redbeat/schedulers.py tick, #230)")  # fmt: skip
            b.phase, b.view = "ticking", dict(redis)  # it went on: judge the rest so
        if isinstance(e, ClockAdvanced):
            if e.slot != slot + 1:
                bad(i, f"slot {slot + 1}", f"slot {e.slot}", "the clock moves one slot a move")
            slot = e.slot
        elif isinstance(e, BeatStarted):
            b = beats[e.beat] = _Beat(phase="booting" if redbeat else "ticking")
            if redbeat:
                for name in ENTRIES:  # a new entry's last_run_at is now (hsetnx meta)
                    redis.setdefault(name, slot)
            elif django:  # setup_schedule's first read of the schedule reads every row
                load(b)
            else:  # setup_schedule reads the file, creates what is missing, saves
                f = saved.setdefault(config.file_of(e.beat), {})
                b.last = {name: f.get(name, slot) for name in ENTRIES}
        elif isinstance(e, BeatSaved) and b is not None:
            if redbeat or django:
                bad(i, "no schedule file saved", "a save", f"{scheduler} keeps no schedule file")
            saved[config.file_of(e.beat)] = dict(b.last)
        elif isinstance(e, BeatWrote) and b is not None:
            mine = (b.last.get(e.entry), b.runs.get(e.entry))
            if not django:
                bad(i, "no row saved", "a row saved", f"{scheduler} keeps no database rows")
            elif e.entry not in b.dirty:
                bad(i, f"no row of {e.entry} saved", "saved",
                    "sync saves only the entries sent since its last sync (_dirty)")  # fmt: skip
            elif (e.last, e.runs) != mine:
                bad(i, f"{_row(*mine)}: its memory", _row(e.last, e.runs),
                    "ModelEntry.save writes its last_run_at and total_run_count")  # fmt: skip
            rows[e.entry] = (e.last, e.runs)
            b.dirty.discard(e.entry)
        elif isinstance(e, BeatReloaded) and b is not None:
            if not django:
                bad(i, "no re-read", "every row re-read", f"{scheduler} keeps no database rows")
            elif (slot - b.loaded) * PERIOD < FULL_READ:
                bad(i, f"no re-read before {clock(b.loaded + FULL_READ // PERIOD)}",
                    f"a re-read at {clock(slot)}",
                    "nothing changes a row's schedule once the beats run; DatabaseScheduler "
                    f"re-reads every {FULL_READ}s (SCHEDULE_SYNC_MAX_INTERVAL)")  # fmt: skip
            elif b.dirty:
                bad(i, f"{sorted(b.dirty)} saved first", "a re-read",
                    "the schedule property calls sync() before all_as_schedule()")  # fmt: skip
            load(b)
        elif isinstance(e, BeatLocked) and b is not None:
            if not redbeat:
                bad(i, "no lock", "a lock", f"{scheduler} takes no lock")
            elif holder is not None:
                bad(i, "the lock refused", f"{e.beat} acquired it",
                    f"{holder} holds it and it has not expired")  # fmt: skip
            holder = e.beat
            b.phase, b.view = "ticking", dict(redis)  # the loop's first tick follows
        elif isinstance(e, BeatTick) and b is not None:
            if b.phase == "lock":
                b.phase = "acquiring"
            elif b.phase == "asleep":
                if redbeat and holder != e.beat:
                    b.phase = "exiting"
                else:
                    b.phase, b.view = "ticking", dict(redis)
            else:
                bad(i, f"{e.beat} asleep", f"woken while {b.phase}", "a tick wakes a sleeper")
        elif isinstance(e, BeatAsleep) and b is not None:
            if e.gate == "lock":
                if not redbeat:
                    bad(i, "no lock wait", "a lock wait", f"{scheduler} takes no lock")
                elif holder is None and b.phase in ("acquiring", "booting"):
                    bad(i, f"{e.beat} to take the free lock", "it waits again",
                        "nobody holds the lock: redis-py's Lock.acquire takes it")  # fmt: skip
                b.phase = "lock"
            else:
                if b.pending is not None:
                    bad(i, f"{b.pending[0]} sent", "the beat asleep", "it was about to send")
                b.phase = "asleep"
        elif isinstance(e, BeatDue) and b is not None:
            if e.due != slot:
                bad(i, f"due at slot {slot}", f"due at slot {e.due}", "decided at this clock")
            if b.phase != "ticking":
                bad(i, f"{e.beat} ticking", f"a send while {b.phase}", "sends happen in a tick")
            basis = b.view if redbeat else b.last
            last = basis.get(e.entry, slot)
            if last + 1 > e.due:
                where = "in Redis when its tick loaded" if redbeat else "in its memory"
                bad(i, f"{e.entry} not due for {e.beat}", "sent",
                    f"its last_run_at {where} is {clock(last)}, the period {PERIOD}s")  # fmt: skip
            if not redbeat:
                b.last[e.entry] = e.due  # Scheduler.tick reserves before it sends
            if django:  # reserve: ModelEntry.__next__, and the entry is dirty
                b.runs[e.entry] = b.runs.get(e.entry, 0) + 1
                b.dirty.add(e.entry)
            b.pending = (e.entry, e.due)
        elif isinstance(e, BeatSent) and b is not None:
            if b.pending != (e.entry, e.due):
                bad(i, f"the send {e.beat} was about to make ({b.pending})",
                    f"{e.entry} due {e.due}", "every send follows its decision")  # fmt: skip
            b.pending = None
            sent[e.entry] = sent.get(e.entry, 0) + 1
            if redbeat:  # reserve in apply_async: last_run_at = now, in Redis
                redis[e.entry] = e.at
        elif isinstance(e, Killed) and e.process in beats:
            beats[e.process].phase, beats[e.process].pending = "dead", None
        elif isinstance(e, BeatExited) and b is not None:
            if b.phase != "exiting":
                bad(i, f"{e.beat} running", f"it exited ({e.error})",
                    "a beat exits by itself only once its redbeat lock is gone")  # fmt: skip
            b.phase, b.pending = "dead", None
        elif isinstance(e, Expired) and redbeat:
            holder = None
        elif isinstance(e, BeatQueued) and e.count != sent.get(e.entry, 0):
            bad(i, f"{sent.get(e.entry, 0)} messages of {e.entry} on the broker",
                    f"{e.count}", "each send publishes one message")  # fmt: skip
        elif isinstance(e, BeatRow) and (e.last, e.runs) != rows.get(e.entry):
            row_last, runs = rows.get(e.entry, (None, 0))
            bad(i, f"{e.entry}'s row: {_row(row_last, runs)}", _row(e.last, e.runs),
                "the row holds the last save of it (ModelEntry.save), or nothing")  # fmt: skip
    return out


# --- the properties ---------------------------------------------------------------------------


def duplicates(events: Sequence[Event]) -> list[Violation]:
    """``one-send-per-tick``: a second send of one entry's tick due at one slot."""
    first: dict[tuple[str, int], tuple[int, str]] = {}
    out = []
    for i, e in enumerate(events):
        if not isinstance(e, BeatSent):
            continue
        key = (e.entry, e.due)
        if key in first:
            j, other = first[key]
            out.append(
                Violation(
                    "one_send_per_tick",
                    i,
                    (other, e.beat),
                    f"{e.entry}'s tick due {clock(e.due)} sent twice: by {other} (#{j}) "
                    f"and by {e.beat}",
                )
            )
        else:
            first[key] = (i, e.beat)
    return out


def missed(config: BeatConfig, events: Sequence[Event]) -> list[Violation]:
    """``every-tick-sent``: a tick a beat that may send began and ended at slot n
    (woken, or just holding the lock, then asleep again, the clock unmoved) leaves
    every entry due at n sent. An interval schedule does not catch up (celery/
    schedules.py ``schedule.is_due``: one send however many periods passed), so a send
    decided at slot ``due`` and made at ``at`` covers every tick from ``due`` to ``at``:
    the ticks that came due while it was held are sent with it."""
    slot = 0
    began: dict[str, int] = {}  # beat -> slot its current tick began at
    holder: str | None = None
    created: dict[str, int] = {}
    sent: set[tuple[str, int]] = set()
    out = []
    for i, e in enumerate(events):
        if isinstance(e, ClockAdvanced):
            slot = e.slot
        elif isinstance(e, BeatStarted):
            began[e.beat] = slot  # its first tick follows its start
            for name in ENTRIES:
                created.setdefault(name, slot)
        elif isinstance(e, BeatLocked):
            holder, began[e.beat] = e.beat, slot
        elif isinstance(e, Expired):
            holder = None
        elif isinstance(e, BeatTick):
            began[e.beat] = slot
        elif isinstance(e, BeatSent):
            sent.update((e.entry, n) for n in range(e.due, e.at + 1))
        elif isinstance(e, BeatAsleep) and e.gate == "tick" and began.pop(e.beat, None) == slot:
            if config.scheduler == "redbeat" and holder != e.beat:
                continue
            for name in ENTRIES:
                if slot > created.get(name, slot) and (name, slot) not in sent:
                    out.append(
                        Violation(
                            "every_tick_sent",
                            i,
                            (e.beat,),
                            f"{e.beat} ticked at {clock(slot)} and {name}, due then, was "
                            "never sent",
                        )
                    )
    return out


def violations(config: BeatConfig, prop: str, events: Sequence[Event]) -> list[Violation]:
    if prop == AT_MOST_ONCE:
        return duplicates(events)
    if prop == AT_LEAST_ONCE:
        return missed(config, events)
    raise ValueError(f"unknown beat property {prop!r}: choose one of {list(PROPERTIES)}")


def _rule(config: BeatConfig, prop: str) -> tuple[Prediction, str]:
    if prop == AT_LEAST_ONCE:
        return "holds", (
            "a beat that may send (any PersistentScheduler; redbeat's lock holder) sends "
            "every entry its tick finds due: is_due against its last_run_at, which only a "
            "send advances (celery/beat.py Scheduler.tick, redbeat tick); a send held past "
            "later due times covers them (interval schedules do not catch up)"
        )
    if config.scheduler == "persistent":
        if config.beats > 1:
            return "violated", (
                "PersistentScheduler takes no lock: each process keeps its entries in its "
                "own memory and reads its file only at start, so each sends every due tick "
                + ("even on one shared file " if config.shared_file else "")
                + "(docs userguide/periodic-tasks.rst; celery #2856)"
            )
        if config.faults == "kill":
            return "violated", (
                "last_run_at is saved at the first send, then only after sync_every (180 s) "
                "or beat_sync_every tasks (celery/beat.py should_sync): a SIGKILL after an "
                "unsaved send and a restart on the same file send that tick again"
            )
        return "holds", "one beat, never killed: its memory says what it sent"
    if config.scheduler == "django":
        if config.beats > 1:
            return "violated", (
                "DatabaseScheduler takes no lock (django-celery-beat #229 closed; #337, #576 "
                "open; duplicates #558, celery #7577): each process keeps last_run_at in "
                "memory and reads the rows at start, on a schedule change and every 5 "
                "minutes only, so each sends every due tick, paused or not"
            )
        if config.faults == "kill":
            return "violated", (
                "sync saves a sent entry's row (last_run_at, total_run_count) only when "
                "should_sync(): the loop's first, then after sync_every (180 s) (celery/beat.py; "
                "DatabaseScheduler.sync, ModelEntry.save): a SIGKILL after an unsaved send "
                "and a restart, which reads last_run_at from the row, send that tick again"
            )
        return "holds", "one beat, never killed: its memory says what it sent"
    if config.beats > 1 and config.faults == "pause":
        return "violated", (
            "(inferred) a holder paused inside a tick, after loading its due entries and "
            "before sending them, past the lock's timeout: the standby takes the lock and "
            "sends them, then the resumed holder sends what it loaded (redbeat/schedulers.py "
            "tick extends the lock only at its start)"
        )
    return "holds", (
        "one sender at a time: the lock's holder; a killed holder's lock stays until it "
        "expires and the next holder reads last_run_at from Redis"
    )


def expected_verdict(config: BeatConfig, prop: str) -> Prediction:
    return _rule(config, prop)[0]


def why(config: BeatConfig, prop: str) -> str:
    return _rule(config, prop)[1]
