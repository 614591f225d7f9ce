"""Publishing inside a transaction: when may a task see the row its sender wrote?

The application opens a transaction, INSERTs a row, and sends a task that looks the
row up. Three ways to send it:

- ``in-transaction``: ``task.apply_async()`` inside the ``atomic()`` block. The
  message is on the broker at once; a worker may run the task before the commit,
  and under PostgreSQL's READ COMMITTED (its default, and Django's) the task's SELECT
  does not see an uncommitted row (PostgreSQL docs, "Transaction Isolation"). After a
  rollback the row never exists, yet the task runs.
- ``on-commit``: ``transaction.on_commit(send, using=<the transaction's database>)``.
  Django calls ``send`` after the commit and drops it on rollback
  (django/db/transaction.py ``on_commit``; docs/topics/db/transactions.txt
  "Performing actions after commit"). The task can only start after the commit.
- ``delay-on-commit``: Celery's ``DjangoTask.apply_async_on_commit`` (Celery 5.4+,
  celery/contrib/django/task.py, PR #8491), with the transaction on a database other
  than ``default``. It calls ``transaction.on_commit(...)`` *without* ``using``, so
  the callback is registered on the default database, which has no transaction open:
  Django runs such a callback at once (base.py ``on_commit``: "if not in an atomic
  block ... call it now"). It behaves like ``in-transaction``.

The model replays a history and says, for each look-up, whether the row may be found
(exactly when the commit came before the SELECT), and, for each publish, whether it
may happen then, and predicts the one property, ``task-finds-its-row``. Its config is
model/config.py ``PublishConfig``, its events model/history.py's publishing section.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.config import Mode, PublishConfig
from model.history import Committed, Event, Inserted, Looked, Published, RolledBack, Started
from model.invariants import Violation
from model.verdict import Mismatch, Prediction

PROPERTY = "task-finds-its-row"
PROPERTIES = {
    PROPERTY: "a task sent for a row the sender just wrote finds that row when it runs",
}


# --- the model ------------------------------------------------------------------------------


def publishes_at_once(mode: Mode) -> bool:
    """Whether the message leaves inside the transaction (else: at the commit, and
    never after a rollback)."""
    return mode != "on-commit"


def mismatches(config: PublishConfig, events: Sequence[Event]) -> list[Mismatch]:
    """Every event the model does not allow for ``config``."""
    out: list[Mismatch] = []
    ended: str | None = None  # "commit" or "rollback" once the transaction is over
    end_index = -1
    inserted: dict[str, int] = {}
    published: dict[str, int] = {}
    task_of: dict[str, str] = {}  # execution -> task
    at_once = publishes_at_once(config.mode)
    due: list[str] = []  # on_commit sends the commit owes; they follow it at once
    for i, e in enumerate([*events, None]):
        if due and not isinstance(e, Published):
            out.append(
                Mismatch(i, "every pending task published at the commit",
                         f"{', '.join(due)} not published",
                         "Django runs the on_commit callbacks inside the commit")
            )  # fmt: skip
            due = []
        if isinstance(e, Inserted):
            inserted[e.task] = i
        elif isinstance(e, Published):
            published[e.task] = i
            if e.task in due:
                due.remove(e.task)
            if at_once and ended is not None:
                out.append(
                    Mismatch(i, "a publish inside the transaction", f"{e.task} published after "
                             f"the {ended}", f"{config.mode} sends when the task is submitted")
                )  # fmt: skip
            if not at_once and ended != "commit":
                where = "inside the open transaction" if ended is None else "after a rollback"
                out.append(
                    Mismatch(i, "a publish at the commit only", f"{e.task} published {where}",
                             "on_commit(using=...) holds the send until the commit and drops "
                             "it on rollback (django/db/transaction.py)")
                )  # fmt: skip
        elif isinstance(e, Committed | RolledBack):
            ended, end_index = ("commit" if isinstance(e, Committed) else "rollback"), i
            if not at_once and isinstance(e, Committed):
                due = [t for t in inserted if t not in published]
        elif isinstance(e, Started):
            task_of[e.execution] = e.task
            if e.task not in published:
                out.append(
                    Mismatch(i, "no start before its publish", f"{e.execution} started",
                             f"{e.task} was never published")
                )  # fmt: skip
        elif isinstance(e, Looked):
            visible = ended == "commit" and end_index < i
            if e.found != visible:
                why = (
                    f"the commit at #{end_index} came before the SELECT"
                    if visible
                    else "READ COMMITTED: no other session sees an uncommitted row"
                    if ended is None
                    else "the transaction rolled back: the row never existed"
                )
                out.append(
                    Mismatch(i, f"found={visible}", f"found={e.found}",
                             f"{e.execution}'s look-up: {why}")
                )  # fmt: skip
    return out


def violations(events: Sequence[Event]) -> list[Violation]:
    """``task-finds-its-row``: every look-up finds the row its sender wrote."""
    return [
        Violation(
            "task_finds_its_row",
            i,
            (e.execution,),
            f"{e.execution} ran and did not find the row its sender had written",
        )
        for i, e in enumerate(events)
        if isinstance(e, Looked) and not e.found
    ]


def _rule(config: PublishConfig) -> tuple[Prediction, str]:
    if config.mode == "in-transaction":
        return "violated", (
            "apply_async inside atomic() publishes at once: the worker may SELECT before "
            "the commit (READ COMMITTED hides the row) or after a rollback"
        )
    if config.mode == "delay-on-commit":
        return "violated", (
            "DjangoTask.apply_async_on_commit registers on_commit on the default database "
            "(celery/contrib/django/task.py, no using=); the transaction is on another "
            "one, so Django sends at once"
        )
    return "holds", (
        "on_commit(using=the transaction's database) sends only after the commit and "
        "never after a rollback (django/db/transaction.py)"
    )


def expected_verdict(config: PublishConfig) -> Prediction:
    """in-transaction and delay-on-commit (transaction not on ``default``): violated on
    every pool (one task suffices: it runs before the commit, or after a rollback);
    on-commit with ``using``: holds."""
    return _rule(config)[0]


def why(config: PublishConfig) -> str:
    return _rule(config)[1]
