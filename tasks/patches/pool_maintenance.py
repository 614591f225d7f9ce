"""Replace a killed prefork child in milliseconds, not seconds, without polling.

The pool wakes when a child's sentinel pipe closes, but the kernel closes a dying
process's files before it becomes reapable, so ``maintain_pool`` often finds no exit
code yet and the replacement waits for the next periodic run, 5 s later
(celery/concurrency/asynpool.py ``AsynPool._event_process_exit`` and ``timers``).
Measured here: 5 s in 4 of 5 kills.

An earlier version of this patch ran ``maintain_pool`` every 10 ms in every worker.
That cost an idle prefork main process about 18% of a core (docs/findings/harness.md),
and a ci run keeps dozens of workers alive. Now the retry is driven by the event that
needs it: after a sentinel closes, ``maintain_pool`` runs again every ``period``
seconds until that child is reaped (or for 5 s, after which Celery's own timer is the
net). An idle worker does no extra work; a shorter wait changes when, not whether, the
child is replaced.
"""

from __future__ import annotations

from typing import Any

GIVE_UP_AFTER = 5.0  # seconds: Celery's own maintain_pool period takes over after this


def install(period: float) -> None:
    """Retry ``maintain_pool`` every ``period`` seconds until an exited child is reaped."""
    from celery.concurrency import asynpool

    def event_process_exit(self: Any, hub: Any, proc: Any) -> None:
        self._untrack_child_process(proc, hub)
        self.maintain_pool()
        tries = int(GIVE_UP_AFTER / period)

        def again(left: int) -> None:
            # A reaped child has left ``_pool`` (billiard/pool.py _join_exited_workers).
            if proc not in self._pool or left <= 0:
                return
            self.maintain_pool()
            hub.call_later(period, again, left - 1)

        if proc in self._pool:
            hub.call_later(period, again, tries)

    asynpool.AsynPool._event_process_exit = event_process_exit
