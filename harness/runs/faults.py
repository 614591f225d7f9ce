"""The delivery runner's faults on the active worker, and the standby's take-over.

    kill-main tN SIGKILL the main process of tN's worker (prefork: children die too)
    term         SIGTERM to the active worker (warm shutdown); the standby takes over
    quit         SIGQUIT to the active worker (cold shutdown); it exits, the standby
                 takes over
    drop         cut the active worker's broker connections; it reconnects
    ctimeout     RabbitMQ's consumer_timeout passes (a private node)
    idle         wall time passes, past the heartbeat timeout of a worker shutting down

Each marks in the message accounting (harness/accounting.py) what the broker takes
back, and waits for what must have happened before the next settle can be trusted.
The runner's state (its active worker, the workers draining, the next alias) is the
runner's: these act on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness import accounting
from model import history as h

if TYPE_CHECKING:
    from harness.runs.delivery import DeliveryRun, DeliveryRunner
    from harness.workers import Worker

BROKER_POLL = 0.01  # between looks at a broker queue while a move's effect lands
# Heartbeat intervals the idle move lets pass: RabbitMQ closes a connection after two
# missed ones (its heartbeat timeout); four leave room for a loaded machine.
IDLE_HEARTBEATS = 4


def take_over(r: DeliveryRunner, run: DeliveryRun) -> None:
    """The standby adopts the scenario's queue and becomes the next wK."""
    alias = f"w{r.consumers + 1}"
    r.worker = r.cluster.replace(r.spec, adopt=[r.queue], alias=alias)
    r.consumers += 1
    run.history.append(h.Restarted(alias))


def warm_shutdown(r: DeliveryRunner, run: DeliveryRun) -> None:
    """SIGTERM to the active worker's main process: it stops consuming, finishes
    what runs (as the scenario steps it), acks, gives back what it holds unstarted,
    and exits. The standby takes the queue over at once."""
    ctl, worker = r.cluster.controller, r.worker
    run.history.append(h.Shutdown(ctl.aliases.get(worker.hostname, "?"), "warm"))
    worker.terminate()
    drain(r, worker, run)


def drain(r: DeliveryRunner, worker: Worker, run: DeliveryRun) -> None:
    """``worker`` is on its way out, finishing what runs: the settles wait for its
    exit, and the standby takes the queue over now."""
    r.draining.append(worker)
    r.cluster.retire(worker)
    take_over(r, run)


def cold_shutdown(r: DeliveryRunner, run: DeliveryRun) -> None:
    """SIGQUIT to the active worker's main process: Celery cancels the runs (their
    children get SIGTERM), stops the pool and exits on its own; this waits for
    the exit. What the worker held unacked goes back to the broker: RabbitMQ when
    the connection closes, Redis if the worker's own restore at shutdown finishes
    (otherwise the entry stays unacked until a ``vt``)."""
    ctl, worker = r.cluster.controller, r.worker
    host = worker.hostname
    run.history.append(h.Shutdown(ctl.aliases.get(host, "?"), "cold"))
    victims = [e for e in ctl.live() if r.runs_on(worker, e)]
    worker.quit()
    # A cancelled prefork run gets SIGTERM, which billiard turns into SystemExit
    # inside the task: it ends ("done", error) rather than vanishing.
    ctl.wait(lambda: all(e.state in ("dead", "done") for e in victims), "the cancelled runs to go")
    unacked = set(r.broker.unacked_ids()) if r.config.broker == "redis" else set()
    for tid, m in ctl.messages.items():
        # Given back by the broker (AMQP) or restored by the worker (Redis).
        if tid not in unacked:
            m.closed += m.outstanding(host)
    if r.config.broker == "amqp":
        await_consumer_gone(r)
    r.cluster.retire(worker)
    take_over(r, run)


def drop(r: DeliveryRunner, run: DeliveryRun) -> None:
    """The active worker loses the broker and reconnects by itself. Its unacked
    deliveries come back: RabbitMQ requeues a dead connection's at once, and on
    Redis the worker restores its own as it closes the dead channel (kombu's
    virtual ``Channel.close``: ``restore_unacked_once``). The next settle waits for
    those redeliveries to arrive."""
    ctl, worker = r.cluster.controller, r.worker
    run.history.append(h.ConnectionDropped(ctl.aliases.get(worker.hostname, "?")))
    r.cluster.drop_connection(worker)
    accounting.hand_back(ctl.messages.values(), worker.hostname)


def consumer_timeout(r: DeliveryRunner, run: DeliveryRun) -> None:
    """RabbitMQ's ``consumer_timeout`` passes for the active worker's oldest
    unacked delivery: the broker closes that channel, dropping its consumer, and
    requeues what was unacked on it (about the timeout plus one channel tick after
    the delivery: harness/rabbit.py). Celery 5.7 takes the channel error for an
    unrecoverable one ("Unrecoverable error: PreconditionFailed", celery #6760):
    the worker begins a warm shutdown by itself and finishes what runs, so the
    standby takes the queue over, as after ``term``; the settles wait for the
    redelivery and for the old worker's exit."""
    ctl, worker = r.cluster.controller, r.worker
    run.history.append(h.ConsumerTimedOut(ctl.aliases.get(worker.hostname, "?")))
    await_consumer_gone(r)
    accounting.hand_back(ctl.messages.values(), worker.hostname)
    drain(r, worker, run)


def heartbeat_gap(r: DeliveryRunner, run: DeliveryRun) -> None:
    """Wall time passes (``IDLE_HEARTBEATS`` heartbeat intervals) while the worker
    shutting down warm holds a parked run: the one move that waits on the clock, since
    the broker's heartbeat timeout is wall time in RabbitMQ. A worker that sends
    heartbeats while its pool drains keeps its connection. One that sends none (Celery
    before 5.6.1: the prefork main process blocks in the pool's join and fires no
    timers, celery #5998) loses it: RabbitMQ closes the connection and requeues its
    unacked deliveries, which the standby then takes. Seen here by the delivery coming
    back (queued, or received by the standby); the settle then waits for its run."""
    ctl, worker = r.cluster.controller, r.draining[-1]
    host, alias = worker.hostname, ctl.aliases.get(worker.hostname, "?")
    seconds = IDLE_HEARTBEATS * (r.config.heartbeat or 0.0)
    run.history.append(h.HeartbeatGap(alias, seconds))
    held = [m for m in ctl.messages.values() if m.outstanding(host)]
    end = time.monotonic() + seconds  # the broker's clock is the point of this move
    ctl.wait(
        lambda: time.monotonic() >= end, "the heartbeat timeout to pass", timeout=seconds + 30,
        poll=0.1,
    )  # fmt: skip
    standby = r.worker.hostname
    if r.broker.ready(r.queue) or any(standby in m.received for m in held):
        run.history.append(h.ConnectionDropped(alias))
        accounting.hand_back(held, host)


def kill_main(r: DeliveryRunner, run: DeliveryRun) -> None:
    """SIGKILL the active worker's main process (a prefork pool's children die with
    it); the standby takes the queue over."""
    ctl, worker = r.cluster.controller, r.worker
    main = worker.main()
    run.history.append(h.Killed(ctl.name_of(main)))
    victims = [e for e in ctl.live() if r.runs_on(worker, e)]
    worker.kill_main()
    ctl.wait(lambda: all(e.state == "dead" for e in victims), f"{main.name}'s executions to go")
    if r.config.broker == "amqp":
        accounting.hand_back(ctl.messages.values(), worker.hostname)
        await_consumer_gone(r)
    take_over(r, run)


def await_consumer_gone(r: DeliveryRunner) -> None:
    """RabbitMQ requeues a closed connection's unacked messages when it drops its
    consumer: wait for that, or the requeue could land after the verdict."""
    r.cluster.controller.wait(
        lambda: r.broker.consumers(r.queue) == 0,
        "RabbitMQ to drop the gone worker's consumer", poll=BROKER_POLL,
    )  # fmt: skip


# The faults on the active worker as a whole, by move verb (kill-main is a kill).
FAULTS: dict[str, Callable[[DeliveryRunner, DeliveryRun], None]] = {
    "term": warm_shutdown, "quit": cold_shutdown, "drop": drop, "ctimeout": consumer_timeout,
    "idle": heartbeat_gap,
}  # fmt: skip
