"""The canvas model of a chord on the database result backend: ``chord_unlock`` polling.

Sources, Celery 5.7.0 as installed:

- The database backend has no join of its own: ``chord.run`` calls
  ``Backend.apply_chord`` -> ``fallback_chord_unlock``, which sends one
  ``celery.chord_unlock`` task (countdown 1 s; the suite makes it 0) to the body's
  queue (celery/backends/base.py). Its headers count nothing
  (``Backend.on_chord_part_return``: pass).
- Each run of ``unlock_chord`` (celery/app/builtins.py) is one poll: if not every
  header's state is ready (``GroupResult.ready()``: SUCCESS, FAILURE or REVOKED) it
  calls ``self.retry(countdown=interval, max_retries=None)``: a new message, the same
  task id, forever (celery #9674); ready, it joins the results (``propagate=True``):
  a FAILURE header makes the join raise and the body is stored FAILURE
  (``chord_error_from_stack``); all SUCCESS, it publishes the body
  (``callback.delay``) and returns. ``ignore_result=True``: no state of its own.
- The poll is a task like any other: acked early or late like the headers. So a poll
  lost without a requeue (a pool child killed: WorkerLostError, acked, nothing
  stored for an ignore_result task; or early ack and its main process killed) ends
  its lineage, and **nothing polls the chord again**: the body never runs. Under
  acks_late a poll killed (its main process) after it published the body, or after it
  published its retry, comes back: it polls again, and publishes the body again once
  the headers are ready (two lineages each publish it).
- A header's result is stored by its run before the ack (``mark_as_done``); a header's
  pool child lost after that is acked and nothing written (``_success_was_stored``),
  so here, unlike the Redis join, a kill between store and ack does not stall the
  chord: the poll finds the stored SUCCESS.

The suite names the poll's runs ``t8`` (``t8#2``, ... one per poll); a poll
parks at its start and decides when stepped. The runner ends a scenario whose only
runs left are polls that would find what the last poll found (harness/runs/canvas.py
``_polls_forever``): in production they go on polling.
"""

from __future__ import annotations

from collections.abc import Sequence

from model import history as h
from model.canvas_config import BODY, CanvasConfig
from model.processes import is_child
from model.verdict import Mismatch, Prediction

UNLOCK = "t8"  # the chord_unlock task's name in a scenario (headers t1..t3, body t9)


def check_unlock(config: CanvasConfig, events: Sequence[h.Event]) -> list[Mismatch]:
    """Replay the headers' states and say, at each poll, what it must do: retry (some
    header not ready), publish the body (every header SUCCESS) or fail the chord (a
    header FAILURE); at the end, the body's state when no poll published it."""
    out: list[Mismatch] = []
    headers: list[str] = []
    state: dict[str, str] = {}  # header -> SUCCESS | FAILURE, as the backend holds it
    task_of: dict[str, str] = {}
    proc_of: dict[str, str] = {}
    at: dict[str, str] = {}  # live run -> its last point
    deciding: dict[str, int] = {}  # poll run -> where it started (it polls when stepped)
    failed = False  # a poll failed the chord (ChordError): the body is stored FAILURE
    for i, e in enumerate(events):
        match e:
            case h.Submitted(task=t) if t != BODY:
                headers.append(t)
            case h.Started(execution=x, task=t, process=p):
                task_of[x], proc_of[x], at[x] = t, p, "start"
                if t == UNLOCK:
                    deciding[x] = i
            case h.Point(execution=x, name=p) if x in at:
                at[x] = p
                if p == "count" and task_of[x] != UNLOCK:
                    state[task_of[x]] = "SUCCESS"  # stored; never overwritten
            # Stepped, a poll runs to its decision with nothing else running: the
            # headers' states just before it are the ones it read.
            case h.RetryPublished(execution=x) if x in deciding:
                out += _decided(i, x, deciding.pop(x), _must(headers, state), "retry")
            case h.BodySent(execution=x) if x in deciding:
                want = _must(headers, state)
                out += _decided(i, x, deciding.pop(x), want, "publish the body")
            case h.Finished(execution=x) if x in at:
                at.pop(x)
                if x in deciding:  # neither a retry nor a publish: the chord failed
                    failed = True
                    want = _must(headers, state)
                    out += _decided(i, x, deciding.pop(x), want, "fail the chord")
            case h.Killed(process=p):
                dead = [x for x in at if proc_of[x] == p or (
                    not is_child(p) and proc_of[x].split(".")[0] == p)]  # fmt: skip
                for x in dead:
                    at.pop(x)
                    deciding.pop(x, None)  # a poll killed before it decided: nothing
                    t = task_of[x]
                    lost = is_child(p) and not config.reject_on_worker_lost
                    if t in headers and lost and t not in state:
                        state[t] = "FAILURE"  # WorkerLostError stored by the main process
    sends = sum(1 for e in events if isinstance(e, h.BodySent))
    if sends == 0:
        final = next((e.state for e in events if isinstance(e, h.FinalState)
                      and e.task == BODY), "PENDING")  # fmt: skip
        want = "FAILURE" if failed else "PENDING"
        if final != want:
            why = (
                "a poll found a FAILURE header: the join raises and the body is stored "
                "FAILURE (celery/app/builtins.py unlock_chord, chord_error_from_stack)"
                if failed else "no poll published the body or failed the chord"
            )  # fmt: skip
            out.append(Mismatch(len(events) - 1, f"body {want}", f"body {final}", why))
    return out


def _must(headers: list[str], state: dict[str, str]) -> str:
    """What a poll must do on the headers' states now."""
    if not headers or any(t not in state for t in headers):
        return "retry"
    if all(state[t] == "SUCCESS" for t in headers):
        return "publish the body"
    return "fail the chord"


def _decided(i: int, x: str, started: int, want: str, did: str) -> list[Mismatch]:
    if did == want:
        return []
    return [
        Mismatch(i, f"{x} (started #{started}) to {want}", f"it did {did}",
                 "a poll reads the headers' states: not all ready -> retry; all SUCCESS "
                 "-> the body; a FAILURE -> the chord fails (celery/app/builtins.py "
                 "unlock_chord)")
    ]  # fmt: skip


def unlock_rule(config: CanvasConfig, prop: str) -> tuple[Prediction, str]:
    """Does some chord scenario on the database backend break ``prop``, and why."""
    c = config
    if prop == "body-once":
        why = (
            "a chord_unlock poll's pool child killed: it is acked (or, early, was) and "
            "nothing is stored for it, so no poll follows and the body never runs "
            "(celery/app/builtins.py unlock_chord; celery/worker/request.py on_failure)"
        )
        if c.reject_on_worker_lost:
            why = (
                "acks_late: a poll killed (its main process) after it published the body "
                "comes back and publishes it again: the body runs twice"
            )
        return "violated", why
    if prop == "fires-once":
        if not c.acks_late:
            return "holds", (
                "early ack: a poll's message never comes back once it started, and a "
                "poll that publishes the body does not retry: one lineage, one publish "
                "(celery/app/builtins.py unlock_chord)"
            )
        return "violated", (
            "acks_late: a poll killed (its main process) after it published the body "
            "comes back, polls again and publishes the body again (celery/app/"
            "builtins.py unlock_chord keeps no record of a publish); so would a poll "
            "killed after its retry's publish, as a second lineage (no scheduling point "
            "there yet)"
        )
    if prop == "body-after-headers":
        return "holds", (
            "a poll publishes the body only when every header's stored state is ready "
            "and the join raised nothing: each stored SUCCESS (celery/app/builtins.py "
            "unlock_chord: deps.ready(), join(propagate=True))"
        )
    if prop == "body-args":
        return "holds", (
            "the join returns each header's stored result once, in header order "
            "(celery/app/builtins.py unlock_chord, GroupResult.join)"
        )
    raise KeyError(prop)
