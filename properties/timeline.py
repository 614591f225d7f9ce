"""A history as a timeline a person can read: who did what, at which point."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from model import history as h


def _line(e: h.Event, where: dict[str, str]) -> tuple[str, str]:
    match e:
        case h.Submitted(task=t):
            return "-", f"submit {t}"
        case h.Started(execution=x, process=p, redelivered=r):
            return x, f"starts in {p}" + (" (redelivered)" if r else "")
        case h.Point(execution=x, name=n):
            return x, f"  at {n}"
        case h.AcquireBegin(execution=x, key=k):
            return x, f"acquire {k} ..."
        case h.AcquireEnd(execution=x, acquired=ok, error=err):
            return x, f"acquire -> {'ACQUIRED' if ok else 'refused'}" + (f" ({err})" if err else "")
        case h.ReleaseBegin(execution=x):
            return x, "release ..."
        case h.ReleaseEnd(execution=x, error=err):
            return x, "release -> " + (f"ERROR {err}" if err else "done")
        case h.InvoiceCreated(execution=x, order=o):
            return x, f"INVOICE created for {o}"
        case h.Finished(execution=x, status=s, error=err):
            return x, f"ends {s}" + (f" ({err})" if err else "")
        case h.Expired(key=k):
            return "-", f"EXPIRE {k} (its TTL elapses now)"
        case h.Killed(process=p):
            return "-", f"KILL {p} (SIGKILL)"
        case h.Paused(process=p):
            return "-", f"PAUSE {p} (SIGSTOP)"
        case h.Resumed(process=p):
            return "-", f"RESUME {p} (SIGCONT)"
        case h.Restarted(worker=w):
            return "-", f"worker {w} restarted"
        case h.InvoiceCount(order=o, count=c):
            return "-", f"invoices for {o}: {c}"
        case h.Received(task=t, worker=w, redelivered=r, level=n):
            extra = ", ".join(
                s for s in (f"retries={n}" if n else "", "redelivered" if r else "") if s
            )
            return "-", f"{w} received {t}" + (f" ({extra})" if extra else "")
        case h.RetryPublished(execution=x, level=n):
            return x, f"RETRY published (retries={n})"
        case h.RetriesExhausted(execution=x):
            return x, "retry refused: max_retries used up"
        case h.EffectDone(execution=x, order=o):
            return x, f"effect for {o} committed"
        case h.VisibilityTimeout():
            return "-", "VISIBILITY TIMEOUT passes (Redis restores unacked messages)"
        case h.Acked(task=t):
            return "-", f"broker: {t} acked"
        case h.AckFailed(task=t, error=why):
            return "-", f"broker: {t} ack FAILED ({why})"
        case h.Skipped(task=t, worker=w):
            return "-", f"{w} SKIPPED {t}: already SUCCESS (deduplicate_successful_tasks)"
        case h.Held(task=t, gate=g, process=p):
            stage = "child, before it tells the parent" if g == "accept" else "main, before it acks"
            return "-", f"{p} HOLDS {t} at {g!r} ({stage})"
        case h.ConsumerTimedOut(worker=w):
            return "-", f"CONSUMER TIMEOUT passes for {w}: RabbitMQ closes its channel"
        case h.ConnectionDropped(worker=w):
            return "-", f"BROKER CONNECTION of {w} DROPPED"
        case h.HeartbeatGap(worker=w, seconds=s):
            return "-", f"{s:g} s pass, {w}'s runs parked: past its heartbeat timeout"
        case h.Rejected(task=t, requeue=r, restored=back):
            if r and not back:
                return "-", f"broker: {t} rejected, requeue asked: nothing left to restore"
            return "-", f"broker: {t} rejected" + (", requeued" if r else "")
        case h.StateWritten(task=t, state=s):
            return "-", f"backend: {t} -> {s}"
        case h.FinalState(task=t, state=s):
            return "-", f"final state of {t}: {s}"
        case h.Shutdown(worker=w, kind=k):
            return "-", f"{k.upper()} SHUTDOWN of {w}"
        case h.Read(task=x, observed=v):
            return x, f"reads value = {v}"
        case h.ReadForUpdate(task=x, observed=v):
            return x, f"reads value = {v} (to add 1)"
        case h.WriteBegin(task=x):
            return x, "write begins"
        case h.Write(task=x, value=v):
            return x, f"writes value = {v}"
        case h.WriteBack(task=x, value=v):
            return x, f"writes back value = {v}"
        case h.Inserted(task=t):
            return "-", f"app: INSERT {t}'s row (transaction open)"
        case h.Published(task=t):
            return "-", f"app: {t} published"
        case h.Committed():
            return "-", "app: COMMIT"
        case h.RolledBack():
            return "-", "app: ROLLBACK"
        case h.Looked(execution=x, found=f):
            return x, "looks up its row -> " + ("found" if f else "NOT FOUND")
        case h.ChildReplaced(old=o, new=n):
            return "-", f"{n} forked in place of {o} (fresh copy of the main process)"
        case h.BeatEvent(beat=b):
            return b, _beat_line(e)
        case h.ClockAdvanced(slot=n):
            return "-", f"CLOCK advances to {_clock(n)}"
        case h.BeatQueued(entry=x, count=c):
            return "-", f"broker: {c} message(s) of {x} queued"
        case h.BeatRow(entry=x, last=last, runs=n):
            return "-", f"database: {x}'s row: last_run_at {_clock_or_empty(last)}, {n} run(s)"
        case h.BodySent(execution=x, task=t):
            return x, f"CHORD BODY {t} published"
        case h.BodyArgs(execution=x, results=r):
            return x, f"body gets {list(r)}"
        case h.Routed(task=t, queue=q, priority=p):
            return "-", f"app: {t} published to {q}" + ("" if p is None else f" (priority {p})")
        case h.SendRefused(task=t, error=err):
            return "-", f"app: sending {t} RAISED {err}"
        case h.RanFrom(execution=x, queue=q):
            return x, f"took its message from queue {q}"
        case h.Stuck(queue=q, count=n):
            return "-", f"broker: {n} message(s) STUCK in queue {q}: no worker consumes it"
        case h.Chained(task=t, after=a):
            return "-", f"chain: {t} after {a}"
        case h.StepSent(execution=x, task=t):
            return x, f"CHAIN STEP {t} published"
        case h.StepArgs(execution=x, args=a):
            return x, f"gets {list(a)}"
    return "-", e.describe()


def _clock(slot: int) -> str:
    from model.beat import clock

    return clock(slot)


def _clock_or_empty(slot: int | None) -> str:
    return "empty" if slot is None else _clock(slot)


def _beat_line(e: h.BeatEvent) -> str:
    """A beat process's event (model/beat.py), in its own lane."""
    match e:
        case h.BeatStarted():
            return "starts its scheduler"
        case h.BeatTick():
            return "tick: woken"
        case h.BeatLocked():
            return "LOCK acquired (redbeat)"
        case h.BeatDue(entry=x, due=d):
            return f"{x} due {_clock(d)}: about to send"
        case h.BeatSent(entry=x, due=d, at=a):
            late = f" at {_clock(a)}" if a != d else ""
            return f"SENT {x} (tick due {_clock(d)}){late}"
        case h.BeatSaved():
            return "schedule file saved"
        case h.BeatWrote(entry=x, last=last, runs=n):
            return f"SAVED {x}'s row: last_run_at {_clock_or_empty(last)}, {n} run(s)"
        case h.BeatReloaded():
            return "re-reads every row"
        case h.BeatAsleep(gate=g):
            return "asleep" + (" (waiting for the lock)" if g == "lock" else "")
        case h.BeatExited(error=err):
            return f"EXITS: {err}"
    return e.describe()


def render(events: Sequence[h.Event], marks: Iterable[int] = ()) -> str:
    """One line per event; ``marks`` flags the events a verdict points at."""
    marked = set(marks)
    where = {e.execution: e.process for e in events if isinstance(e, h.Started)}
    rows = []
    for i, e in enumerate(events):
        who, what = _line(e, where)
        if who != "-" and who in where:
            who = f"{who}@{where[who]}"
        flag = ">>" if i in marked else "  "
        rows.append(f"{flag}{i:>4}  {who:<12} {what}")
    return "\n".join(rows)


# What a lane's event is, for the HTML timeline (properties/report_page.py): faults are
# the nemesis's moves, ``move`` the scenario's own, ``broker`` what the broker or the
# result backend did or saw, ``result`` what is read back at the end; the rest, ``step``,
# is what an execution did.
_FAULTS = (
    h.Killed, h.Paused, h.Resumed, h.Expired, h.VisibilityTimeout, h.ConnectionDropped,
    h.Shutdown, h.Restarted, h.ConsumerTimedOut, h.HeartbeatGap,
)  # fmt: skip
_MOVES = (
    h.Submitted, h.Inserted, h.Published, h.Committed, h.RolledBack, h.ClockAdvanced, h.BeatTick,
    h.Routed, h.SendRefused,
    h.Chained,
)  # fmt: skip
_BROKER = (
    h.Received, h.Acked, h.AckFailed, h.Rejected, h.StateWritten, h.Skipped, h.Held, h.BeatQueued,
    h.Stuck,
)  # fmt: skip
_RESULTS = (h.InvoiceCount, h.FinalState, h.BeatRow)
GLOBAL = "global"  # the lane of what belongs to no one process


def _kind(e: h.Event) -> str:
    for kinds, name in ((_FAULTS, "fault"), (_MOVES, "move"), (_BROKER, "broker")):
        if isinstance(e, kinds):
            return name
    return "result" if isinstance(e, _RESULTS) else "step"


def _lane(e: h.Event, who: str, where: dict[str, str]) -> str:
    """The process an event happened in or to: an execution's process, a fault's
    target, the worker that received, held or forked; else the global lane."""
    if who != "-":
        return getattr(e, "process", None) or where.get(who, who)
    match e:
        case h.Killed(process=p) | h.Paused(process=p) | h.Resumed(process=p):
            return p
        case h.Held(process=p):
            return p
        case h.Received(worker=w) | h.Skipped(worker=w) | h.Shutdown(worker=w):
            return w
        case h.ConnectionDropped(worker=w) | h.ConsumerTimedOut(worker=w):
            return w
        case h.HeartbeatGap(worker=w):
            return w
        case h.Restarted(worker=w):
            return w
        case h.ChildReplaced(new=n):  # the main process forks it
            return n.split(".")[0]
        case h.BeatEvent(beat=b):
            return b
    return GLOBAL


def lanes(events: Sequence[h.Event], marks: Iterable[int] = ()) -> list[dict[str, Any]]:
    """``render``'s lines as data, one per event, each in its process's lane: what the
    HTML report draws (one column per process, like Jepsen's timeline.html)."""
    marked = set(marks)
    where = {e.execution: e.process for e in events if isinstance(e, h.Started)}
    out = []
    for i, e in enumerate(events):
        who, what = _line(e, where)
        out.append(
            {
                "index": i,
                "lane": _lane(e, who, where),
                "who": "" if who == "-" else who,
                "text": what,
                "kind": _kind(e),
                "marked": i in marked,
            }
        )
    return out


def renumbered(text: str) -> str:
    """Blank out what differs between runs by design: the per-example key and order
    ids (invoice:17, o17, state:17, beat17), which count the examples a process ran
    before, and the run id that prefixes every key (``Cluster.run_id``, 6 hex digits)."""
    text = re.sub(r"\b[0-9a-f]{6}-(?=\w)", "RUN-", text)
    return re.sub(r"\b(invoice:|o|state:|beat)\d+\b", r"\1N", text)


# A line of ``render`` that is a broker's or a result backend's report (lane "-").
_REPORT = re.compile(r"^(..)\s*\d+  -\s+((?:broker|backend): .*)$")


def canonical(text: str) -> str:
    """``renumbered``, with each run of adjacent broker and backend reports in a fixed
    order: they arrive over several connections (an ack on the worker's broker channel,
    a state from whichever process wrote it), so two runs of one scenario can list
    them in either order (seen: ``t2 acked`` and ``t2 -> STARTED`` swapped). What a
    soak compares, so that order is not counted as a change; the rest keeps its place."""
    out: list[str] = []
    block: list[str] = []
    for line in renumbered(text).splitlines():
        m = _REPORT.match(line)
        if m:
            block.append(f"{m.group(1)}      -            {m.group(2)}")
            continue
        out += sorted(block)
        block = []
        out.append(line)
    return "\n".join(out + sorted(block))


def anonymous(text: str) -> str:
    """``renumbered``, and which pool child (w1.c2) the parent handed a task to when
    several were idle: Celery's choice. Outcomes — who acquired, what was created —
    are left as they are."""
    return re.sub(r"\b(w\d+)\.c\d+'*", r"\1.cN", renumbered(text))
