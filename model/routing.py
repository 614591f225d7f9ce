"""The routing model: which queue a task goes to, who may run it, and in which order.

Sources, Celery 5.7.0 and kombu 5.7.0 as installed:

- **Precedence.** ``Task.apply_async`` merges the task's own execution options (its
  ``queue`` attribute among them, ``extract_exec_options``) under the call's:
  ``options = dict(preopts, **options)`` (celery/app/task.py). ``Router.route``
  (celery/app/routes.py) then looks ``task_routes`` up and merges the route *under*
  those options (``lpmerge(route, options)``: a value of the right side that is not
  None wins), and only when no queue is named at all takes ``task_default_queue``
  (default ``'celery'``, celery/app/defaults.py). So: the ``queue`` option of
  ``apply_async``, then the task's ``queue`` attribute (deprecated, removal in 6.0:
  ``Task.bind``), then ``task_routes``, then the default queue.
- **Missing queues.** ``Router.expand_destination`` looks the name up in
  ``app.amqp.queues``; ``Queues.__missing__`` (celery/app/amqp.py) makes the queue
  when ``task_create_missing_queues`` is on (the default), and the publish declares it
  (``send_task_message``: ``declare=[queue]``): a queue nobody consumes takes the
  message and nothing says so. Off, the look-up raises ``QueueNotFound`` in the
  sender, and nothing is published.
- **Consumers.** A worker consumes only the queues of its ``-Q`` (``Queues.select``),
  not the default queue besides them.
- **Retries.** ``Task.retry`` (what ``autoretry_for`` calls, celery/app/autoretry.py)
  publishes ``signature_from_request``: when the delivery came through the anonymous
  exchange (``exchange == ''``, as every direct route is published,
  ``send_task_message``), the new message goes to ``queue=routing_key``, the queue it
  came from. celery #8357 reports autoretries landing in the default queue on Redis;
  that is not what this source does (the runs decide: ``runs-on-its-queue``).
- **Priorities.** Redis (kombu/transport/redis.py): a message of priority p goes to the
  list ``queue`` + ``sep`` + the step at or below p (``_q_for_pri``; steps 0, 3, 6, 9),
  and ``_brpop_start`` asks for ``for pri in priority_steps for queue in queues``: the
  lowest number first, in every ``queue_order_strategy`` (which orders the queues of one
  consumer only, ``kombu.utils.scheduling``). RabbitMQ: the highest number first, on a
  queue declared with ``x-max-priority`` (``task_queue_max_priority``). A task sent
  without a priority has priority 0 (``default_priority``). Equal priorities: first in,
  first out. Either way the order only decides among messages still at the broker: the
  worker prefetches ``concurrency x worker_prefetch_multiplier`` unacked messages, and
  under early ack a task is acked when it starts (``Request.on_accepted``), so the
  next message is fetched while it runs, before one sent later.

The scenario: one task kind, ``suite.routed`` (tasks/routing.py), sent 1-3 times
(``t1``..``t3``) the config's way, to workers named ``w1``, ``w2``, ... consuming the
config's queues in order. Queue names: ``qr`` (named by ``task_routes``), ``qt`` (the
task's attribute), ``qo`` (the ``queue`` option), ``celery`` (the default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from model import history as h
from model.config import BROKERS, Broker
from model.invariants import Violation
from model.processes import worker_of
from model.verdict import Mismatch, Prediction

Mechanism = Literal["routes", "attr", "option"]
MECHANISMS: tuple[Mechanism, ...] = ("routes", "attr", "option")  # the label's order
PRECEDENCE: tuple[Mechanism, ...] = ("option", "attr", "routes")  # the first present wins
QUEUE_OF: dict[Mechanism, str] = {"routes": "qr", "attr": "qt", "option": "qo"}
DEFAULT_QUEUE = "celery"  # task_default_queue's default (celery/app/defaults.py)
QUEUES = ("qr", "qt", "qo", DEFAULT_QUEUE)
Strategy = Literal["round_robin", "priority"]
STRATEGIES: tuple[Strategy, ...] = ("round_robin", "priority")
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu/transport/redis.py PRIORITY_STEPS
PRIORITIES = (0, 9)  # what a priority scenario's submits draw from
MAX_PRIORITY = 10  # task_queue_max_priority on RabbitMQ (x-max-priority)
MAX_RETRIES = 1
QUEUE_NOT_FOUND = "QueueNotFound"

ON_ITS_QUEUE = "runs-on-its-queue"
NOT_STUCK = "no-stuck-task"
PRIORITY_ORDER = "priority-order"
PROPERTIES = {
    ON_ITS_QUEUE: "every run of a task (each retry too) takes its message from the queue "
    "the task was sent to, on a worker that consumes that queue",
    NOT_STUCK: "every task sent runs, or its send raises: none waits unseen in a queue "
    "no worker consumes",
    PRIORITY_ORDER: "a task never starts while a task of higher priority (the broker's "
    "order) waits",
}


@dataclass(frozen=True)
class RoutingConfig:
    """A routing scenario's setup.

    ``route``: the ways the task names a queue (none: the default queue); ``workers``:
    each worker's ``-Q``, in worker order (``w1`` first), no queue consumed twice;
    ``create_missing``: ``task_create_missing_queues`` (off: ``task_queues`` declares
    the queues the workers consume, and nothing else); ``retries``: the first runs of
    each task autoretry this often; ``priorities``: a priority scenario (one worker,
    every task sent with a priority); ``acks_late``; ``strategy``: Redis's
    ``queue_order_strategy``. Every worker runs the threads pool with one slot and a
    prefetch of one: routing happens in the sender and the consumer, not the pool.
    """

    broker: Broker = "redis"
    route: tuple[Mechanism, ...] = ()
    workers: tuple[tuple[str, ...], ...] = ((DEFAULT_QUEUE,),)
    create_missing: bool = True
    retries: int = 0
    priorities: bool = False
    acks_late: bool = False
    strategy: Strategy = "round_robin"

    def __post_init__(self) -> None:
        if self.broker not in BROKERS:
            raise ValueError(f"unknown broker {self.broker!r}: choose one of {', '.join(BROKERS)}")
        if any(m not in MECHANISMS for m in self.route):
            raise ValueError(f"unknown route {self.route!r}: a subset of {', '.join(MECHANISMS)}")
        if tuple(m for m in MECHANISMS if m in self.route) != self.route:
            raise ValueError(f"route {self.route!r}: each way once, in the order {MECHANISMS}")
        if not 1 <= len(self.workers) <= 3 or not all(self.workers):
            raise ValueError("one to three workers, each consuming at least one queue")
        seen = [q for w in self.workers for q in w]
        if unknown := [q for q in seen if q not in QUEUES]:
            raise ValueError(f"unknown queue {unknown[0]!r}: choose from {', '.join(QUEUES)}")
        if len(seen) != len(set(seen)):
            # Two consumers of one queue race for its messages: a run's worker would
            # be the broker's choice, not the scenario's.
            raise ValueError("a queue is consumed by one worker at most")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise ValueError(f"retries {self.retries} out of range 0..{MAX_RETRIES}")
        if self.priorities and (len(self.workers) != 1 or self.retries):
            raise ValueError("a priority scenario has one worker and no retries")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}: choose one of {STRATEGIES}")
        if self.strategy != "round_robin" and self.broker != "redis":
            raise ValueError("queue_order_strategy is a Redis transport option")

    def label(self) -> str:
        """``redis/routes+option/qo|qr,celery/create[/retry1][/late][/prio][/strategy-priority]``:
        broker, route, each worker's ``-Q`` (``|`` between workers), missing queues."""
        route = "+".join(self.route) or "default"
        workers = "|".join(",".join(w) for w in self.workers)
        missing = "create" if self.create_missing else "declared"
        extra = f"/retry{self.retries}" if self.retries else ""
        extra += ("/late" if self.acks_late else "") + ("/prio" if self.priorities else "")
        extra += "" if self.strategy == "round_robin" else f"/strategy-{self.strategy}"
        return f"{self.broker}/{route}/{workers}/{missing}{extra}"

    def as_dict(self) -> dict[str, object]:
        return {
            "broker": self.broker, "route": "+".join(self.route) or "default",
            "workers": "|".join(",".join(w) for w in self.workers),
            "create_missing_queues": self.create_missing, "retries": self.retries,
            "priorities": self.priorities, "acks_late": self.acks_late,
            "queue_order_strategy": self.strategy,
        }  # fmt: skip


def parse_label(label: str) -> RoutingConfig:
    """The config of ``RoutingConfig.label()``."""
    parts = label.split("/")
    if len(parts) < 4 or parts[3] not in ("create", "declared"):
        raise ValueError(
            "a routing config reads '<broker>/<default|routes+attr+option>/<queues>[|<queues>]"
            f"/<create|declared>[/retry1][/late][/prio][/strategy-priority]', got {label!r}"
        )
    broker, route, workers, missing, *extra = parts
    retries, late, prio, strategy = 0, False, False, "round_robin"
    for part in extra:
        if part.startswith("retry") and part[5:].isdigit():
            retries = int(part[5:])
        elif part in ("late", "prio"):
            late, prio = late or part == "late", prio or part == "prio"
        elif part.startswith("strategy-"):
            strategy = part.removeprefix("strategy-")
        else:
            raise ValueError(f"unknown part {part!r} of routing config {label!r}")
    return RoutingConfig(
        broker,  # type: ignore[arg-type]  # validated
        () if route == "default" else tuple(route.split("+")),  # type: ignore[arg-type]
        tuple(tuple(w.split(",")) for w in workers.split("|")),
        missing == "create", retries, prio, late, strategy,  # type: ignore[arg-type]
    )  # fmt: skip


# --- the rules ---------------------------------------------------------------------------


def routed_queue(config: RoutingConfig) -> str:
    """The queue a send goes to: the first way of ``PRECEDENCE`` the config uses, else
    the default queue (``Task.apply_async``, ``Router.route``)."""
    for m in PRECEDENCE:
        if m in config.route:
            return QUEUE_OF[m]
    return DEFAULT_QUEUE


def consumed(config: RoutingConfig) -> dict[str, str]:
    """queue -> the worker consuming it (``w1`` consumes ``config.workers[0]``)."""
    return {q: f"w{i}" for i, w in enumerate(config.workers, start=1) for q in w}


def refused(config: RoutingConfig) -> bool:
    """Whether sending raises ``QueueNotFound``: missing queues are not created and
    ``task_queues`` (the consumed queues) lacks the routed one."""
    return not config.create_missing and routed_queue(config) not in consumed(config)


def stuck_queue(config: RoutingConfig) -> str | None:
    """The queue every send leaves its message in, unseen: routed where no worker
    consumes, and created on the fly."""
    q = routed_queue(config)
    return None if refused(config) or q in consumed(config) else q


def first(config: RoutingConfig, a: int, b: int) -> bool:
    """Whether the broker hands out a waiting message of priority ``a`` before one of
    priority ``b`` (sent earlier or later): Redis, the lower step; RabbitMQ with
    x-max-priority, the higher number."""
    if config.broker == "redis":
        step = {p: max(s for s in PRIORITY_STEPS if s <= p) for p in (a, b)}
        return step[a] < step[b]
    return a > b


# --- the replay: what each step may observe -----------------------------------------------


def mismatches(config: RoutingConfig, events: Sequence[h.Event]) -> list[Mismatch]:
    """Every send routed otherwise than the rules say, a refusal where none is due (or
    none where one is), and a count of stuck messages other than the sends routed to
    unconsumed queues."""
    out: list[Mismatch] = []
    want = routed_queue(config)
    refuse = refused(config)
    owned = consumed(config)
    sent: dict[str, int] = {}  # task -> index of its Routed or SendRefused
    left: dict[str, int] = {}  # unconsumed queue -> first messages sent there
    stuck: dict[str, tuple[int, int]] = {}
    submitted: list[tuple[int, str]] = []
    for i, e in enumerate(events):
        if isinstance(e, h.Submitted):
            submitted.append((i, e.task))
        elif isinstance(e, h.Routed):
            sent[e.task] = i
            if refuse:
                out.append(Mismatch(i, f"QueueNotFound for {e.task}", f"published to {e.queue}",
                                    f"task_create_missing_queues is off and task_queues lacks "
                                    f"{want} (Router.expand_destination)"))  # fmt: skip
            elif e.queue != want:
                out.append(Mismatch(i, f"{e.task} published to {want}", f"to {e.queue}",
                                    _precedence_why(config)))  # fmt: skip
            if e.queue not in owned:
                left[e.queue] = left.get(e.queue, 0) + 1
        elif isinstance(e, h.SendRefused):
            sent[e.task] = i
            if not refuse or not e.error.startswith(QUEUE_NOT_FOUND):
                expected = (
                    f"QueueNotFound for {e.task}" if refuse else f"{e.task} published to {want}"
                )
                why = (
                    "Router.expand_destination raises QueueNotFound"
                    if refuse
                    else "missing queues are created (Queues.__missing__)"
                )
                out.append(Mismatch(i, expected, f"the send raised {e.error}", why))
        elif isinstance(e, h.Stuck):
            stuck[e.queue] = (i, e.count)
    out += [
        Mismatch(i, f"{t} published or refused", "neither", "every send is one or the other")
        for i, t in submitted if t not in sent
    ]  # fmt: skip
    end = len(events)
    for q in sorted(set(left) | set(stuck)):
        i, n = stuck.get(q, (end, 0))
        if n != left.get(q, 0):
            out.append(Mismatch(i, f"{left.get(q, 0)} message(s) left in {q}", f"{n}",
                                f"{q} is consumed by {owned.get(q, 'no worker')}"))  # fmt: skip
    return out


def _precedence_why(config: RoutingConfig) -> str:
    ways = ", ".join(f"{m} -> {QUEUE_OF[m]}" for m in config.route) or "no route"
    return (
        f"{ways}: the apply_async option wins, then the task's attribute, then task_routes, "
        "then task_default_queue (Task.apply_async, Router.route)"
    )


# --- the invariants --------------------------------------------------------------------------


def _started(events: Sequence[h.Event]) -> dict[str, h.Started]:
    return {e.execution: e for e in events if isinstance(e, h.Started)}


def runs_on_its_queue(config: RoutingConfig, events: Sequence[h.Event]) -> list[Violation]:
    """Every run took its message from the queue its task was sent to, on a worker
    consuming that queue."""
    sent_to = {e.task: e.queue for e in events if isinstance(e, h.Routed)}
    started = _started(events)
    workers = {f"w{i}": w for i, w in enumerate(config.workers, start=1)}
    out = []
    for i, e in enumerate(events):
        if not isinstance(e, h.RanFrom) or e.execution not in started:
            continue
        s = started[e.execution]
        worker = worker_of(s.process)
        mine = workers.get(worker, ())
        home = sent_to.get(s.task)
        what = f"{e.execution}" + (f" (retry {s.level})" if s.level else "")
        if home is not None and e.queue != home:
            out.append(Violation("runs_on_its_queue", i, (e.execution,),
                                 f"{what} took its message from {e.queue}, but {s.task} was "
                                 f"sent to {home}"))  # fmt: skip
        elif e.queue not in mine:
            out.append(Violation("runs_on_its_queue", i, (e.execution,),
                                 f"{what} ran on {worker}, which consumes "
                                 f"{','.join(mine) or 'nothing'}, not {e.queue}"))  # fmt: skip
    return out


def no_stuck_task(config: RoutingConfig, events: Sequence[h.Event]) -> list[Violation]:
    """Every submitted task has a run that ended without retrying, or its send
    raised; otherwise it waits unseen: the broker's queue lengths say where."""
    started = _started(events)
    retried = {e.execution for e in events if isinstance(e, h.RetryPublished)}
    done = {
        started[e.execution].task for e in events
        if isinstance(e, h.Finished) and e.status == "ok" and e.execution in started
        and e.execution not in retried
    }  # fmt: skip
    refused_ = {e.task for e in events if isinstance(e, h.SendRefused)}
    stuck = [e for e in events if isinstance(e, h.Stuck)]
    where = "; ".join(f"{e.count} message(s) wait in {e.queue}" for e in stuck)
    end = max(len(events) - 1, 0)
    return [
        Violation("no_stuck_task", end, (t,),
                  f"{t} never ran to its end and nothing raised: "
                  f"{where or 'no queue holds it'}, and no worker consumes "
                  f"{'them' if len(stuck) > 1 else 'it'}")
        for t in _submitted(events) if t not in done and t not in refused_
    ]  # fmt: skip


def priority_order(config: RoutingConfig, events: Sequence[h.Event]) -> list[Violation]:
    """No task starts (its first run) while a task the broker would hand out first,
    sent before that start, is still waiting."""
    prio: dict[str, int] = {}
    waiting: dict[str, int] = {}  # task -> index of its publish, not started yet
    out = []
    for i, e in enumerate(events):
        if isinstance(e, h.Routed):
            prio[e.task] = e.priority or 0
            waiting[e.task] = i
        elif isinstance(e, h.Started) and e.task in waiting:
            del waiting[e.task]
            mine = prio[e.task]
            ahead = [(t, j) for t, j in waiting.items() if first(config, prio[t], mine)]
            if ahead:
                t, j = ahead[0]
                out.append(Violation("priority_order", i, (e.execution,),
                                     f"{e.execution} (priority {mine}) started while {t} "
                                     f"(priority {prio[t]}, first on {config.broker}) had "
                                     f"waited since #{j}"))  # fmt: skip
    return out


def _submitted(events: Sequence[h.Event]) -> list[str]:
    return [e.task for e in events if isinstance(e, h.Submitted)]


VIOLATIONS = {
    ON_ITS_QUEUE: runs_on_its_queue,
    NOT_STUCK: no_stuck_task,
    PRIORITY_ORDER: priority_order,
}


def applies(config: RoutingConfig, prop: str) -> bool:
    """priority-order on the priority scenarios, the others on the rest."""
    return (prop == PRIORITY_ORDER) == config.priorities


# --- the prediction --------------------------------------------------------------------------


def rule(config: RoutingConfig, prop: str) -> tuple[Prediction, str]:
    """``(prediction, why)`` for ``prop`` on ``config``."""
    if prop not in PROPERTIES:
        raise ValueError(
            f"unknown routing property {prop!r}: choose one of {', '.join(PROPERTIES)}"
        )
    q = routed_queue(config)
    if prop == ON_ITS_QUEUE:
        retry = (
            "; a retry (autoretry: Task.retry) goes back to the queue it came from "
            "(Task.signature_from_request: queue = routing key of an anonymous-exchange "
            "delivery), against celery #8357"
            if config.retries
            else ""
        )
        return "holds", (
            f"each send goes to one queue ({q}) and only its consumer takes it: a worker "
            f"consumes its -Q queues alone (Queues.select){retry}"
        )
    if prop == NOT_STUCK:
        if refused(config):
            return "holds", (
                f"task_create_missing_queues off: {q} is not in task_queues, so the send "
                "raises QueueNotFound (Router.expand_destination): refused loudly, never stuck"
            )
        if (lost := stuck_queue(config)) is not None:
            return "violated", (
                f"the task is routed to {lost} ({_precedence_why(config)}), which no worker "
                "consumes (-Q replaces the default queue too); task_create_missing_queues "
                "(default on) creates it on the fly (Queues.__missing__) and the message "
                "waits there: Celery reports nothing"
            )
        return "holds", f"the task is routed to {q}, which {consumed(config)[q]} consumes"
    if not config.acks_late:
        return "violated", (
            "early ack: a task is acked when it starts (Request.on_accepted), which frees "
            "the worker's one prefetch slot: it fetches the next waiting message at once "
            "and runs it next, before a higher-priority one sent while the first ran"
        )
    order = (
        "Redis: the priority lists are popped lowest step first in any "
        "queue_order_strategy (kombu/transport/redis.py _brpop_start; the strategy orders "
        "queues only)"
        if config.broker == "redis"
        else "RabbitMQ: highest first on an x-max-priority queue (task_queue_max_priority)"
    )
    return "holds", (
        f"acks_late and prefetch 1: nothing is fetched while a task runs, and the next "
        f"fetch takes the first in priority order ({order})"
    )
