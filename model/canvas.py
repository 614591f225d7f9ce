"""The canvas model: a chord of 1-3 header tasks and a body on the Redis result backend.

Sources, Celery 5.7.0 as installed (celery/backends/redis.py, celery/backends/base.py,
celery/worker/request.py, celery/app/trace.py):

- A header run stores its result, then counts its part: ``Backend.mark_as_done`` calls
  ``store_result`` then ``on_chord_part_return`` (``trace_task``: after the function
  returned, before ``after_return`` and before the ack).
- The count is one Lua script (``CHORD_PART_RETURN_LUA``): it adds the part to the join
  key ``<gid>.j`` (a sorted set; a list with ``result_chord_ordered=False``) only if
  ``<tid>:<index>`` is not yet in the done set ``<gid>.d``, so **a rerun of a counted
  header is not counted again**, in either mode; when the count reaches the size
  (``<gid>.s``) it takes the dispatch claim ``<gid>.c`` (``SET NX EX 10``: a lease of
  ``max(5, 2 x result_chord_join_timeout)`` seconds, wall time).
- The claimant reads the results, publishes the body (``callback.delay``) and in a
  ``finally`` runs ``CHORD_CLEANUP_LUA``: deletes the keys, sets ``<gid>.c`` to
  ``done`` for 300 s. A claim whose holder died before the cleanup expires after its
  lease: a later rerun of any header then finds the count complete, the claim free,
  and **dispatches the body again**. A rerun after the cleanup finds no size: nothing.
- A part stored as FAILURE (the main process failing a lost run with WorkerLostError:
  ``Request.on_failure`` -> ``mark_as_failure`` -> ``on_chord_part_return``) is counted
  like any other; when the count completes, the join raises ``ChordError`` and the body
  is stored FAILURE (``chord_error_from_stack``), never run.
- A pool child lost after its run stored SUCCESS: ``Request.on_failure`` finds
  ``_success_was_stored`` and acks, writing and counting nothing ("Recording a
  failure here would ... count a chord header twice"). If the run died before its
  count, **the chord never completes**: the body neither runs nor fails.

Wall time in a scenario: the harness's ``vt`` move is "the visibility timeout (an
hour) passes"; every result-backend key with a shorter TTL (the dispatch claim, the
``done`` marker) expires with it (harness/runs/canvas.py), as it would in production
before Redis redelivers anything. RabbitMQ redelivers a dead worker's messages at
once, so there the claim is usually still held when the redelivered header counts;
the ``expire`` move (``Expired(CLAIM)``) is the redelivery that waited longer than
the claim's 10 s (behind other work, or no worker consuming).

Processes, executions and moves as in the delivery area (model/delivery.py); the
header tasks are ``t1``..``tN``, the body ``t9`` (``BODY``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from model import history as h
from model.canvas_config import BODY, CanvasConfig
from model.invariants import Violation
from model.processes import is_child
from model.verdict import Mismatch, Prediction

CanvasMove = Literal["kill", "vt"]
CLAIM = "the chord's dispatch claim"  # the key an ``expire`` move expires (RabbitMQ)


# --- what happened, read from a history ---------------------------------------------------


@dataclass
class _Chord:
    headers: list[str] = field(default_factory=list)
    finals: dict[str, str] = field(default_factory=dict)
    body_ok: list[int] = field(default_factory=list)  # event index of each completed body run
    sent: list[int] = field(default_factory=list)  # event index of each dispatch


def _read(events: Sequence[h.Event]) -> _Chord:
    c = _Chord()
    task_of: dict[str, str] = {}
    for i, e in enumerate(events):
        if isinstance(e, h.Submitted) and e.task != BODY:
            c.headers.append(e.task)
        elif isinstance(e, h.Started):
            task_of[e.execution] = e.task
        elif isinstance(e, h.Finished) and e.status == "ok" and task_of.get(e.execution) == BODY:
            c.body_ok.append(i)
        elif isinstance(e, h.BodySent):
            c.sent.append(i)
        elif isinstance(e, h.FinalState):
            c.finals[e.task] = e.state
    return c


def _all_succeeded(c: _Chord) -> bool:
    return bool(c.headers) and all(c.finals.get(t) == "SUCCESS" for t in c.headers)


# --- the invariants --------------------------------------------------------------------------


def body_once(events: Sequence[h.Event]) -> list[Violation]:
    """Once every header task ended SUCCESS, the body ran to completion exactly once;
    it never completes twice."""
    c = _read(events)
    end = len(events)
    if len(c.body_ok) > 1:
        return [
            Violation("body_once", c.body_ok[1], (BODY,),
                      f"the chord's body ran to completion {len(c.body_ok)} times")
        ]  # fmt: skip
    if _all_succeeded(c) and not c.body_ok:
        body = c.finals.get(BODY, "PENDING")
        return [
            Violation("body_once", end - 1, (BODY,),
                      f"every header task ended SUCCESS ({', '.join(c.headers)}) but the "
                      f"body never ran (its state: {body})")
        ]  # fmt: skip
    return []


def fires_once(events: Sequence[h.Event]) -> list[Violation]:
    """The chord publishes its body at most once (whatever happens to that message)."""
    c = _read(events)
    if len(c.sent) > 1:
        return [
            Violation("fires_once", c.sent[1], (BODY,),
                      f"the chord published its body {len(c.sent)} times")
        ]  # fmt: skip
    return []


def body_after_headers(events: Sequence[h.Event]) -> list[Violation]:
    """No run of the body starts before every header task has a run that stored its
    result (reached the ``count`` point: SUCCESS stored, celery/backends/base.py
    ``mark_as_done``)."""
    stored: set[str] = set()
    task_of: dict[str, str] = {}
    headers: list[str] = []
    out = []
    for i, e in enumerate(events):
        if isinstance(e, h.Submitted) and e.task != BODY:
            headers.append(e.task)
        elif isinstance(e, h.Started):
            task_of[e.execution] = e.task
            if e.task == BODY and (missing := [t for t in headers if t not in stored]):
                out.append(
                    Violation("body_after_headers", i, (e.execution,),
                              f"{e.execution} (the body) started before "
                              f"{', '.join(missing)} stored a result")
                )  # fmt: skip
        elif isinstance(e, h.Point) and e.name == "count":
            stored.add(task_of.get(e.execution, "?"))
    return out


def body_args(events: Sequence[h.Event]) -> list[Violation]:
    """Each run of the body gets each header task's result exactly once."""
    headers = sorted(e.task for e in events if isinstance(e, h.Submitted) and e.task != BODY)
    return [
        Violation("body_args", i, (e.execution,),
                  f"{e.execution} (the body) got {list(e.results)}, expected each of "
                  f"{headers} once")
        for i, e in enumerate(events)
        if isinstance(e, h.BodyArgs) and sorted(e.results) != headers
    ]  # fmt: skip


# --- the join, replayed: what each count must do -----------------------------------------------


@dataclass
class _Join:
    """The Redis join keys of the chord, as the Lua scripts leave them."""

    size: bool = True  # <gid>.s: the size key is there (deleted by cleanup or a ChordError)
    done: set[str] = field(default_factory=set)  # <gid>.d: headers counted
    failed: bool = False  # a FAILURE part was counted
    claim: str | None = None  # the execution holding <gid>.c (not cleaned up yet)


def check_join(config: CanvasConfig, events: Sequence[h.Event]) -> list[Mismatch]:
    """Replay the history's header runs against the join and say, at each step out of
    ``count``, whether the run must dispatch the body (its next point is
    ``published``) or not (``counted``); at the end, the body's state when no run
    dispatched it (FAILURE after a failed part completed the count, else PENDING)."""
    j = _Join()
    out: list[Mismatch] = []
    task_of: dict[str, str] = {}
    proc_of: dict[str, str] = {}
    at: dict[str, str] = {}  # live header execution -> its last point
    headers: list[str] = []
    stored_ok: set[str] = set()  # header tasks with SUCCESS stored
    sends = 0
    chord_error = False
    for i, e in enumerate(events):
        match e:
            case h.Submitted(task=t) if t != BODY:
                headers.append(t)
            case h.Started(execution=x, task=t, process=p) if t != BODY:
                task_of[x], proc_of[x], at[x] = t, p, "start"
            case h.Point(execution=x, name=p) if x in at:
                t, before = task_of[x], at[x]
                at[x] = p
                if p == "count":
                    stored_ok.add(t)
                elif before == "count":  # the run passed the Lua count
                    claims, failed = _count(j, t, x, len(headers), failed=False)
                    chord_error = chord_error or failed
                    want = "published" if claims else "counted"
                    if p != want:
                        out.append(Mismatch(i, f"{x} at {want!r}", f"{x} at {p!r}",
                                            _why_count(claims)))  # fmt: skip
                elif before == "published" and j.claim == x:
                    _cleanup(j)
            case h.BodySent():
                sends += 1
            case h.Finished(execution=x) if x in at:
                if at.pop(x) == "published" and j.claim == x:
                    _cleanup(j)
            case h.Killed(process=p):
                dead = [x for x in at if proc_of[x] == p or (
                    not is_child(p) and proc_of[x].split(".")[0] == p)]  # fmt: skip
                for x in sorted(dead):
                    at.pop(x)
                    t = task_of[x]
                    if not is_child(p) or t in stored_ok or config.reject_on_worker_lost:
                        continue  # nothing counted: main gone, SUCCESS stored, or requeued
                    # WorkerLostError: FAILURE stored and counted by the main process.
                    _, failed = _count(j, t, None, len(headers), failed=True)
                    chord_error = chord_error or failed
            case h.VisibilityTimeout():
                j.claim = None  # the 10 s lease is over long before an hour
            case h.Expired(key=k) if k == CLAIM:
                j.claim = None
    want_sends = sum(1 for e in events if isinstance(e, h.Point) and e.name == "published")
    if sends != want_sends:
        out.append(Mismatch(len(events), f"{want_sends} publish(es) of the body", str(sends),
                            "a run that reached 'published' sent the body once"))  # fmt: skip
    if want_sends == 0:
        final = next((e.state for e in events if isinstance(e, h.FinalState)
                      and e.task == BODY), "PENDING")  # fmt: skip
        want = "FAILURE" if chord_error else "PENDING"
        if final != want:
            why = (
                "a FAILURE part completed the count: the join raises ChordError and the "
                "body is stored FAILURE (celery/backends/redis.py chord_error_from_stack)"
                if chord_error else
                "no count completed the chord: nothing dispatched or failed the body"
            )  # fmt: skip
            out.append(Mismatch(len(events) - 1, f"body {want}", f"body {final}", why))
    return out


def _count(j: _Join, t: str, x: str | None, n: int, failed: bool) -> tuple[bool, bool]:
    """``CHORD_PART_RETURN_LUA`` for a part of ``t`` (``x``: the run, None for the main
    process failing a lost run): count it once; (the run takes the dispatch claim,
    the count completed with a failed part: ChordError)."""
    if t not in j.done:
        j.done.add(t)  # after the cleanup into fresh keys: no size, no claim
        j.failed = j.failed or failed
    if j.size and len(j.done) == n and j.claim is None:
        if j.failed:  # the join raises ChordError: the body is failed, the size deleted
            j.size = False
            return False, True
        j.claim = x
        return x is not None, False
    return False, False


def _cleanup(j: _Join) -> None:
    """``CHORD_CLEANUP_LUA``: keys deleted, the claim becomes the ``done`` marker."""
    j.size, j.claim, j.done = False, None, set()


def _why_count(claims: bool) -> str:
    if claims:
        return (
            "this count completes the chord with the dispatch claim free, so the run "
            "publishes the body (celery/backends/redis.py CHORD_PART_RETURN_LUA)"
        )
    return (
        "the count is not complete, the header was counted already (the done set "
        "<gid>.d), the chord was cleaned up, or another run holds the dispatch claim: "
        "no publish (celery/backends/redis.py CHORD_PART_RETURN_LUA)"
    )


# --- what the model predicts per property and config ----------------------------------------------

CHORD_PROPERTIES: dict[str, tuple[frozenset[CanvasMove], str]] = {
    "body-once": (
        frozenset({"kill", "vt"}),
        "once every header task ended SUCCESS the body ran exactly once (never twice)",
    ),
    "fires-once": (
        frozenset({"kill", "vt"}),
        "the chord publishes its body at most once",
    ),
    "body-after-headers": (
        frozenset({"kill", "vt"}),
        "the body never starts before every header task stored its result",
    ),
    "body-args": (
        frozenset({"kill", "vt"}),
        "the body's argument holds each header task's result exactly once",
    ),
}


def chord_rule(config: CanvasConfig, prop: str) -> tuple[Prediction, str]:
    """Does some chord scenario with the property's moves break it on ``config``, and why."""
    c = config
    if prop == "body-once":
        return "violated", (
            "a header's child killed after its SUCCESS is stored and before its part is "
            "counted: the main process sees the stored SUCCESS, acks and counts nothing "
            "(celery/worker/request.py on_failure, _success_was_stored), so the chord "
            "never completes" + ("" if c.acks_late else "; early ack also loses a killed body")
        )
    if prop == "fires-once":
        if not c.acks_late:
            return "holds", (
                "early ack: no header message comes back once its run started, so only "
                "the first count that completes the chord can claim the dispatch"
            )
        if c.broker == "amqp":
            return "violated", (
                "acks_late: a header killed (its main process) between the body's "
                "publish and the cleanup is redelivered by RabbitMQ at once, and while "
                "the dead run's 10 s dispatch claim holds its count publishes nothing; "
                "counted after the claim expired (it waited behind other work), it finds "
                "the chord complete and publishes the body again (celery/backends/"
                "redis.py on_chord_part_return)"
            )
        return "violated", (
            "acks_late: a header killed (its main process) between the body's publish "
            "and the cleanup comes back after the visibility timeout, when the 10 s "
            "dispatch claim has long expired; its count finds the chord complete and "
            "publishes the body again (celery/backends/redis.py on_chord_part_return)"
        )
    if prop == "body-after-headers":
        return "holds", (
            "a part is counted only after its run stored SUCCESS (mark_as_done), and a "
            "rerun is not counted twice (the done set <gid>.d, celery/backends/redis.py "
            "CHORD_PART_RETURN_LUA): the count completes only when every header stored"
        )
    if prop == "body-args":
        return "holds", (
            "the join key gets each header once (the done set <gid>.d keys it by task id "
            "and header index, celery/backends/redis.py CHORD_PART_RETURN_LUA), so the "
            "body's argument holds each result once"
        )
    raise KeyError(prop)


CHORD_VIOLATIONS = {
    "body-once": body_once,
    "fires-once": fires_once,
    "body-after-headers": body_after_headers,
    "body-args": body_args,
}
