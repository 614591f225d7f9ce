"""The bodies of the suite's tasks but delivery's (tasks/deliver.py).

Plain functions: ``tasks.app`` registers each under its task name. Each runs inside a
controlled execution (``tasks.points.execution``) and returns ``"stale"`` when the
controller has already written that execution off.
"""

from __future__ import annotations

from typing import Any

from tasks import loaded, points


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def invoice(spec: dict[str, Any]) -> str:
    """Take the lock for the order; if acquired, create its invoice unless one exists."""
    from tasks.invoices.models import Invoice

    key, order, x = spec["key"], spec["order"], spec["execution"]
    try:
        with points.execution(x, spec["task"]):
            lock = loaded.lock(spec["lock"])
            points.record("acq", key=key)
            try:
                cm = lock(key, float(spec["ttl"]))
                acquired = bool(cm.__enter__())
            except Exception as exc:
                points.record("acq_end", key=key, acquired=False, error=_error(exc))
                raise
            points.record("acq_end", key=key, acquired=acquired)
            try:
                if acquired:
                    points.point("cs")
                    if not Invoice.objects.filter(order=order).exists():
                        Invoice.objects.create(order=order, execution=x)
                        points.record("invoice", order=order)
            finally:
                if acquired:
                    points.record("rel", key=key)
                try:
                    cm.__exit__(None, None, None)
                except Exception as exc:
                    if not acquired:
                        raise
                    points.record("rel_end", key=key, error=_error(exc))
                else:
                    if acquired:
                        points.record("rel_end", key=key)
    except points.StaleExecution:
        return "stale"
    return "ok"


def chord_body(results: list[str]) -> int:
    """The body of the one-task chord a delivery claim may send ``suite.deliver`` in:
    Celery runs it once every header task has succeeded."""
    return len(results)


def state_op(spec: dict[str, Any]) -> str:
    """One read or write of the value the module-state properties watch (tasks/state.py)."""
    from tasks import state

    try:
        with points.execution(spec["execution"], spec["task"]):
            state.run(spec)
    except points.StaleExecution:
        return "stale"
    return "ok"


def find_row(spec: dict[str, Any]) -> str:
    """Look up the row the sender wrote before sending this task (tasks/publishing.py)."""
    from tasks import publishing

    try:
        with points.execution(spec["execution"], spec["task"]):
            points.record("looked", found=publishing.find(spec["key"]))
    except points.StaleExecution:
        return "stale"
    return "ok"
