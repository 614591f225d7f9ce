"""The checks of the semantics rows: each reads a fixed run's history (and the broker
probes it took) and says why the row's claim does not hold, or None if it does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from model import history as h

Check = Callable[[Sequence[h.Event], list[int]], str | None]  # None: confirmed; else why not


def _of(events: Sequence[h.Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def _idx(events: Sequence[h.Event], pred: Callable[[h.Event], bool]) -> int:
    return next((i for i, e in enumerate(events) if pred(e)), -1)


def _runs(events: Sequence[h.Event], task: str = "t1") -> list[h.Started]:
    return [e for e in _of(events, h.Started) if e.task == task]


def _final(events: Sequence[h.Event], task: str = "t1") -> str:
    return next((e.state for e in _of(events, h.FinalState) if e.task == task), "?")


def _states(events: Sequence[h.Event], task: str = "t1") -> list[str]:
    return [e.state for e in _of(events, h.StateWritten) if e.task == task]


def acked_at_start(ev: Sequence[h.Event], _: list[int]) -> str | None:
    acked = _idx(ev, lambda e: isinstance(e, h.Acked))
    stepped = _idx(ev, lambda e: isinstance(e, h.Point))
    if acked < 0 or (stepped >= 0 and acked > stepped):
        return "the message was not acked before the run went on"
    return None


def back_after_kill(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    if len(runs) != 2 or not runs[1].redelivered:
        return f"runs {[(r.execution, r.redelivered) for r in runs]}: the message was lost"
    return None


def acked_after_return(ev: Sequence[h.Event], _: list[int]) -> str | None:
    acked = _idx(ev, lambda e: isinstance(e, h.Acked))
    done = _idx(ev, lambda e: isinstance(e, h.Finished))
    if acked < 0 or acked < done:
        return f"acked at #{acked}, the run returned at #{done}"
    return None


def lost_with_failure(ev: Sequence[h.Event], _: list[int]) -> str | None:
    if len(_runs(ev)) != 1:
        return f"{len(_runs(ev))} runs: it was delivered again"
    if _final(ev) != "FAILURE":
        return f"final state {_final(ev)}, not FAILURE"
    return None


def acked_lost_with_failure(ev: Sequence[h.Event], p: list[int]) -> str | None:
    if not _of(ev, h.Acked):
        return "the message was never acked"
    return lost_with_failure(ev, p)


def requeued_no_failure(ev: Sequence[h.Event], _: list[int]) -> str | None:
    rejected = [e for e in _of(ev, h.Rejected) if e.requeue]
    runs = _runs(ev)
    if not rejected:
        return "no reject with requeue"
    if len(runs) != 2:
        return f"runs {[(r.execution, r.redelivered) for r in runs]}"
    if not runs[1].redelivered:
        return "the requeued message came back with redelivered=False"
    if "FAILURE" in _states(ev):
        return "FAILURE was written although the message was requeued"
    return None


def main_kill_lost_nothing_written(ev: Sequence[h.Event], _: list[int]) -> str | None:
    if len(_runs(ev)) != 1:
        return f"{len(_runs(ev))} runs: it was delivered again"
    if _states(ev) != ["STARTED"] or _final(ev) != "STARTED":
        return f"states {_states(ev)}, final {_final(ev)}"
    return None


def back_without_vt(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    if _of(ev, h.VisibilityTimeout):
        return "a visibility timeout was needed"
    if len(runs) != 2 or not runs[1].redelivered or runs[1].process.split(".")[0] != "w2":
        return f"runs {[(r.execution, r.process, r.redelivered) for r in runs]}"
    return None


def back_only_after_vt(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    vt = _idx(ev, lambda e: isinstance(e, h.VisibilityTimeout))
    if len(runs) != 2 or vt < 0:
        return f"{len(runs)} runs, visibility timeout at #{vt}"
    second = ev.index(runs[1])
    if second < vt:
        return f"the second run started at #{second}, the visibility timeout passed at #{vt}"
    if not runs[1].redelivered:
        return "the message restored after the visibility timeout came back with redelivered=False"
    return None


def finished_once(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    done = [e for e in _of(ev, h.Finished) if e.status == "ok"]
    if len(runs) != 1 or len(done) != 1 or not _of(ev, h.Acked) or _final(ev) != "SUCCESS":
        return f"runs {[r.execution for r in runs]}, finished {len(done)}, final {_final(ev)}"
    return None


def children_die(ev: Sequence[h.Event], _: list[int]) -> str | None:
    ended = {e.execution for e in _of(ev, h.Finished)}
    first = _runs(ev)[0].execution if _runs(ev) else "?"
    return None if first not in ended else f"{first} finished although its worker was killed"


def again_while_running(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    if len(runs) < 2:
        return "not delivered again"
    second = ev.index(runs[1])
    first_done = _idx(ev, lambda e: isinstance(e, h.Finished) and e.execution == "t1")
    return None if 0 <= second < first_done else "the second run did not overlap the first"


def one_entry_two_deliveries(_: Sequence[h.Event], probes: list[int]) -> str | None:
    if probes != [1]:
        return f"the unacked hash held {probes} entries for two unacked deliveries"
    return None


def first_ack_clears_entry(ev: Sequence[h.Event], probes: list[int]) -> str | None:
    if probes != [0]:
        return f"after the first run's ack the unacked hash held {probes} entries"
    return None


def lost_shown_retry(ev: Sequence[h.Event], _: list[int]) -> str | None:
    if len(_runs(ev)) != 1:
        return f"{len(_runs(ev))} runs: it was delivered again"
    if "RETRY" not in _states(ev) or _final(ev) != "RETRY":
        return f"states {_states(ev)}, final {_final(ev)}"
    return None


def cold_back(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    if len(runs) != 2 or not runs[1].redelivered:
        return f"runs {[(r.execution, r.redelivered) for r in runs]}: the message was lost"
    if _of(ev, h.Acked) and ev.index(_of(ev, h.Acked)[0]) < ev.index(runs[1]):
        return "the cancelled run's message was acked"
    if "FAILURE" in _states(ev) or "RETRY" in _states(ev):
        return f"states {_states(ev)}: a cancelled acks_late run wrote a state"
    return None


def failed_then(settle: str) -> Check:
    """A run that failed (MaxRetriesExceededError): FAILURE, never redelivered, and its
    delivery ``acked`` or ``rejected`` (without requeue)."""

    def check(ev: Sequence[h.Event], _: list[int]) -> str | None:
        acked, rejected = _of(ev, h.Acked), _of(ev, h.Rejected)
        if len(_runs(ev)) != 1 or _final(ev) != "FAILURE":
            return f"{len(_runs(ev))} runs, final {_final(ev)}"
        if settle == "acked" and (not acked or rejected):
            return f"acked {len(acked)}, rejected {[r.requeue for r in rejected]}"
        if settle == "rejected" and (acked or [r.requeue for r in rejected] != [False]):
            return f"acked {len(acked)}, rejected {[r.requeue for r in rejected]}"
        return None

    return check


def retry_published_first(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    retry = next((r for r in runs if r.level == 1), None)
    first_end = _idx(ev, lambda e: isinstance(e, h.Finished) and e.execution == runs[0].execution)
    if retry is None:
        return f"no run at level 1: runs {[(r.execution, r.level) for r in runs]}"
    if not 0 <= ev.index(retry) < first_end:
        return f"the retry started at #{ev.index(retry)}, the first run raised at #{first_end}"
    return None


def two_lineages(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = [(r.level, r.redelivered) for r in _runs(ev)]
    if (0, True) not in runs or not any(level == 1 for level, _ in runs):
        return f"runs (level, redelivered): {runs}: one lineage"
    return None


def run_twice(ack: str) -> Check:
    """Two runs that both return, the second redelivered while the first still ran;
    the first run's ack ``failed`` or ``succeeded``."""

    def check(ev: Sequence[h.Event], _: list[int]) -> str | None:
        runs = _runs(ev)
        done = [e for e in _of(ev, h.Finished) if e.status == "ok"]
        if len(runs) != 2 or not runs[1].redelivered or len(done) != 2:
            return f"runs {[(r.execution, r.redelivered) for r in runs]}, {len(done)} returned"
        if ev.index(runs[1]) > ev.index(done[0]):
            return "the second run started after the first returned"
        failed = bool(_of(ev, h.AckFailed))
        if failed != (ack == "failed"):
            return f"the first run's ack {'failed' if failed else 'succeeded'}"
        return None

    return check


def reserved_back(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """t1 ran (early-acked: lost with its worker); t2 waited in w1's prefetch buffer,
    was never started there, and came back to w2."""
    got = [(e.worker, e.redelivered) for e in _of(ev, h.Received) if e.task == "t2"]
    runs = _runs(ev, "t2")
    if not got or got[0][0] != "w1":
        return f"t2 was never reserved by w1: receipts {got}"
    if len(_runs(ev)) != 1:
        return f"t1 ran {len(_runs(ev))} times"
    if len(runs) != 1 or not runs[0].process.startswith("w2") or not runs[0].redelivered:
        return f"t2 runs {[(r.process, r.redelivered) for r in runs]}: not given back to w2"
    return None


def cancelled_then_again(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """The running acks_late run is cut short (not returned), RETRY is stored for it,
    and the message runs again, to SUCCESS."""
    runs = _runs(ev)
    first = next((e for e in _of(ev, h.Finished) if e.execution == "t1"), None)
    if first is not None and first.status == "ok":
        return "the first run returned: it was not cancelled"
    if "RETRY" not in _states(ev):
        return f"states {_states(ev)}: no RETRY stored for the cancelled run"
    if len(runs) != 2 or not runs[1].redelivered or _final(ev) != "SUCCESS":
        return f"runs {[(r.execution, r.redelivered) for r in runs]}, final {_final(ev)}"
    return None


def skipped_once(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """The redelivery reaches the worker after the first run stored SUCCESS and is
    skipped: one run, no second execution."""
    runs, skipped = _runs(ev), _of(ev, h.Skipped)
    got = [e.redelivered for e in _of(ev, h.Received) if e.task == "t1"]
    if got != [False, True]:
        return f"receipts (redelivered): {got}: no redelivery to skip"
    if len(runs) != 1 or len(skipped) != 1 or _final(ev) != "SUCCESS":
        return f"runs {[r.execution for r in runs]}, skipped {len(skipped)}, final {_final(ev)}"
    return None


def twice_after_eta(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """Restored while it waited for its ETA: two deliveries of one message, both run."""
    runs = _runs(ev)
    vt = _idx(ev, lambda e: isinstance(e, h.VisibilityTimeout))
    if vt < 0:
        return "no visibility timeout passed"
    if any(ev.index(r) < vt for r in runs):
        return "a run started before the visibility timeout passed (countdown too short?)"
    if len(runs) != 2 or [r.redelivered for r in runs] != [False, True]:
        return f"runs {[(r.execution, r.redelivered) for r in runs]}: not run twice"
    return None


def chord_failed(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """The header's child was lost: the header FAILED, and with it the chord."""
    header, body = _final(ev), _final(ev, "chord(t1)")
    if len(_runs(ev)) != 1 or header != "FAILURE" or body != "FAILURE":
        return f"{len(_runs(ev))} runs, header {header}, chord body {body}"
    return None


def given_to_another_child(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """t1's job, held in a child that had read it but not yet accepted it, was put
    back when that child died and run by another child: one receipt (the broker never
    saw it again), one run, no WorkerLostError."""
    held, killed, runs = _of(ev, h.Held), _of(ev, h.Killed), _runs(ev)
    if not held or not killed or killed[0].process != held[0].process:
        return f"held {[e.process for e in held]}, killed {[e.process for e in killed]}"
    got = [e.redelivered for e in _of(ev, h.Received) if e.task == "t1"]
    if got != [False]:
        return f"receipts (redelivered): {got}: the broker gave it out again"
    if len(runs) != 1 or runs[0].process == held[0].process:
        return f"runs {[(r.execution, r.process) for r in runs]}: not run by another child"
    if "FAILURE" in _states(ev) or _final(ev) != "SUCCESS":
        return f"states {_states(ev)}, final {_final(ev)}"
    return None


def partly_run_again(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """The main process was held after the child's accept and before the early ack;
    the run went on in the child; the worker was killed: the message, never acked,
    ran again on the next worker."""
    held, killed, runs = _of(ev, h.Held), _of(ev, h.Killed), _runs(ev)
    if not held or held[0].gate != "accepted" or not killed:
        return f"held {held}, killed {killed}"
    kill = ev.index(killed[0])
    if any(ev.index(a) < kill for a in _of(ev, h.Acked)):
        return "the message was acked before the kill"
    if not runs or ev.index(runs[0]) > kill:
        return "the first run had not started before the kill"
    if len(runs) != 2 or not runs[1].redelivered or _final(ev) != "SUCCESS":
        return f"runs {[(r.execution, r.redelivered) for r in runs]}, final {_final(ev)}"
    return None


# t1 publishes its retry and stops at ``retried``; the retry (t1#2) runs to SUCCESS;
# then t1 returns and its RETRY is written after that SUCCESS.
RETRY_WINS = (
    "submit", "step t1", "step t1", "step t1",
    "step t1#2", "step t1#2", "step t1#2", "step t1",
)  # fmt: skip


def success_kept(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """The retry (level 1) stored SUCCESS, then the first run's RETRY was written:
    the backend kept SUCCESS."""
    states, final = _states(ev), _final(ev)
    if "SUCCESS" not in states or "RETRY" not in states[states.index("SUCCESS") :]:
        return f"states written {states}: no RETRY after SUCCESS"
    if final != "SUCCESS":
        return f"final state {final}: the RETRY replaced SUCCESS"
    return None
