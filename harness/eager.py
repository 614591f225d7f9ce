"""The same scenarios under ``task_always_eager``: what an eager-mode test suite sees.

``apply_async`` then calls ``apply`` (celery/app/task.py), which runs the task inline,
in this process, to its end: no broker, no worker, no pool, no interleaving. The
scheduling points do not park (tasks/points.py ``inline``); each task's reports are
read back into a history of the same shape as a worker run's. The tasks run in the
caller, so the history names their process ``w1`` (one process, one task at a time,
like a solo worker) and the sender's own reads ``app``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harness import recorder
from harness.controller import Execution
from model import history as h
from model.processes import APP

_examples = itertools.count(1)


@contextmanager
def _eager() -> Iterator[Any]:
    from tasks.app import app

    before = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    try:
        yield app
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = before


Log = list[tuple[str, str, dict[str, Any]]]


def _translate(
    history: h.History, log: Log, report: Callable[[str, str, dict[str, Any]], None]
) -> None:
    """Move the reports in ``log`` into ``history``; ``report`` maps a task's own."""
    for x, kind, data in log:
        if kind == "start":
            history.append(h.Started(x, x, "w1"))
        elif kind == "end":
            history.append(h.Finished(x, data["status"], data.get("error")))
        else:
            report(x, kind, data)
    log.clear()


def state_run(store: str, prop: str, ops: list[str]) -> h.History:
    """Run ``ops`` (write, read, incr, incr-locked) as eager tasks, one after another."""
    from tasks import points, state
    from tasks.app import state_op

    key = f"eager-state:{next(_examples)}"
    history = h.History()
    log: Log = []

    def report(x: str, kind: str, data: dict[str, Any]) -> None:
        if kind not in ("locked", "unlocked"):  # the lock only steers the scheduler
            history.append(h.observed(kind, x, "w1", data))

    with _eager(), points.inline(log):
        for i, op in enumerate(ops, 1):
            task = f"t{i}"
            history.append(h.Submitted(task))
            spec = {"execution": task, "task": task, "op": op, "store": store, "key": key}
            state_op.apply_async(args=[{**spec, "value": i}])
            _translate(history, log, report)
    if prop == "sender-sees-task-writes":
        history.append(h.Read("app", APP, state.get(store, key)))
    return history


def lock_run(lock: str, tasks: int) -> h.History:
    """``tasks`` invoice tasks for one order under ``lock``, eagerly: each takes the
    lock, creates the invoice unless one exists, and releases, before the next is sent.
    The reports become lock events the way the controller makes them (harness/recorder.py)."""
    from tasks import points
    from tasks.app import invoice

    n = next(_examples)
    order, key = f"eager-o{n}", f"eager-invoice:{n}"
    recording = recorder.Recording()
    log: Log = []
    with _eager(), points.inline(log):
        for i in range(1, tasks + 1):
            task = f"t{i}"
            recording.history.append(h.Submitted(task))
            spec = {
                "execution": task, "task": task, "key": key, "order": order,
                "ttl": 3600.0, "lock": lock,
            }  # fmt: skip
            invoice.apply_async(args=[spec])
            ex = Execution(task, task, 0, "w1", 0)

            def report(_x: str, kind: str, data: dict[str, Any], ex: Execution = ex) -> None:
                recorder.record(recording, ex, {"k": kind, **data})

            _translate(recording.history, log, report)
    from tasks.invoices.models import Invoice

    recording.history.append(h.InvoiceCount(order, Invoice.objects.filter(order=order).count()))
    if recording.anomalies:
        raise RuntimeError("; ".join(recording.anomalies))
    return recording.history
