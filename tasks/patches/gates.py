"""Two scheduling points inside Celery's prefork pool, for the claims about the window
between a job reaching a child and its message being acked.

``accept``: the child has read the job from its pipe and not yet sent the parent its
ACK (billiard/pool.py ``Worker.workloop``: ``wait_for_job`` then ``put((ACK, ...))``),
so the parent sees it written, not accepted.
``accepted``: the parent got that ACK and has not yet acked the message
(celery/worker/request.py ``Request.on_accepted``, which acks when not acks_late).

Each asks the controller (``tasks.points.gate``), which holds only the job the
scenario names; every other job passes at the cost of one round trip. Installed only
in workers started with gates (``Settings.gates``), before the pool forks its children.
"""

from __future__ import annotations

from typing import Any

from tasks import points


def install() -> None:
    """Gate ``billiard.pool.Worker.wait_for_job`` and ``Request.on_accepted``."""
    from billiard import pool
    from celery.worker.request import Request

    make, accepted = pool.Worker._make_child_methods, Request.on_accepted

    def make_child_methods(self: Any, *args: Any, **kwargs: Any) -> None:
        make(self, *args, **kwargs)
        receive = self.wait_for_job

        def wait_for_job(*a: Any, **kw: Any) -> Any:
            req = receive(*a, **kw)
            if req:  # (TASK, (job, i, fun, args, kwargs)); args[1] is the task id
                targs = req[1][3]  # celery/worker/request.py ``execute_using_pool``
                if len(targs) > 1 and isinstance(targs[1], str):
                    points.gate("accept", targs[1])
            return req

        self.wait_for_job = wait_for_job

    def on_accepted(self: Any, pid: int, time_accepted: float) -> None:
        points.gate("accepted", self.id)
        accepted(self, pid, time_accepted)

    pool.Worker._make_child_methods = make_child_methods
    Request.on_accepted = on_accepted
