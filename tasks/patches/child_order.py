"""Which idle prefork child gets the next job: the lowest-numbered one, and the
controller hears when the parent has taken a child's result back.

Celery's AsynPool writes a job to the first idle child in the order the event loop
lists their writable inqueues (celery/concurrency/asynpool.py ``schedule_writes``,
set as the hub's ``consolidate_callback``): the order of the epoll ready list, which
follows file descriptor numbers that earlier kills and replacements left behind, and
whether the parent has read the last result of a child yet (with ``-O fair`` a child
is busy until then, ``on_job_ready``). A child's state can differ from its sibling's
(a per-process cache keeps an entry a lease's holder did not delete once it
expired), so the same moves could run the next task in another child and replay
differently: Hypothesis's "Inconsistent data generation" on
``lease-mutual-exclusion cookbook-locmem/prefork/c4`` (2026-12-07,
docs/findings/harness.md).

Here the parent offers its idle children in the order of billiard's process index
(0..concurrency-1; a replacement takes the lowest free index,
billiard/pool.py ``_avail_index``), and tells the controller each time it takes a
result back (``free``, naming the child's pid) and each time it takes a new child in
(``up``), so the harness sends a task only once the parent agrees with it on which
children are there and free (``Controller.unsettled``).
"""

from __future__ import annotations

from typing import Any

from tasks import points

_LAST = 1 << 30  # an inqueue whose child is gone: offered last (the pool drops it)


def in_index_order(ready_fds: list[int], inqueues: dict[int, Any]) -> list[int]:
    """The writable inqueues ``ready_fds``, their children's process index first."""

    def index(fd: int) -> int:
        proc = inqueues.get(fd)
        return _LAST if proc is None else int(proc.index)

    return sorted(ready_fds, key=index)


def install() -> None:
    from celery.concurrency import asynpool

    create_write_handlers = asynpool.AsynPool._create_write_handlers
    on_job_ready = asynpool.AsynPool.on_job_ready
    on_process_alive = asynpool.AsynPool.on_process_alive

    def ordered_write_handlers(self: Any, hub: Any, *args: Any, **kwargs: Any) -> Any:
        done = create_write_handlers(self, hub, *args, **kwargs)
        schedule_writes = hub.consolidate_callback
        inqueues = self._fileno_to_inq

        def by_index(ready_fds: list[int], total_write_count: Any = None) -> Any:
            return schedule_writes(in_index_order(ready_fds, inqueues), total_write_count)

        hub.consolidate_callback = by_index
        return done

    def job_ready(self: Any, job: Any, i: Any, obj: Any, inqW_fd: int) -> None:
        on_job_ready(self, job, i, obj, inqW_fd)
        proc = self._fileno_to_inq.get(inqW_fd)
        if proc is not None:
            points.notify("free", pid=proc.pid)

    def process_alive(self: Any, pid: int) -> Any:
        # From here on the parent writes jobs to this child (its WORKER_UP was read);
        # the child's own hello comes earlier, from worker_process_init.
        done = on_process_alive(self, pid)
        points.notify("up", pid=pid)
        return done

    # Bound when the pool is created (its ResultHandler keeps them): install before.
    asynpool.AsynPool._create_write_handlers = ordered_write_handlers
    asynpool.AsynPool.on_job_ready = job_ready
    asynpool.AsynPool.on_process_alive = process_alive
