"""The canvas tasks: a chord's header task and its body, with scheduling points inside
Celery's own chord counting, and a chain's step (a group's member).

``register(app)`` (called once by ``tasks.app``) registers ``suite.canvas_part`` (a
header task), ``suite.canvas_body`` (the body) and ``suite.canvas_step`` (a chain's
step, a group's member), and puts scheduling points around the Redis result backend's
``on_chord_part_return`` and after the publish of a body or of a chain's next step.

A header run's points, in order (its execution stays open past the function's return,
through Celery's ``mark_as_done``, and ends in ``after_return``, before the ack):

    start      parked before anything runs
    done       the function is about to return: nothing stored yet
    count      its SUCCESS is stored (``Backend.store_result``), the part not counted
               (celery/backends/base.py ``mark_as_done``: store, then
               ``on_chord_part_return``)
    published  only the run whose count completed the chord and won the dispatch claim:
               the body is published (``callback.delay``), the join keys not cleaned up
               yet (celery/backends/redis.py ``on_chord_part_return``: the ``finally``
               after ``_retry_publish``)
    counted    ``on_chord_part_return`` returned (counted, cleaned up); not acked yet

The body's points: ``start``, then ``done`` (its argument recorded, not returned).
Outside an execution (the main process failing a lost header with WorkerLostError)
the points do nothing.

A chain step's points (its execution, too, stays open through ``mark_as_done``):

    start      parked before anything runs (its argument, the previous step's result,
               recorded)
    done       the function is about to return: nothing published, nothing stored
    published  the chain's next step is published (celery/app/trace.py
               ``_dispatch_callbacks_and_chain``), SUCCESS not stored yet; not on the
               last step, nor on a group's member
    stored     SUCCESS stored (``mark_as_done``), not acked yet (``after_return``)

The retrying step of a ``retry`` chain (``spec["retries"]``) asks, on its first run,
for a retry between ``retry`` (nothing published) and ``retried`` (the retry message
is out, RETRY not stored: Celery stores it once the run raised ``Retry``).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from celery import signals

from tasks import canvas_plugins, points
from tasks.canvas_plugins import CONTROLLED
from tasks.canvas_runs import CanvasPart, CanvasStep, hold_open

PART = "suite.canvas_part"
BODY = "suite.canvas_body"
STEP = "suite.canvas_step"
UNLOCK = "celery.chord_unlock"

_ordered = True  # the join mode register() configured: a sorted set, else a list


def _redelivered(task: Any) -> bool:
    return bool((task.request.delivery_info or {}).get("redelivered"))


def part(self: Any, spec: dict[str, Any]) -> str:
    """A header task: returns its scenario name, which the body's argument must hold
    once."""
    task = spec["task"]
    run = ExitStack()
    try:
        run.enter_context(
            points.execution(task, task, _redelivered(self), 0, task_id=self.request.id)
        )
    except points.StaleExecution:
        return "stale"
    try:
        # The join mode the count will pass its Lua script (celery/backends/redis.py
        # ``on_chord_part_return``: ``1 if self._chord_zset else 0``) is the configured one.
        if bool(getattr(self.backend, "_chord_zset", _ordered)) != _ordered:
            raise RuntimeError(f"the chord join is not the configured one (ordered={_ordered})")
        points.point("done")
    except BaseException as exc:
        run.__exit__(type(exc), exc, exc.__traceback__)  # the execution ends "error"
        raise
    hold_open(run)
    return str(task)


def body(self: Any, results: list[str], spec: dict[str, Any]) -> int:
    """The chord's body: records the header results it was given."""
    task = spec["task"]
    try:
        with points.execution(task, task, _redelivered(self), 0, task_id=self.request.id):
            points.record("body", results=[str(r) for r in results])
            points.point("done")
    except points.StaleExecution:
        return -1
    return len(results)


def step(self: Any, *prev: Any, spec: dict[str, Any]) -> str:
    """A chain's step or a group's member: returns its scenario name, which the next
    step gets as its argument."""
    from celery.exceptions import Retry

    task = spec["task"]
    level = int(self.request.retries or 0)
    run = ExitStack()
    try:
        run.enter_context(
            points.execution(task, task, _redelivered(self), level, task_id=self.request.id)
        )
    except points.StaleExecution:
        return "stale"
    try:
        if prev:
            points.record("step", args=[str(p) for p in prev])
        if level < int(spec.get("retries", 0)):
            points.point("retry")
            # Reported before retry() publishes, so it is in the history before the
            # new message's receipt (as tasks/deliver.py does).
            points.record("retry", level=level + 1)
            try:
                self.retry(countdown=0, max_retries=3)
            except Retry as exc:
                points.point("retried")
                run.close()  # the execution ends "ok"; Celery stores RETRY after it
                raise exc from None
        points.point("done")
    except BaseException as exc:
        run.__exit__(type(exc), exc, exc.__traceback__)  # ends "error" (or ended already)
        raise
    hold_open(run)
    return str(task)


def _published(sender: Any = None, headers: Any = None, **_: Any) -> None:
    """The body left a header run's count (``callback.delay``): the keys are not
    cleaned up yet. Or a step's run (a chain's, a plug-in canvas's task) published the
    next signature of its canvas (not its own retry, which is under its own id)."""
    if points.current() is None:
        return
    sent = (headers or {}).get("id")
    running = _running()
    if sender == BODY:
        points.record("sent", id=sent)
    elif running is not None and running[0] in (STEP, *CONTROLLED) and sent != running[1]:
        points.record("next", id=sent)
    else:
        return
    points.point("published")


def _retrying(sender: Any = None, headers: Any = None, **_: Any) -> None:
    """A plug-in canvas's task asks for a retry: reported before the message leaves,
    so it is in the history before the new message's receipt (``suite.canvas_step``
    and tasks/deliver.py report their own, before calling ``retry``)."""
    running = _running()
    headers = headers or {}
    if points.current() is None or running is None or running[0] not in CONTROLLED:
        return
    if headers.get("id") == running[1]:
        points.record("retry", level=int(headers.get("retries") or 0))


def _running() -> tuple[str, str] | None:
    """(name, id) of the task this thread runs."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    if request is None or request.id is None:
        return None
    return str(current_task.name), str(request.id)


def _counting(original: Any) -> Any:
    """``on_chord_part_return`` between the points ``count`` (SUCCESS stored, the part
    not counted) and ``counted`` (not acked yet)."""

    def on_chord_part_return(self: Any, request: Any, state: Any, result: Any, **kw: Any) -> Any:
        points.point("count")
        returned = original(self, request, state, result, **kw)
        points.point("counted")
        return returned

    on_chord_part_return._suite = True  # type: ignore[attr-defined]
    return on_chord_part_return


def _install_points() -> None:
    from celery.backends.base import Backend
    from celery.backends.database import DatabaseBackend
    from celery.backends.redis import RedisBackend

    if getattr(RedisBackend.on_chord_part_return, "_suite", False):
        return
    RedisBackend.on_chord_part_return = _counting(RedisBackend.on_chord_part_return)
    # The database backend counts nothing (Backend.on_chord_part_return: pass), the
    # same two points mark a header's run stored and not acked.
    DatabaseBackend.on_chord_part_return = _counting(DatabaseBackend.on_chord_part_return)
    unlock = Backend.fallback_chord_unlock

    def fallback_chord_unlock(self: Any, header_result: Any, body: Any, **kw: Any) -> Any:
        # The first chord_unlock poll is due at once: its countdown (1 s of wall time
        # in the worker's timer, canvas.py chord.run) is the scenario's to decide,
        # as each poll is a step of its run.
        return unlock(self, header_result, body, **{**kw, "countdown": 0})

    Backend.fallback_chord_unlock = fallback_chord_unlock
    signals.after_task_publish.connect(_published, weak=False)
    signals.before_task_publish.connect(_retrying, weak=False)


def _control_unlock(sender: Any = None, **_: Any) -> None:
    """Each run of ``celery.chord_unlock`` (a poll of the database backend's chord,
    celery/app/builtins.py ``unlock_chord``) as a controlled execution: parked at its
    start, then the poll: a retry (reported by ``_retrying``), the body's publish
    (``published``) or the chord's failure. Its retry interval is 0
    (``result_chord_retry_interval``): the next poll is the next run."""
    task = sender.tasks[UNLOCK]
    task.run = canvas_plugins.controlled(task.run, hold=False)
    CONTROLLED.add(UNLOCK)


def register(app: Any) -> None:
    """The canvas tasks on ``app``, and the points in Celery's chord counting. The
    join mode: ``result_chord_ordered`` is read from the backend's transport options
    (celery/backends/redis.py ``RedisBackend._chord_zset``)."""
    import os

    from tasks.settings import Settings

    global _ordered
    settings = Settings.from_env(os.environ)
    ordered = _ordered = settings.chord_ordered
    options = dict(app.conf.get("result_backend_transport_options") or {})
    app.conf.result_backend_transport_options = {**options, "result_chord_ordered": ordered}
    _install_points()
    app.conf.result_chord_retry_interval = 0.0  # read when chord_unlock is made
    app.on_after_finalize.connect(_control_unlock, weak=False)
    app.task(name=PART, bind=True, base=CanvasPart)(part)
    app.task(name=BODY, bind=True)(body)
    app.task(name=STEP, bind=True, base=CanvasStep)(step)
    if settings.canvas_plugin:  # its tasks, registered before the pool forks
        canvas_plugins.build(settings.canvas_plugin, app)
