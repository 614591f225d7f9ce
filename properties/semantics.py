"""The rows of the semantics reference, each confirmed or refuted by a real run.

``../shared/reference/celery-semantics.md`` sections 1-5 say what Celery and kombu do
with a message when workers die; some rows are read from the code and marked
"(inferred)". Each claim here is one fixed scenario on real workers and a real broker
and a check of what the run showed. The verdict goes into the findings: ``confirmed``,
``refuted`` (the run wins; the model follows the run), or ``not tested`` with the
reason. ``probe`` in a move list reads the broker at that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.cluster import Cluster
from harness.runs.delivery import DeliveryRun, DeliveryRunner
from model import history as h
from model.config import DeliveryConfig
from properties.timeline import render

FAULTS = ("kill", "kill-main", "vt", "term", "quit", "drop", "ctimeout")
Check = Callable[[Sequence[h.Event], list[int]], str | None]  # None: confirmed; else why not


@dataclass(frozen=True)
class Claim:
    id: str
    section: str
    text: str
    ack: str  # early | late | late+requeue
    moves: tuple[str, ...]
    check: Check
    brokers: tuple[str, ...] = ("redis", "amqp")
    pool: str = "prefork"
    inferred: bool = False
    retries: int = 0  # the task asks to be retried this many times
    max_retries: int = 3  # 0 with retries=1: the run fails (MaxRetriesExceededError)
    acks_on_failure: bool = True  # task_acks_on_failure_or_timeout
    tasks: int = 1
    concurrency: int | None = None  # default: 1 for solo, else 2
    dedup: bool = False  # worker_deduplicate_successful_tasks
    cancel_on_loss: bool = False  # worker_cancel_long_running_tasks_on_connection_loss
    countdown: float = 0.0  # every task is sent with this countdown (an ETA)
    reserve: bool = False  # submit may fill the prefetch buffer (no free slot needed)
    chord: bool = False  # t1 is the header of a chord (its body: chord(t1))
    gate: str | None = None  # hold t1's job once inside the pool: accept | accepted
    results: str = "redis"  # the result backend: redis | db
    consumer_timeout_ms: int | None = None  # amqp: RabbitMQ's, on a private node

    @property
    def slots(self) -> int:
        return self.concurrency or (1 if self.pool == "solo" else 2)


@dataclass
class ClaimResult:
    claim: Claim
    broker: str
    verdict: str  # confirmed | refuted | harness error
    detail: str
    timeline: str = ""
    scenario: str = ""
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        c = self.claim
        return {
            "claim": c.id,
            "section": c.section,
            "statement": c.text + (" (inferred)" if c.inferred else ""),
            "config": {
                "broker": self.broker,
                "pool": c.pool,
                "concurrency": c.slots,
                "acks_late": c.ack != "early",
                "reject_on_worker_lost": c.ack == "late+requeue",
                "acks_on_failure_or_timeout": c.acks_on_failure,
                "deduplicate_successful_tasks": c.dedup,
                "cancel_long_running_tasks_on_connection_loss": c.cancel_on_loss,
                "countdown": c.countdown,
                "chord": c.chord,
                "gate": c.gate or "none",
                "result_backend": c.results,
                "consumer_timeout_ms": c.consumer_timeout_ms,
                "fault": ",".join(m for m in c.moves if m.split()[0] in FAULTS) or "none",
            },
            "verdict": self.verdict,
            "detail": self.detail,
            "scenario": self.scenario,
            "timeline": self.timeline,
        }


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


def _acked_at_start(ev: Sequence[h.Event], _: list[int]) -> str | None:
    acked = _idx(ev, lambda e: isinstance(e, h.Acked))
    stepped = _idx(ev, lambda e: isinstance(e, h.Point))
    if acked < 0 or (stepped >= 0 and acked > stepped):
        return "the message was not acked before the run went on"
    return None


def _back_after_kill(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    if len(runs) != 2 or not runs[1].redelivered:
        return f"runs {[(r.execution, r.redelivered) for r in runs]}: the message was lost"
    return None


def _acked_after_return(ev: Sequence[h.Event], _: list[int]) -> str | None:
    acked = _idx(ev, lambda e: isinstance(e, h.Acked))
    done = _idx(ev, lambda e: isinstance(e, h.Finished))
    if acked < 0 or acked < done:
        return f"acked at #{acked}, the run returned at #{done}"
    return None


def _lost_with_failure(ev: Sequence[h.Event], _: list[int]) -> str | None:
    if len(_runs(ev)) != 1:
        return f"{len(_runs(ev))} runs: it was delivered again"
    if _final(ev) != "FAILURE":
        return f"final state {_final(ev)}, not FAILURE"
    return None


def _acked_lost_with_failure(ev: Sequence[h.Event], p: list[int]) -> str | None:
    if not _of(ev, h.Acked):
        return "the message was never acked"
    return _lost_with_failure(ev, p)


def _requeued_no_failure(ev: Sequence[h.Event], _: list[int]) -> str | None:
    rejected = [e for e in _of(ev, h.Rejected) if e.requeue]
    runs = _runs(ev)
    if not rejected:
        return "no reject with requeue"
    if len(runs) != 2 or not runs[1].redelivered:
        return f"runs {[(r.execution, r.redelivered) for r in runs]}"
    if "FAILURE" in _states(ev):
        return "FAILURE was written although the message was requeued"
    return None


def _main_kill_lost_nothing_written(ev: Sequence[h.Event], _: list[int]) -> str | None:
    if len(_runs(ev)) != 1:
        return f"{len(_runs(ev))} runs: it was delivered again"
    if _states(ev) != ["STARTED"] or _final(ev) != "STARTED":
        return f"states {_states(ev)}, final {_final(ev)}"
    return None


def _back_without_vt(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    if _of(ev, h.VisibilityTimeout):
        return "a visibility timeout was needed"
    if len(runs) != 2 or not runs[1].redelivered or runs[1].process.split(".")[0] != "w2":
        return f"runs {[(r.execution, r.process, r.redelivered) for r in runs]}"
    return None


def _back_only_after_vt(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    vt = _idx(ev, lambda e: isinstance(e, h.VisibilityTimeout))
    if len(runs) != 2 or vt < 0:
        return f"{len(runs)} runs, visibility timeout at #{vt}"
    second = ev.index(runs[1])
    if second < vt or not runs[1].redelivered:
        return f"the second run started at #{second}, the visibility timeout passed at #{vt}"
    return None


def _finished_once(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    done = [e for e in _of(ev, h.Finished) if e.status == "ok"]
    if len(runs) != 1 or len(done) != 1 or not _of(ev, h.Acked) or _final(ev) != "SUCCESS":
        return f"runs {[r.execution for r in runs]}, finished {len(done)}, final {_final(ev)}"
    return None


def _children_die(ev: Sequence[h.Event], _: list[int]) -> str | None:
    ended = {e.execution for e in _of(ev, h.Finished)}
    first = _runs(ev)[0].execution if _runs(ev) else "?"
    return None if first not in ended else f"{first} finished although its worker was killed"


def _again_while_running(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    if len(runs) < 2:
        return "not delivered again"
    second = ev.index(runs[1])
    first_done = _idx(ev, lambda e: isinstance(e, h.Finished) and e.execution == "t1")
    return None if 0 <= second < first_done else "the second run did not overlap the first"


def _one_entry_two_deliveries(_: Sequence[h.Event], probes: list[int]) -> str | None:
    if probes != [1]:
        return f"the unacked hash held {probes} entries for two unacked deliveries"
    return None


def _first_ack_clears_entry(ev: Sequence[h.Event], probes: list[int]) -> str | None:
    if probes != [0]:
        return f"after the first run's ack the unacked hash held {probes} entries"
    return None


def _lost_shown_retry(ev: Sequence[h.Event], _: list[int]) -> str | None:
    if len(_runs(ev)) != 1:
        return f"{len(_runs(ev))} runs: it was delivered again"
    if "RETRY" not in _states(ev) or _final(ev) != "RETRY":
        return f"states {_states(ev)}, final {_final(ev)}"
    return None


def _cold_back(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    if len(runs) != 2 or not runs[1].redelivered:
        return f"runs {[(r.execution, r.redelivered) for r in runs]}: the message was lost"
    if _of(ev, h.Acked) and ev.index(_of(ev, h.Acked)[0]) < ev.index(runs[1]):
        return "the cancelled run's message was acked"
    if "FAILURE" in _states(ev) or "RETRY" in _states(ev):
        return f"states {_states(ev)}: a cancelled acks_late run wrote a state"
    return None


def _failed_then(settle: str) -> Check:
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


def _retry_published_first(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = _runs(ev)
    retry = next((r for r in runs if r.level == 1), None)
    first_end = _idx(ev, lambda e: isinstance(e, h.Finished) and e.execution == runs[0].execution)
    if retry is None:
        return f"no run at level 1: runs {[(r.execution, r.level) for r in runs]}"
    if not 0 <= ev.index(retry) < first_end:
        return f"the retry started at #{ev.index(retry)}, the first run raised at #{first_end}"
    return None


def _two_lineages(ev: Sequence[h.Event], _: list[int]) -> str | None:
    runs = [(r.level, r.redelivered) for r in _runs(ev)]
    if (0, True) not in runs or not any(level == 1 for level, _ in runs):
        return f"runs (level, redelivered): {runs}: one lineage"
    return None


def _run_twice(ack: str) -> Check:
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


def _reserved_back(ev: Sequence[h.Event], _: list[int]) -> str | None:
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


def _cancelled_then_again(ev: Sequence[h.Event], _: list[int]) -> str | None:
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


def _skipped_once(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """The redelivery reaches the worker after the first run stored SUCCESS and is
    skipped: one run, no second execution."""
    runs, skipped = _runs(ev), _of(ev, h.Skipped)
    got = [e.redelivered for e in _of(ev, h.Received) if e.task == "t1"]
    if got != [False, True]:
        return f"receipts (redelivered): {got}: no redelivery to skip"
    if len(runs) != 1 or len(skipped) != 1 or _final(ev) != "SUCCESS":
        return f"runs {[r.execution for r in runs]}, skipped {len(skipped)}, final {_final(ev)}"
    return None


def _twice_after_eta(ev: Sequence[h.Event], _: list[int]) -> str | None:
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


def _chord_failed(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """The header's child was lost: the header FAILED, and with it the chord."""
    header, body = _final(ev), _final(ev, "chord(t1)")
    if len(_runs(ev)) != 1 or header != "FAILURE" or body != "FAILURE":
        return f"{len(_runs(ev))} runs, header {header}, chord body {body}"
    return None


def _given_to_another_child(ev: Sequence[h.Event], _: list[int]) -> str | None:
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


def _partly_run_again(ev: Sequence[h.Event], _: list[int]) -> str | None:
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
_RETRY_WINS = (
    "submit", "step t1", "step t1", "step t1",
    "step t1#2", "step t1#2", "step t1#2", "step t1",
)  # fmt: skip


def _success_kept(ev: Sequence[h.Event], _: list[int]) -> str | None:
    """The retry (level 1) stored SUCCESS, then the first run's RETRY was written:
    the backend kept SUCCESS."""
    states, final = _states(ev), _final(ev)
    if "SUCCESS" not in states or "RETRY" not in states[states.index("SUCCESS") :]:
        return f"states written {states}: no RETRY after SUCCESS"
    if final != "SUCCESS":
        return f"final state {final}: the RETRY replaced SUCCESS"
    return None


CLAIMS: tuple[Claim, ...] = (
    Claim("ack.early", "1", "task_acks_late=False acks when the pool accepts the job",
          "early", ("submit",), _acked_at_start),
    Claim("ack.early.solo", "1", "solo pool: task_acks_late=False acks only after the "
          "task returns (the deferred ack waits for the event loop the task blocks), so "
          "a worker killed mid-task gives the message back", "early",
          ("submit", "step t1", "kill t1", "vt"), _back_after_kill, pool="solo"),
    Claim("ack.late", "1", "task_acks_late=True acks after the task returns",
          "late", ("submit",), _acked_after_return),
    Claim("child-kill.early", "2", "a prefork child killed under an early-acked task: "
          "never redelivered, FAILURE(WorkerLostError) stored",
          "early", ("submit", "step t1", "kill t1"), _lost_with_failure),
    Claim("child-kill.late", "2", "acks_late, child killed: the message is still acked, "
          "FAILURE stored, not redelivered", "late", ("submit", "step t1", "kill t1"),
          _acked_lost_with_failure),
    Claim("child-kill.requeue", "2,3", "acks_late + reject_on_worker_lost, child killed: "
          "rejected with requeue, delivered again (redelivered=True), no FAILURE stored",
          "late+requeue", ("submit", "step t1", "kill t1"), _requeued_no_failure),
    Claim("main-kill.early", "2,5", "main process killed under an early-acked task: lost, "
          "nothing stored after STARTED", "early", ("submit", "step t1", "kill-main t1"),
          _main_kill_lost_nothing_written),
    Claim("main-kill.children", "2", "a prefork main process killed takes its children "
          "with it (the run in the child ends with it)", "late",
          ("submit", "step t1", "kill-main t1"), _children_die),
    Claim("main-kill.amqp", "2,3", "AMQP: a dead worker's unacked message comes back as "
          "soon as the broker sees the connection close, flagged redelivered", "late",
          ("submit", "step t1", "kill-main t1"), _back_without_vt, brokers=("amqp",)),
    Claim("main-kill.redis", "2,3", "Redis: a dead worker's unacked message comes back "
          "only after the visibility timeout, to a consuming worker, flagged redelivered",
          "late", ("submit", "step t1", "kill-main t1", "vt"), _back_only_after_vt,
          brokers=("redis",)),
    Claim("acks-on-failure", "1", "acks_late, a run that fails: acked "
          "(task_acks_on_failure_or_timeout=True, the default), FAILURE stored, not "
          "redelivered", "late", ("submit",), _failed_then("acked"), retries=1,
          max_retries=0),
    Claim("acks-on-failure.off", "1", "acks_late with task_acks_on_failure_or_timeout="
          "False, a run that fails: rejected without requeue, FAILURE stored, not "
          "redelivered", "late", ("submit",), _failed_then("rejected"), retries=1,
          max_retries=0, acks_on_failure=False),
    Claim("cold-shutdown.early", "2", "cold shutdown (SIGQUIT) under a running "
          "early-acked task: terminated and stored as RETRY, yet nothing is published "
          "again: lost, shown as RETRY", "early", ("submit", "step t1", "quit"),
          _lost_shown_retry, inferred=True),
    Claim("cold-shutdown.late", "2", "cold shutdown (SIGQUIT) under a running acks_late "
          "task: terminated, not acked, no state written; the message goes back and "
          "runs again, flagged redelivered (on Redis the restore at shutdown may not "
          "finish: then after the visibility timeout)", "late",
          ("submit", "step t1", "quit"), _cold_back, inferred=True),
    Claim("retry.publish-first", "4", "self.retry() publishes the new message (same task "
          "id, retries+1) before it raises Retry: the retry can start while the first run "
          "has not returned", "late", ("submit",), _retry_published_first, retries=1),
    Claim("retry.two-lineages", "4", "acks_late + reject_on_worker_lost, a child killed "
          "after self.retry() published and before the original is acked: the original "
          "comes back next to its retry; two lineages run under one task id",
          "late+requeue", ("submit", "step t1", "step t1", "step t1", "kill t1"),
          _two_lineages, retries=1, inferred=True),
    Claim("connection-loss", "2", "broker connection lost under a running acks_late task: "
          "the run goes on, its ack fails, and the message, given back by the broker, "
          "runs a second time (celery #4671)", "late", ("submit", "step t1", "drop"),
          _run_twice("failed"), brokers=("amqp",)),
    Claim("connection-loss.redis", "2,3", "Redis: broker connection lost under a running "
          "acks_late task: the worker restores its unacked message as it closes the dead "
          "channel, so it runs a second time while the first run goes on; the first "
          "run's ack succeeds (and clears the entry both deliveries share)", "late",
          ("submit", "step t1", "drop"), _run_twice("succeeded"), brokers=("redis",)),
    Claim("prefetch.reserved", "1", "early ack: a message waiting in the worker's "
          "prefetch buffer (reserved, not started) is not acked, so it comes back to "
          "another worker when the worker dies (Redis: after the visibility timeout)",
          "early", ("submit", "step t1", "submit", "kill-main t1", "vt"), _reserved_back,
          tasks=2, concurrency=1, reserve=True),
    Claim("cancel-on-connection-loss", "1,2", "worker_cancel_long_running_tasks_on_"
          "connection_loss: broker connection lost under a running acks_late task: the run "
          "is terminated and stored as RETRY; the message runs again", "late",
          ("submit", "step t1", "drop"), _cancelled_then_again, cancel_on_loss=True),
    Claim("dedup", "1", "worker_deduplicate_successful_tasks: a redelivered acks_late "
          "message whose stored state is SUCCESS is skipped, not run again (here the "
          "redelivery after a lost connection waits for the one slot until the first run "
          "has stored SUCCESS)", "late", ("submit", "step t1", "drop"), _skipped_once,
          concurrency=1, dedup=True),
    Claim("eta-beyond-vt", "3", "Redis: a message waiting for its countdown longer than "
          "the visibility timeout is restored and delivered again: both deliveries run",
          "early", ("submit", "vt", "eta"), _twice_after_eta, brokers=("redis",),
          countdown=2.0),
    Claim("chord-fails", "5", "a header task that fails with WorkerLostError (its "
          "child killed) fails the chord: the body never runs and is stored as FAILURE",
          "early", ("submit", "step t1", "kill t1"), _chord_failed, chord=True),
    Claim("child-written-not-accepted", "2", "a job written to a prefork child that has "
          "not yet accepted it is put back when the child dies and given to another "
          "child: no WorkerLostError, no second delivery", "early", ("submit", "kill t1"),
          _given_to_another_child, gate="accept"),
    Claim("kill-between-accept-and-ack", "2", "a kill of the main process between "
          "\"child accepted\" and \"parent acked\" redelivers a partly run early-ack "
          "task (Redis: after the visibility timeout)", "early",
          ("submit", "step t1", "step t1", "kill-main t1", "vt"), _partly_run_again,
          gate="accepted", inferred=True),
    Claim("success-not-overwritten", "4", "Redis result backend (key-value): the retry "
          "stores SUCCESS before the first run's RETRY is written; the backend keeps "
          "SUCCESS (one broker: the backend decides)", "late", _RETRY_WINS,
          _success_kept, brokers=("redis",), retries=1),
    Claim("success-not-overwritten.db", "4", "database result backend (SQLAlchemy, "
          "PostgreSQL) keeps SUCCESS too, unlike what the reference says: the first run's "
          "RETRY, written after the retry stored SUCCESS, is ignored (Celery 5.7 "
          "celery/backends/database/__init__.py DatabaseBackend._store_result locks the "
          "row and returns on SUCCESS; one broker: the backend decides)", "late",
          _RETRY_WINS, _success_kept, brokers=("redis",), retries=1, results="db"),
    Claim("consumer-timeout", "3", "RabbitMQ consumer_timeout closes the channel of a "
          "delivery left unacked longer (here 2 s, on a private node: the setting is "
          "node-wide in 3.10) and requeues it; Celery 5.7 calls that channel error "
          "unrecoverable and shuts the worker down warm (celery #6760): the first run "
          "goes on and the message runs again, flagged redelivered, on the next worker; "
          "the first run's ack raises nothing in the worker (RabbitMQ refuses it: "
          "unknown delivery tag), and the worker exits",
          "late", ("submit", "ctimeout"), _run_twice("succeeded"), brokers=("amqp",),
          consumer_timeout_ms=2000),
    Claim("warm-shutdown", "2", "warm shutdown (SIGTERM): the worker finishes the running "
          "task, acks it, and exits; nothing runs twice", "late",
          ("submit", "step t1", "term"), _finished_once),
    Claim("vt.running", "3", "Redis: an acks_late task still running when the visibility "
          "timeout passes is delivered and run again", "late",
          ("submit", "step t1", "vt"), _again_while_running, brokers=("redis",),
          pool="threads"),
    Claim("vt.same-tag", "3", "Redis: a restored message keeps its delivery tag: two "
          "unacked deliveries share one unacked entry", "late",
          ("submit", "step t1", "vt", "probe"), _one_entry_two_deliveries,
          brokers=("redis",), pool="threads", inferred=True),
    Claim("vt.ack-clears", "3", "Redis: the first holder's ack removes the entry the "
          "second delivery shares (kombu #1800): a later timeout cannot bring it back",
          "late", ("submit", "step t1", "vt", "step t1", "step t1", "probe"),
          _first_ack_clears_entry, brokers=("redis",), pool="threads", inferred=True),
)  # fmt: skip


@dataclass(frozen=True)
class Untested:
    """A row of sections 1-5 no fixed run checks yet, and why: listed in the findings
    so the report shows the whole reference, not only what passed."""

    id: str
    section: str
    text: str
    reason: str

    def row(self) -> dict[str, Any]:
        return {
            "claim": self.id, "section": self.section, "statement": self.text,
            "config": {}, "verdict": "not tested", "detail": self.reason,
            "scenario": "", "timeline": "",
        }  # fmt: skip


# Every row of sections 1-5 has a run now; a row added to the reference that cannot be
# run yet goes here, with the reason.
UNTESTED: tuple[Untested, ...] = ()


def _entries(cluster: Cluster, runner: DeliveryRunner) -> int:
    """Unacked entries of this scenario's messages (not of earlier ones)."""
    mine = cluster.controller.messages
    return sum(1 for _tag, tid, _level in runner.broker.entries() if tid in mine)


def check(cluster: Cluster, claim: Claim, broker: str) -> ClaimResult:
    config = DeliveryConfig(
        broker, claim.pool, claim.slots, acks_late=claim.ack != "early",  # type: ignore[arg-type]
        reject_on_worker_lost=claim.ack == "late+requeue", retries=claim.retries,
        max_retries=claim.max_retries, acks_on_failure=claim.acks_on_failure,
        dedup=claim.dedup, cancel_on_loss=claim.cancel_on_loss, countdown=claim.countdown,
        chord=claim.chord, gate=claim.gate, results=claim.results,
        consumer_timeout_ms=claim.consumer_timeout_ms,
    )  # fmt: skip
    allowed = {"kill", "vt", "term", "quit", "drop", "ctimeout"}
    allowed |= {"reserve"} if claim.reserve else set()
    runner = DeliveryRunner(cluster, config, frozenset(allowed))
    # AMQP has no visibility timeout: what Redis waits for it for comes back at once.
    queue = [m for m in claim.moves if not (m == "vt" and broker == "amqp")]
    probes: list[int] = []
    played: list[str] = []

    def choose(enabled: list[str]) -> str:
        while queue and queue[0] == "probe":
            queue.pop(0)
            played.append("probe")
            probes.append(_entries(cluster, runner))
        if queue:
            move = queue.pop(0)
            if move not in enabled:
                raise RuntimeError(f"move {move!r} is not enabled; enabled: {enabled}")
        else:  # run what is left to its end, the simplest way
            calm = [m for m in enabled if m == "submit" or m.startswith("step")]
            move = calm[0] if calm else enabled[0]
        played.append(move)
        return move

    shape = f"{claim.pool}/{config.concurrency}"
    label = f"{claim.id} {broker}/{claim.ack}/{shape}: " + "; ".join(claim.moves)
    try:
        run: DeliveryRun = runner.run(claim.tasks, choose)
        while queue and queue[0] == "probe":  # a probe after the last move
            queue.pop(0)
            probes.append(_entries(cluster, runner))
    except Exception as exc:
        return ClaimResult(claim, broker, "harness error", f"{type(exc).__name__}: {exc}",
                           render(cluster.controller.history.events), label)  # fmt: skip
    why_not = claim.check(run.history.events, probes)
    verdict = "confirmed" if why_not is None else "refuted"
    return ClaimResult(
        claim, broker, verdict, why_not or "as stated", render(run.history.events), label
    )
