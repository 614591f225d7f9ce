"""The canvas model of a chain (2-3 steps) and a group (2-3 members) under faults.

Each step or member is a task message like the delivery area's (model/delivery.py
replays its deliveries, redelivered flags, acks and result states); what a chain adds,
read from Celery 5.7.0 as installed:

- **The next step leaves before the step's result is stored.** After the function
  returned, ``trace_task`` publishes the chain's next step
  (``_dispatch_callbacks_and_chain``: "callback tasks must be applied before the
  result is stored") and only then calls ``mark_as_done`` (celery/app/trace.py). A
  run's points: ``done`` (returning), ``published`` (the next step is out, nothing
  stored), ``stored`` (SUCCESS stored, not acked); the last step has no
  ``published``.
- **A failed step fails the rest of the chain.** ``mark_as_failure`` calls
  ``_fail_chain`` with the request's ``chain``: FAILURE is stored for every later step
  (celery/backends/base.py). The main process does that for a pool child lost before
  it stored SUCCESS (``Request.on_failure`` with WorkerLostError, unless
  ``reject_on_worker_lost`` requeues it) — even when the lost run had already
  published the next step, which then runs (and its SUCCESS overwrites the FAILURE:
  a stored SUCCESS is never overwritten, the rest is, ``_store_result``).
- **A retry keeps the rest of the chain.** ``Task.retry`` publishes the new message
  from ``signature_from_request``, whose options are ``request.as_execution_options()``:
  ``chain`` included (celery/app/task.py), so the retried step's successful run
  publishes the next step (celery #6631 reports the rest lost).
- **A rerun publishes the next step again.** Nothing marks a step's next step as
  published: a redelivered run of a step (acks_late: killed after ``published``, or
  restored by the visibility timeout) publishes it again, with the same task id.
- A child lost after its run stored SUCCESS is acked, nothing written
  (``_success_was_stored``, celery/worker/request.py), as for a chord header.

A group is its members' messages, each published at submit; nothing joins them
unless a chord does. Invariants: ``steps_once`` (no step or member stores SUCCESS
twice), ``chain_order`` (a step runs only after its predecessor returned, with its
result, and never next to a predecessor that ended other than SUCCESS),
``chain_complete`` / ``group_complete`` (a waiter on the chain's result or the
GroupResult does not wait forever: it ends SUCCESS or FAILURE).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from model import history as h
from model.canvas_config import CanvasConfig
from model.config import DeliveryConfig
from model.delivery import DeliveryModel, Mismatch, _Copy, _Delivery, _Message, _Task
from model.invariants import Violation
from model.verdict import Prediction

READY = ("SUCCESS", "FAILURE")


# --- the replay: the delivery model, with the chain's publishes and failures -------------------


class StepsModel(DeliveryModel):
    """Replays a chain's or a group's history on the delivery model: a step's message is
    published by its predecessor's runs (``StepSent``), SUCCESS is stored before a step's
    run ends (its ``stored`` point), and a step's failure is stored on every later step."""

    def __init__(self, config: CanvasConfig) -> None:
        c = config
        delivery = DeliveryConfig(
            c.broker, c.pool, c.concurrency, c.acks_late, c.reject_on_worker_lost,
            track_started=False,
        )  # fmt: skip
        super().__init__(delivery)
        self.steps: list[str] = []  # the chain's steps in order (a group's members)
        self.chained = False
        self._at: dict[str, str] = {}  # execution -> its last point
        self._task_of: dict[str, str] = {}
        self._proc_of: dict[str, str] = {}
        self._stored: set[str] = set()  # runs that stored SUCCESS at their 'stored' point

    def replay(self, events: Sequence[h.Event]) -> list[Mismatch]:
        for e in events:
            if isinstance(e, h.Submitted):
                self.steps.append(e.task)
            elif isinstance(e, h.Chained):
                self.steps.append(e.task)
                self.chained = True
        return super().replay(events)

    def _other(self, i: int, e: h.Event) -> None:
        match e:
            case h.Chained(task=t):
                self.tasks[t] = _Task()
                self.messages[(t, 0)] = _Message(t, 0, copies=[])  # published by a run
            case h.StepSent(execution=x, task=t):
                self.messages[(t, 0)].copies.append(_Copy())
                self._point(i, x, "published", sent=t)
            case h.Point(execution=x, name=p):
                self._point(i, x, p)

    def _started(self, i: int, e: h.Started) -> None:
        super()._started(i, e)
        self._at[e.execution], self._task_of[e.execution] = "start", e.task
        self._proc_of[e.execution] = e.process

    def _point(self, i: int, x: str, p: str, sent: str | None = None) -> None:
        """Out of ``done`` a step's run must publish the next step (the last step, and a
        group's member, store SUCCESS at once); ``published`` is reported twice (the
        publish record, then the point): check once."""
        t = self._task_of.get(x)
        if t is None:
            return
        before, self._at[x] = self._at.get(x), p
        if before == "done" and p in ("published", "stored"):
            nxt = self._next(t)
            want = "stored" if nxt is None else "published"
            if p != want:
                self._flag(
                    i, t, f"{x} at {want!r}", f"{x} at {p!r}",
                    "a returning chain step publishes the next one before its result is "
                    "stored (celery/app/trace.py _dispatch_callbacks_and_chain, then "
                    "mark_as_done); the last step and a group's member publish nothing",
                )  # fmt: skip
            elif sent is not None and sent != nxt:
                self._flag(i, t, f"{x} publishes {nxt}", f"it publishes {sent}",
                           "the request's chain holds the steps after it, in order")  # fmt: skip
        if p == "stored":
            self._stored.add(x)
            task = self.tasks[t]
            task.succeeded = True
            task.states.append("SUCCESS")

    def _next(self, t: str) -> str | None:
        if not self.chained or t not in self.steps:
            return None
        k = self.steps.index(t)
        return self.steps[k + 1] if k + 1 < len(self.steps) else None

    def _end_state(self, x: str) -> str | None:
        return None if x in self._stored else super()._end_state(x)

    def _lost_child(self, m: _Message, d: _Delivery) -> None:
        task = self.tasks[m.task]
        before = len(task.states)
        super()._lost_child(m, d)
        if len(task.states) > before and self.chained:
            # FAILURE stored: mark_as_failure fails the rest of the chain (_fail_chain).
            for later in self.steps[self.steps.index(m.task) + 1 :]:
                self.tasks[later].states.append("FAILURE")


def check_steps(config: CanvasConfig, events: Sequence[h.Event]) -> list[Mismatch]:
    return StepsModel(config).replay(events)


# --- what happened, read from a history ------------------------------------------------------


def _steps(events: Sequence[h.Event]) -> list[str]:
    return [e.task for e in events if isinstance(e, h.Submitted | h.Chained)]


def _finals(events: Sequence[h.Event]) -> dict[str, str]:
    return {e.task: e.state for e in events if isinstance(e, h.FinalState)}


def _stores(events: Sequence[h.Event]) -> dict[str, list[int]]:
    """Per task, the event index of each run's SUCCESS store (its ``stored`` point)."""
    task_of: dict[str, str] = {}
    out: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        if isinstance(e, h.Started):
            task_of[e.execution] = e.task
        elif isinstance(e, h.Point) and e.name == "stored":
            out.setdefault(task_of.get(e.execution, "?"), []).append(i)
    return out


# --- the invariants ----------------------------------------------------------------------------


def steps_once(events: Sequence[h.Event]) -> list[Violation]:
    """No step of a chain (member of a group) stores SUCCESS twice: its work is done
    once."""
    return [
        Violation("steps_once", idx[1], (t,), f"{t} ran to completion {len(idx)} times")
        for t, idx in sorted(_stores(events).items())
        if len(idx) > 1
    ]


def chain_order(events: Sequence[h.Event]) -> list[Violation]:
    """A step runs only after its predecessor returned (a run of it published this
    step), gets that result as its argument, and, once everything settled, never ran
    to completion next to a predecessor whose state is not SUCCESS."""
    steps = _steps(events)
    before = {b: a for a, b in pairwise(steps)}
    sent: set[str] = set()
    task_of: dict[str, str] = {}
    out = []
    for i, e in enumerate(events):
        if isinstance(e, h.StepSent):
            sent.add(e.task)
        elif isinstance(e, h.Started):
            task_of[e.execution] = e.task
            if e.task in before and e.task not in sent:
                out.append(Violation("chain_order", i, (e.execution,),
                                     f"{e.execution} started before a run of "
                                     f"{before[e.task]} published it"))  # fmt: skip
        elif isinstance(e, h.StepArgs):
            t = task_of.get(e.execution, "?")
            if t in before and e.args != (before[t],):
                out.append(Violation("chain_order", i, (e.execution,),
                                     f"{e.execution} got {list(e.args)}, expected "
                                     f"[{before[t]!r}] (its predecessor's result)"))  # fmt: skip
    finals = _finals(events)
    stores = _stores(events)
    for t, prev in before.items():
        if t in stores and finals.get(prev, "PENDING") != "SUCCESS":
            out.append(Violation("chain_order", stores[t][0], (t,),
                                 f"{t} ran to completion, but its predecessor {prev} ended "
                                 f"{finals.get(prev, 'PENDING')}"))  # fmt: skip
    return out


def chain_complete(events: Sequence[h.Event]) -> list[Violation]:
    """The chain's result (its last step's) ends SUCCESS or FAILURE: a waiter on it
    does not wait forever."""
    steps = _steps(events)
    finals = _finals(events)
    last = steps[-1] if steps else "?"
    state = finals.get(last, "PENDING")
    if state in READY:
        return []
    where = next((f"{t} {finals.get(t, 'PENDING')}" for t in steps
                  if finals.get(t) != "SUCCESS"), "")  # fmt: skip
    return [Violation("chain_complete", len(events) - 1, (last,),
                      f"the chain's result ({last}) is {state} for good (first unfinished "
                      f"step: {where})")]  # fmt: skip


def group_complete(events: Sequence[h.Event]) -> list[Violation]:
    """Every member ends SUCCESS or FAILURE: the GroupResult becomes ready."""
    finals = _finals(events)
    stuck = [t for t in _steps(events) if finals.get(t, "PENDING") not in READY]
    if not stuck:
        return []
    states = ", ".join(f"{t} {finals.get(t, 'PENDING')}" for t in stuck)
    return [Violation("group_complete", len(events) - 1, tuple(stuck),
                      f"the GroupResult never becomes ready: {states} for good")]  # fmt: skip


# --- what the model predicts per property and config ------------------------------------------


def steps_rule(config: CanvasConfig, prop: str) -> tuple[Prediction, str]:
    """Does some chain or group scenario with kills, kill-main, warm shutdown and the
    visibility timeout break ``prop`` on ``config``, and why."""
    c = config
    what = "step" if c.shape == "chain" else "member"
    if prop in ("chain-once", "group-once"):
        if not c.acks_late:
            return "holds", (
                "early ack: a message is acked as its run starts and never comes back, "
                f"and each {what} is published once (a chain step by its predecessor's "
                "one run; a retry publishes a new message only from a run that did not "
                "succeed)"
            )
        why = (
            "acks_late: the message is acked after the run stored its result "
            "(celery/worker/request.py), so a run killed (its main process) in between "
            "is redelivered and runs to completion again"
        )
        if c.reject_on_worker_lost:
            why += "; a pool child killed after the next step's publish is requeued, not failed"
        if c.shape == "chain":
            why += (
                ", and a rerun of a step publishes the next step again (celery/app/trace.py "
                "_dispatch_callbacks_and_chain keeps no record of it)"
            )
        return "violated", why
    if prop in ("chain-complete", "group-complete"):
        if not c.acks_late:
            return "violated", (
                "early ack: a run lost with its worker's main process was acked as it "
                "started and nothing stores a state for it (celery/worker/request.py "
                "on_failure never runs): it stays PENDING"
                + (", and so does the rest of the chain" if c.shape == "chain" else "")
            )
        return "holds", (
            "acks_late: a lost run's message comes back (main process killed: the "
            "broker; pool child: FAILURE stored, or requeued with reject_on_worker_lost: "
            "celery/worker/request.py on_failure)"
            + (
                ", a failed step stores FAILURE on every later step (celery/backends/"
                "base.py _fail_chain), and a retried step's message keeps the rest of "
                "the chain (celery/app/task.py signature_from_request: "
                "as_execution_options has 'chain')"
                if c.shape == "chain" else ""
            )
        )  # fmt: skip
    if prop == "chain-order":
        if c.reject_on_worker_lost:
            return "holds", (
                "the next step is published only after a run returned, with its result "
                "(celery/app/trace.py _dispatch_callbacks_and_chain); a step lost after "
                "that publish is requeued, not failed (reject_on_worker_lost), so it ends "
                "SUCCESS on its rerun"
            )
        return "violated", (
            "the next step is published before the step's own SUCCESS is stored "
            "(celery/app/trace.py: _dispatch_callbacks_and_chain, then mark_as_done): a "
            "pool child killed in between is stored FAILURE (WorkerLostError, "
            "celery/worker/request.py on_failure) while the next step runs"
            + (
                "; early ack: its main process killed there leaves it PENDING"
                if not c.acks_late
                else ""
            )
        )
    raise KeyError(prop)


def effects_once(events: Sequence[h.Event]) -> list[Violation]:
    """Each effect of the canvas (an invoice key: the order, or ``order:<what>``)
    happened at most once: no key has two rows (a plug-in canvas, check-canvas)."""
    return [
        Violation("effects_once", i, (e.order,), f"{e.order} has {e.count} invoices")
        for i, e in enumerate(events)
        if isinstance(e, h.InvoiceCount) and e.count > 1
    ]


STEPS_VIOLATIONS = {
    "chain-once": steps_once,
    "group-once": steps_once,
    "chain-order": chain_order,
    "chain-complete": chain_complete,
    "group-complete": group_complete,
    "effects-once": effects_once,
}
