"""The delivery task's body: an effect between two scheduling points, maybe retried.

``tasks.app`` registers ``deliver`` as ``suite.deliver`` with ``base=DeliverTask`` and
``autoretry_for=(Flaky,)``.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack, suppress
from typing import Any

from celery import Task

from tasks import loaded, points


class Flaky(Exception):
    """What a task with ``autoretry_for=(Flaky,)`` raises to be retried."""


# An autoretry run's execution, left open when the body raises Flaky: Celery's
# autoretry wrapper publishes the retry after the body has returned
# (celery/app/autoretry.py: ``task.retry(exc=exc)``), and the run is not acked until
# after that, so the execution stays open across the publish to give that window the
# same ``retried`` point a ``self.retry()`` run has.
_autoretrying = threading.local()


def retry_after_return(run: ExitStack) -> None:
    """An autoretry run's open execution: ``DeliverTask.retry`` closes it once Celery
    has published the retry (the ``retried`` point first). Call it just before raising
    the exception ``autoretry_for`` names."""
    _autoretrying.run = run


class DeliverTask(Task):
    def retry(self, *args: Any, **kwargs: Any) -> Any:
        open_run: ExitStack | None = getattr(_autoretrying, "run", None)
        _autoretrying.run = None
        if open_run is None:
            return super().retry(*args, **kwargs)
        try:
            return super().retry(*args, **kwargs)  # publishes, raises Retry
        finally:  # Retry, or past max_retries the Flaky itself
            with suppress(points.StaleExecution):  # over: Celery finishes anyway
                points.point("retried")
            open_run.close()  # ends the execution "ok", as a self.retry() run's


def deliver(self: Any, spec: dict[str, Any]) -> str:
    """Run the order's effect (create its invoice) between two scheduling points.

    ``start`` (parked before anything runs), the effect's own SQL points, then ``done``
    (the effect has committed; the task has not returned, so with acks_late the
    message is still unacked: a fault here is the classic "ran but not acked").

    With ``spec["retries"] = n`` the first n runs of the lineage ask to be retried
    after the effect: ``self.retry(countdown=0, max_retries=...)`` between the points
    ``retry`` (nothing published yet) and ``retried`` (the retry message is out, this
    one not acked yet), or, with ``spec["autoretry"]``, by raising ``Flaky``
    (``autoretry_for``) after the point ``retry``; Celery then publishes the retry and
    the same ``retried`` point follows (``DeliverTask.retry``)."""
    from celery.exceptions import MaxRetriesExceededError, Retry

    order, task = spec["order"], spec["task"]
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    level = int(self.request.retries or 0)
    outcome: BaseException | None = None
    run = ExitStack()
    try:
        with run:
            run.enter_context(
                points.execution(task, task, redelivered, level, task_id=self.request.id)
            )
            loaded.effect(spec["effect"])(order)
            points.record("effect", order=order)
            if level < int(spec.get("retries", 0)):
                points.point("retry")
                max_retries = int(spec.get("max_retries", 3))
                # Reported before retry() publishes (celery/app/task.py: past
                # max_retries when request.retries + 1 > max_retries), so the report
                # is in the history before the new message's receipt.
                points.record("retry" if level < max_retries else "exhausted", level=level + 1)
                if spec.get("autoretry"):
                    self.max_retries = max_retries  # what autoretry_for passes on
                    outcome = Flaky(f"asked to retry at level {level}")
                    retry_after_return(run.pop_all())
                else:
                    try:
                        self.retry(countdown=0, max_retries=max_retries)
                    except (Retry, MaxRetriesExceededError) as exc:
                        outcome = exc
                    points.point("retried")
            else:
                points.point("done")
    except points.StaleExecution:
        return "stale"
    finally:
        loaded.end_db_transaction()  # no transaction of this run outlives it
    if outcome is not None:
        raise outcome  # Celery takes it from here: RETRY, or FAILURE past max_retries
    return "ok"
