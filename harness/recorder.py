"""Reports -> history events: what each report from a worker adds to the history.

Two kinds of report, one table per area for each:

- an execution's own records (``points.record``: ``{"t": "rec", "k": ...}``), looked
  up in ``EXECUTION_REPORTS`` by ``k``; they may also update the execution (its lock
  phase, its retry level) and, for a retry, the accounting of its message;
- what a worker says about a task's message (``recv``, ``ack``, ``reject``,
  ``handled``, ``skipped``, ``state``), looked up in ``MESSAGE_REPORTS``: they fill in
  the message's accounting (harness/accounting.py) and add receipts and the broker's
  and backend's reports, which the controller appends at the next quiescent point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from harness.accounting import Message
from model import history as h

if TYPE_CHECKING:
    from harness.controller import Controller, Execution


class Sink(Protocol):
    """Where an execution's records go: the controller, or an eager run's ``Recording``."""

    history: h.History
    messages: dict[str, Message]
    anomalies: list[str]


@dataclass
class Recording:
    """A sink with no control channel behind it (harness/eager.py)."""

    history: h.History = field(default_factory=h.History)
    messages: dict[str, Message] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)


Report = Callable[[Sink, "Execution", dict[str, Any]], None]
MessageReport = Callable[["Controller", Message, dict[str, Any], int], None]

# --- an execution's records, by area ------------------------------------------------------


def _acquire(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    ex.phase = "acquiring"
    s.history.append(h.AcquireBegin(ex.id, msg["key"]))


def _acquired(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    ok = bool(msg["acquired"])
    if ok:
        ex.acquired = True
    ex.phase = "holding" if ok else "refused"
    s.history.append(h.AcquireEnd(ex.id, msg["key"], ok, msg.get("error")))


def _release(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    ex.phase = "releasing"
    s.history.append(h.ReleaseBegin(ex.id, msg["key"]))


def _released(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    ex.phase = "released"
    s.history.append(h.ReleaseEnd(ex.id, msg["key"], msg.get("error")))


def _invoice(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    s.history.append(h.InvoiceCreated(ex.id, msg["order"]))


LOCK: dict[str, Report] = {
    "acq": _acquire, "acq_end": _acquired, "rel": _release, "rel_end": _released,
    "invoice": _invoice,
}  # fmt: skip


def _effect(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    s.history.append(h.EffectDone(ex.id, msg["order"]))


def _retry(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    ex.retried = int(msg["level"])
    for m in s.messages.values():
        if m.task == ex.task:
            m.published += 1
    s.history.append(h.RetryPublished(ex.id, ex.task, int(msg["level"])))


def _exhausted(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    ex.exhausted = True
    s.history.append(h.RetriesExhausted(ex.id, ex.task))


DELIVERY: dict[str, Report] = {"effect": _effect, "retry": _retry, "exhausted": _exhausted}


def _observed(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    s.history.append(h.observed(msg["k"], ex.id, ex.process, msg))


def _lock_held(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    ex.holds_lock = msg["k"] == "locked"  # steers the runner only: no event


STATE: dict[str, Report] = {
    **dict.fromkeys(("read", "write", "rfu", "wb", "writing"), _observed),
    "locked": _lock_held, "unlocked": _lock_held,
}  # fmt: skip


def _looked(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    s.history.append(h.Looked(ex.id, bool(msg["found"])))


PUBLISH: dict[str, Report] = {"looked": _looked}


def _body_sent(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    m = s.messages.get(msg["id"])
    if m is not None:
        m.published += 1  # the broker owes one more delivery of the body's task id
        s.history.append(h.BodySent(ex.id, m.task))


def _body_args(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    s.history.append(h.BodyArgs(ex.id, tuple(str(r) for r in msg["results"])))


def _step_sent(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    m = s.messages.get(msg["id"])
    if m is not None:
        m.published += 1  # the broker owes one more delivery of the next step's task id
        s.history.append(h.StepSent(ex.id, m.task))


def _step_args(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    s.history.append(h.StepArgs(ex.id, tuple(str(a) for a in msg["args"])))


CANVAS: dict[str, Report] = {
    "sent": _body_sent, "body": _body_args, "next": _step_sent, "step": _step_args,
}  # fmt: skip


def _ran_from(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    s.history.append(h.RanFrom(ex.id, str(msg["queue"])))


ROUTING: dict[str, Report] = {"from": _ran_from}

EXECUTION_REPORTS: dict[str, Report] = {
    **LOCK, **DELIVERY, **STATE, **PUBLISH, **CANVAS, **ROUTING,
}  # fmt: skip


def record(s: Sink, ex: Execution, msg: dict[str, Any]) -> None:
    """The history event for an execution's report (``points.record``)."""
    k = msg["k"]
    report = EXECUTION_REPORTS.get(k)
    if report is None:
        s.anomalies.append(f"unknown record {k!r} from {ex.id}")
    else:
        report(s, ex, msg)


# --- what the workers say about a task's message ----------------------------------------


def _received(ctl: Controller, m: Message, msg: dict[str, Any], cid: int) -> None:
    m.received.append(msg["worker"])
    alias = ctl.aliases.get(msg["worker"], msg["worker"])
    level = int(msg.get("level", 0))
    ctl.receipt(h.Received(m.task, alias, bool(msg.get("redelivered")), level))


def _acked(ctl: Controller, m: Message, msg: dict[str, Any], cid: int) -> None:
    m.settled_by.append(msg["worker"])  # acked, or its ack failed: done with it
    failed = msg.get("failed")
    ctl.report(h.AckFailed(m.task, failed) if failed else h.Acked(m.task))


def _rejected(ctl: Controller, m: Message, msg: dict[str, Any], cid: int) -> None:
    m.settled_by.append(msg["worker"])
    back = bool(msg.get("back", msg["requeue"]))
    m.requeued += back
    ctl.report(h.Rejected(m.task, bool(msg["requeue"]), back))


def _handled(ctl: Controller, m: Message, msg: dict[str, Any], cid: int) -> None:
    # Only losses: the runner waits for one handling per child it killed, and a retry's
    # or an error's handling arriving later must not stand in for it.
    m.handled += bool(msg["lost"])


def _skipped(ctl: Controller, m: Message, msg: dict[str, Any], cid: int) -> None:
    m.skipped.append(msg["worker"])
    alias = ctl.aliases.get(msg["worker"], msg["worker"])
    ctl.report(h.Skipped(m.task, alias))


def _state(ctl: Controller, m: Message, msg: dict[str, Any], cid: int) -> None:
    m.states.append(msg["state"])
    ctl.report(h.StateWritten(m.task, msg["state"]))
    ex = ctl.last_execution(cid)
    if ex is not None and ex.state == "done" and ex.task == m.task:
        ex.stored = msg["state"]  # the result of a run that returned


MESSAGE_REPORTS: dict[str, MessageReport] = {
    "recv": _received, "ack": _acked, "reject": _rejected, "handled": _handled,
    "skipped": _skipped, "state": _state,
}  # fmt: skip


def message_report(ctl: Controller, kind: str, msg: dict[str, Any], cid: int) -> None:
    """Apply a worker's report on a task's message; one of an earlier example, or of a
    lock scenario (no message), changes nothing."""
    m = ctl.messages.get(msg["id"])
    if m is None:
        return
    if kind in ("recv", "ack", "reject"):
        what = "recv" if kind == "recv" else "settle"
        m.log.append((what, msg["worker"], msg["tag"], msg.get("seq")))
        if msg.get("qos") is not None:
            count, channel = msg["qos"]
            m.qos[(msg["worker"], msg["seq"])] = (int(count), int(channel))
    MESSAGE_REPORTS[kind](ctl, m, msg, cid)
