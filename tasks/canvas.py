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

import threading
from contextlib import ExitStack
from typing import Any

from celery import Task, signals

from tasks import points

PART = "suite.canvas_part"
BODY = "suite.canvas_body"
STEP = "suite.canvas_step"

_ordered = True  # the join mode register() configured: a sorted set, else a list

# A header run's execution, left open when its function returns (closed in
# ``CanvasPart.after_return``), so Celery's store and count happen inside it.
_open = threading.local()


def _redelivered(task: Any) -> bool:
    return bool((task.request.delivery_info or {}).get("redelivered"))


class CanvasPart(Task):
    def after_return(self, *args: Any, **kwargs: Any) -> None:
        run: ExitStack | None = getattr(_open, "run", None)
        _open.run = None
        if run is not None:
            run.close()  # the execution ends "ok": stored and counted, not acked yet


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
    _open.run = run
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


class CanvasStep(Task):
    def after_return(self, status: str, *args: Any, **kwargs: Any) -> None:
        run: ExitStack | None = getattr(_open, "run", None)
        _open.run = None
        if run is not None:
            with run:  # the execution ends "ok": stored, not acked yet
                points.point("stored")


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
    _open.run = run
    return str(task)


def _published(sender: Any = None, headers: Any = None, **_: Any) -> None:
    """The body left a header run's count (``callback.delay``): the keys are not
    cleaned up yet. Or a chain step's run published the next step (not its own retry,
    which has its own id's record)."""
    if points.current() is None:
        return
    sent = (headers or {}).get("id")
    if sender == BODY:
        points.record("sent", id=sent)
    elif sender == STEP and sent != _running_id():
        points.record("next", id=sent)
    else:
        return
    points.point("published")


def _running_id() -> str | None:
    from celery import current_task

    return getattr(getattr(current_task, "request", None), "id", None)


def _install_points() -> None:
    from celery.backends.redis import RedisBackend

    original = RedisBackend.on_chord_part_return
    if getattr(original, "_suite", False):
        return

    def on_chord_part_return(self: Any, request: Any, state: Any, result: Any, **kw: Any) -> Any:
        points.point("count")
        returned = original(self, request, state, result, **kw)
        points.point("counted")
        return returned

    on_chord_part_return._suite = True  # type: ignore[attr-defined]
    RedisBackend.on_chord_part_return = on_chord_part_return
    signals.after_task_publish.connect(_published, weak=False)


def register(app: Any) -> None:
    """The canvas tasks on ``app``, and the points in Celery's chord counting. The
    join mode: ``result_chord_ordered`` is read from the backend's transport options
    (celery/backends/redis.py ``RedisBackend._chord_zset``)."""
    import os

    from tasks.settings import Settings

    global _ordered
    ordered = _ordered = Settings.from_env(os.environ).chord_ordered
    options = dict(app.conf.get("result_backend_transport_options") or {})
    app.conf.result_backend_transport_options = {**options, "result_chord_ordered": ordered}
    _install_points()
    app.task(name=PART, bind=True, base=CanvasPart)(part)
    app.task(name=BODY, bind=True)(body)
    app.task(name=STEP, bind=True, base=CanvasStep)(step)
