"""A canvas task's execution left open past its function's return.

Celery publishes a chain's next signature, stores the result and counts a chord's part
after the task function returned (celery/app/trace.py ``trace_task``), before
``after_return`` and the ack. A header's, a step's or a plug-in task's run keeps its
execution open across that (``hold_open``), so those are scheduling points of the
run, and its base class ends it in ``after_return``.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import Any

from celery import Task

from tasks import points

_open = threading.local()


def hold_open(run: ExitStack) -> None:
    """Keep ``run``'s execution open until this thread's task's ``after_return``."""
    _open.run = run


def _take() -> ExitStack | None:
    run: ExitStack | None = getattr(_open, "run", None)
    _open.run = None
    return run


class CanvasPart(Task):
    """A chord's header task: its run ends stored and counted, not acked yet."""

    def after_return(self, *args: Any, **kwargs: Any) -> None:
        if (run := _take()) is not None:
            run.close()


class CanvasStep(Task):
    """A chain's step (a group's member, a plug-in canvas's task): its run parks at
    ``stored`` (SUCCESS stored, not acked yet), then ends."""

    def after_return(self, *args: Any, **kwargs: Any) -> None:
        if (run := _take()) is not None:
            with run:
                points.point("stored")
