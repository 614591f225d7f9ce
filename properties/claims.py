"""The rows of the semantics reference, each confirmed or refuted by a real run.

``../shared/reference/celery-semantics.md`` sections 1-5 say what Celery and kombu do
with a message when workers die; some rows are read from the code and marked
"(inferred)". Each claim here is one fixed scenario on real workers and a real broker
and a check of what the run showed. The verdict goes into the findings: ``confirmed``,
``refuted`` (the run wins; the model follows the run), or ``not tested`` with the
reason. ``probe`` in a move list reads the broker at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from properties import claim_checks as checks
from properties.claim_checks import Check

FAULTS = ("kill", "kill-main", "vt", "term", "quit", "drop", "ctimeout", "idle")


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
    heartbeat: float | None = None  # amqp: the worker's broker_heartbeat, seconds

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
                "heartbeat": c.heartbeat,
                "fault": ",".join(m for m in c.moves if m.split()[0] in FAULTS) or "none",
            },
            "verdict": self.verdict,
            "detail": self.detail,
            "scenario": self.scenario,
            "timeline": self.timeline,
        }


CLAIMS: tuple[Claim, ...] = (
    Claim("ack.early", "1", "task_acks_late=False acks when the pool accepts the job",
          "early", ("submit",), checks.acked_at_start),
    Claim("ack.early.solo", "1", "solo pool: task_acks_late=False acks only after the "
          "task returns (the deferred ack waits for the event loop the task blocks), so "
          "a worker killed mid-task gives the message back", "early",
          ("submit", "step t1", "kill t1", "vt"), checks.back_after_kill, pool="solo"),
    Claim("ack.late", "1", "task_acks_late=True acks after the task returns",
          "late", ("submit",), checks.acked_after_return),
    Claim("child-kill.early", "2", "a prefork child killed under an early-acked task: "
          "never redelivered, FAILURE(WorkerLostError) stored",
          "early", ("submit", "step t1", "kill t1"), checks.lost_with_failure),
    Claim("child-kill.late", "2", "acks_late, child killed: the message is still acked, "
          "FAILURE stored, not redelivered", "late", ("submit", "step t1", "kill t1"),
          checks.acked_lost_with_failure),
    Claim("child-kill.requeue", "2,3", "acks_late + reject_on_worker_lost, child killed: "
          "rejected with requeue, delivered again (redelivered=True), no FAILURE stored",
          "late+requeue", ("submit", "step t1", "kill t1"), checks.requeued_no_failure),
    Claim("main-kill.early", "2,5", "main process killed under an early-acked task: lost, "
          "nothing stored after STARTED", "early", ("submit", "step t1", "kill-main t1"),
          checks.main_kill_lost_nothing_written),
    Claim("main-kill.children", "2", "a prefork main process killed takes its children "
          "with it (the run in the child ends with it)", "late",
          ("submit", "step t1", "kill-main t1"), checks.children_die),
    Claim("main-kill.amqp", "2,3", "AMQP: a dead worker's unacked message comes back as "
          "soon as the broker sees the connection close, flagged redelivered", "late",
          ("submit", "step t1", "kill-main t1"), checks.back_without_vt, brokers=("amqp",)),
    Claim("main-kill.redis", "2,3", "Redis: a dead worker's unacked message comes back "
          "only after the visibility timeout, to a consuming worker, flagged redelivered",
          "late", ("submit", "step t1", "kill-main t1", "vt"), checks.back_only_after_vt,
          brokers=("redis",)),
    Claim("acks-on-failure", "1", "acks_late, a run that fails: acked "
          "(task_acks_on_failure_or_timeout=True, the default), FAILURE stored, not "
          "redelivered", "late", ("submit",), checks.failed_then("acked"), retries=1,
          max_retries=0),
    Claim("acks-on-failure.off", "1", "acks_late with task_acks_on_failure_or_timeout="
          "False, a run that fails: rejected without requeue, FAILURE stored, not "
          "redelivered", "late", ("submit",), checks.failed_then("rejected"), retries=1,
          max_retries=0, acks_on_failure=False),
    Claim("cold-shutdown.early", "2", "cold shutdown (SIGQUIT) under a running "
          "early-acked task: terminated and stored as RETRY, yet nothing is published "
          "again: lost, shown as RETRY", "early", ("submit", "step t1", "quit"),
          checks.lost_shown_retry, inferred=True),
    Claim("cold-shutdown.late", "2", "cold shutdown (SIGQUIT) under a running acks_late "
          "task: terminated, not acked, no state written; the message goes back and "
          "runs again, flagged redelivered (on Redis the restore at shutdown may not "
          "finish: then after the visibility timeout)", "late",
          ("submit", "step t1", "quit"), checks.cold_back, inferred=True),
    Claim("retry.publish-first", "4", "self.retry() publishes the new message (same task "
          "id, retries+1) before it raises Retry: the retry can start while the first run "
          "has not returned", "late", ("submit",), checks.retry_published_first, retries=1),
    Claim("retry.two-lineages", "4", "acks_late + reject_on_worker_lost, a child killed "
          "after self.retry() published and before the original is acked: the original "
          "comes back next to its retry; two lineages run under one task id",
          "late+requeue", ("submit", "step t1", "step t1", "step t1", "kill t1"),
          checks.two_lineages, retries=1, inferred=True),
    Claim("connection-loss", "2", "broker connection lost under a running acks_late task: "
          "the run goes on, its ack fails, and the message, given back by the broker, "
          "runs a second time (celery #4671)", "late", ("submit", "step t1", "drop"),
          checks.run_twice("failed"), brokers=("amqp",)),
    Claim("connection-loss.redis", "2,3", "Redis: broker connection lost under a running "
          "acks_late task: the worker restores its unacked message as it closes the dead "
          "channel, so it runs a second time while the first run goes on; the first "
          "run's ack succeeds (and clears the entry both deliveries share)", "late",
          ("submit", "step t1", "drop"), checks.run_twice("succeeded"), brokers=("redis",)),
    Claim("prefetch.reserved", "1", "early ack: a message waiting in the worker's "
          "prefetch buffer (reserved, not started) is not acked, so it comes back to "
          "another worker when the worker dies (Redis: after the visibility timeout)",
          "early", ("submit", "step t1", "submit", "kill-main t1", "vt"), checks.reserved_back,
          tasks=2, concurrency=1, reserve=True),
    Claim("cancel-on-connection-loss", "1,2", "worker_cancel_long_running_tasks_on_"
          "connection_loss: broker connection lost under a running acks_late task: the run "
          "is terminated and stored as RETRY; the message runs again", "late",
          ("submit", "step t1", "drop"), checks.cancelled_then_again, cancel_on_loss=True),
    Claim("dedup", "1", "worker_deduplicate_successful_tasks: a redelivered acks_late "
          "message whose stored state is SUCCESS is skipped, not run again (here the "
          "redelivery after a lost connection waits for the one slot until the first run "
          "has stored SUCCESS)", "late", ("submit", "step t1", "drop"), checks.skipped_once,
          concurrency=1, dedup=True),
    Claim("eta-beyond-vt", "3", "Redis: a message waiting for its countdown longer than "
          "the visibility timeout is restored and delivered again: both deliveries run",
          "early", ("submit", "vt", "eta"), checks.twice_after_eta, brokers=("redis",),
          countdown=2.0),
    Claim("chord-fails", "5", "a header task that fails with WorkerLostError (its "
          "child killed) fails the chord: the body never runs and is stored as FAILURE",
          "early", ("submit", "step t1", "kill t1"), checks.chord_failed, chord=True),
    Claim("child-written-not-accepted", "2", "a job written to a prefork child that has "
          "not yet accepted it is put back when the child dies and given to another "
          "child: no WorkerLostError, no second delivery", "early", ("submit", "kill t1"),
          checks.given_to_another_child, gate="accept"),
    Claim("kill-between-accept-and-ack", "2", "a kill of the main process between "
          "\"child accepted\" and \"parent acked\" redelivers a partly run early-ack "
          "task (Redis: after the visibility timeout)", "early",
          ("submit", "step t1", "step t1", "kill-main t1", "vt"), checks.partly_run_again,
          gate="accepted", inferred=True),
    Claim("success-not-overwritten", "4", "Redis result backend (key-value): the retry "
          "stores SUCCESS before the first run's RETRY is written; the backend keeps "
          "SUCCESS (one broker: the backend decides)", "late", checks.RETRY_WINS,
          checks.success_kept, brokers=("redis",), retries=1),
    Claim("success-not-overwritten.db", "4", "database result backend (SQLAlchemy, "
          "PostgreSQL) keeps SUCCESS too, unlike what the reference says: the first run's "
          "RETRY, written after the retry stored SUCCESS, is ignored (Celery 5.7 "
          "celery/backends/database/__init__.py DatabaseBackend._store_result locks the "
          "row and returns on SUCCESS; one broker: the backend decides)", "late",
          checks.RETRY_WINS, checks.success_kept, brokers=("redis",), retries=1, results="db"),
    Claim("consumer-timeout", "3", "RabbitMQ consumer_timeout closes the channel of a "
          "delivery left unacked longer (here 2 s, on a private node: the setting is "
          "node-wide in 3.10) and requeues it; Celery 5.7 calls that channel error "
          "unrecoverable and shuts the worker down warm (celery #6760): the first run "
          "goes on and the message runs again, flagged redelivered, on the next worker; "
          "the first run's ack raises nothing in the worker (RabbitMQ refuses it: "
          "unknown delivery tag), and the worker exits",
          "late", ("submit", "ctimeout"), checks.run_twice("succeeded"), brokers=("amqp",),
          consumer_timeout_ms=2000),
    Claim("warm-shutdown", "2", "warm shutdown (SIGTERM): the worker finishes the running "
          "task, acks it, and exits; nothing runs twice", "late",
          ("submit", "step t1", "term"), checks.finished_once),
    Claim("warm-shutdown.heartbeat", "2", "warm shutdown (SIGTERM) while the running "
          "acks_late task outlasts the broker's heartbeat timeout (2 s heartbeats here): "
          "the main process keeps sending heartbeats while the pool drains, so RabbitMQ "
          "keeps the connection; the task finishes, is acked, and nothing runs twice "
          "(Celery before 5.6.1 sent none: RabbitMQ closed the connection and requeued "
          "the running task, celery #5998)", "late", ("submit", "step t1", "term", "idle"),
          checks.finished_once, brokers=("amqp",), heartbeat=2.0),
    Claim("vt.running", "3", "Redis: an acks_late task still running when the visibility "
          "timeout passes is delivered and run again", "late",
          ("submit", "step t1", "vt"), checks.again_while_running, brokers=("redis",),
          pool="threads"),
    Claim("vt.same-tag", "3", "Redis: a restored message keeps its delivery tag: two "
          "unacked deliveries share one unacked entry", "late",
          ("submit", "step t1", "vt", "probe"), checks.one_entry_two_deliveries,
          brokers=("redis",), pool="threads", inferred=True),
    Claim("vt.ack-clears", "3", "Redis: the first holder's ack removes the entry the "
          "second delivery shares (kombu #1800): a later timeout cannot bring it back",
          "late", ("submit", "step t1", "vt", "step t1", "step t1", "probe"),
          checks.first_ack_clears_entry, brokers=("redis",), pool="threads", inferred=True),
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
