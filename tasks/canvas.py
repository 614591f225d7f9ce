"""The canvas tasks: a chord's header task and its body, with scheduling points inside
Celery's own chord counting.

``register(app)`` (called once by ``tasks.app``) registers ``suite.canvas_part`` (a
header task) and ``suite.canvas_body`` (the body), and puts scheduling points around
the Redis result backend's ``on_chord_part_return`` and after the body's publish.

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
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import Any

from celery import Task, signals

from tasks import points

PART = "suite.canvas_part"
BODY = "suite.canvas_body"

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


def _published(sender: Any = None, headers: Any = None, **_: Any) -> None:
    """The body left a header run's count (``callback.delay``): the keys are not
    cleaned up yet."""
    if points.current() is None or sender != BODY:
        return
    points.record("sent", id=(headers or {}).get("id"))
    points.point("published")


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
