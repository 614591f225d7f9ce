"""Replace a killed prefork child in milliseconds, not seconds.

The pool wakes when a child's sentinel pipe closes, but the kernel closes a dying
process's files before it becomes reapable, so ``maintain_pool`` often finds no exit
code yet and the replacement waits for the next periodic run, 5 s later
(celery/concurrency/asynpool.py ``AsynPool.timers``). Measured here: 5 s in 4 of 5
kills. The suite kills children often and waits for a full pool before an example; a
shorter period changes when, not whether, the child is replaced.
"""

from __future__ import annotations


def install(period: float) -> None:
    """Run ``AsynPool.maintain_pool`` every ``period`` seconds."""
    from celery.concurrency import asynpool

    asynpool.AsynPool.timers = property(lambda self: {self.maintain_pool: period})
