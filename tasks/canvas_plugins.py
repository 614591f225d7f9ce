"""A plug-in canvas: the user's own tasks, a signature built from them, run under the
suite's control.

The contract (README "Checking your own canvas", examples/canvas/)::

    def make_canvas(app, resources):
        @app.task(name="shop.charge")
        def charge(order): ...        # an effect through resources.db(), keyed by order
        @app.task(name="shop.ship")
        def ship(order): ...
        return lambda order: chain(charge.s(order), ship.s())

``make_canvas`` is called once in each process that sends or runs the canvas: every
worker's main process (before its pool forks, so the children have the tasks) and the
suite's sender, once per broker. ``app`` is the suite's Celery app behind a thin proxy
whose ``task`` decorator registers the task as usual and makes each of its runs a
controlled execution (points ``start``, then every statement on ``resources.db()``,
``done`` when the function returns, ``published`` when the run publishes the canvas's
next signature, ``stored`` once Celery stored SUCCESS, before the ack). It returns
``build(order) -> Signature``: the suite calls it with a fresh order key per example
and counts the invoice rows whose ``order_id`` is that key or starts with ``key:``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from tasks import points
from tasks.canvas_runs import CanvasStep, hold_open
from tasks.plugins import Builtins, load_plugin

Build = Callable[[str], Any]
MakeCanvas = Callable[[Any, Any], Build]

# The shipped examples (examples/canvas/), each docstring says SOUND or BROKEN.
BUILTIN_CANVASES: Builtins[MakeCanvas] = Builtins(
    {
        "charge-then-ship": "examples.canvas.charge_then_ship:make_canvas",
        "ship-twice": "examples.canvas.ship_twice:make_canvas",
    }
)

CONTROLLED: set[str] = set()  # names of the plug-in tasks this process registered
_builds: dict[tuple[str, int], Build] = {}


def load_canvas(spec: str) -> MakeCanvas:
    """The canvas factory named by ``spec``: a shipped example's name or ``pkg.mod:attr``.

    Raises ValueError with a one-line message that says what to fix."""
    return load_plugin(
        spec, BUILTIN_CANVASES, kind="canvas", factory="make_canvas",
        returns="build(order) -> Signature",
    )  # fmt: skip


def build(spec: str, app: Any) -> Build:
    """``build`` of ``spec`` on ``app``, made once per process and app (the factory
    registers its tasks on the app)."""
    key = (spec, id(app))
    if key not in _builds:
        from tasks import loaded

        made = load_canvas(spec)(PluginApp(app), loaded.resources())
        if not callable(made):
            raise ValueError(
                f"plug-in canvas {spec!r}: make_canvas returned a {type(made).__name__}, "
                "not build(order) -> Signature"
            )
        _builds[key] = made
    return _builds[key]


class PluginApp:
    """The app a plug-in registers its tasks on: Celery's own, whose ``task``
    decorator also makes every run of the task a controlled execution."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def task(self, *args: Any, **options: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not options:
            return self.task()(args[0])  # @app.task without parentheses

        def register(fun: Callable[..., Any]) -> Any:
            base = options.pop("base", None)
            if base is not None and not issubclass(base, CanvasStep):
                base = type(f"Suite{base.__name__}", (CanvasStep, base), {})
            made = self._app.task(*args, base=base or CanvasStep, **options)(controlled(fun))
            CONTROLLED.add(made.name)
            return made

        return register


def controlled(fun: Callable[..., Any], hold: bool = True) -> Callable[..., Any]:
    """``fun`` as a controlled execution. It is named by the controller from the task
    id (the runner named each task of the built canvas ``t1``, ``t2``, ...) and, with
    ``hold``, parks at ``done`` when ``fun`` returned and stays open past the return,
    through Celery's publish of the next signature and its ``mark_as_done``, until
    ``CanvasStep.after_return``; without, it ends as ``fun`` returns. A run that asks
    for a retry (``Retry``) ends there, its RETRY stored after."""

    @functools.wraps(fun)
    def run(*args: Any, **kwargs: Any) -> Any:
        from celery import current_task
        from celery.exceptions import Retry

        request = current_task.request
        redelivered = bool((request.delivery_info or {}).get("redelivered"))
        level = int(request.retries or 0)
        stack = ExitStack()
        try:
            stack.enter_context(points.execution("", "", redelivered, level, task_id=request.id))
        except points.StaleExecution:
            return "stale"
        try:
            result = fun(*args, **kwargs)
            if hold:
                points.point("done")
        except Retry:
            stack.close()  # ends "ok": asking for a retry is not a failure of the task
            raise
        except BaseException as exc:
            stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        finally:
            from tasks import loaded

            loaded.end_db_transaction()
        if hold:
            hold_open(stack)
        else:
            stack.close()
        return result

    return run
