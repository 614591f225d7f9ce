"""The row a sender writes inside a transaction, and the task that looks it up.

The sender's side runs in the application (the test process): a Django ``atomic()``
block on the ``postgres`` database, held open across the scenario's moves, one INSERT
per task, and one of three ways to send the task (model/publishing.py). The task's
side is one SELECT through Django, so it gets a scheduling point before the statement
(tasks/instrument/sql.py) and the scheduler decides whether it runs before or after
the commit.
"""

from __future__ import annotations

import functools
from typing import Any

TABLE_SQL = "CREATE TABLE IF NOT EXISTS suite_rows (key text PRIMARY KEY)"
# The sender's database: deliberately not ``default`` (SQLite here), as in a project
# whose business data lives in a second database.
DB = "postgres"


def create_table(conn: Any) -> None:
    conn.execute(TABLE_SQL)


def find(key: str) -> bool:
    """The task's look-up: does the sender's row exist, as this session sees it?"""
    from django.db import connections

    with connections[DB].cursor() as cur:
        cur.execute("SELECT 1 FROM suite_rows WHERE key = %s", [key])
        return cur.fetchone() is not None


class Transaction:
    """The sender's open ``atomic(using=DB)`` block, ended by ``commit`` or ``rollback``."""

    def __init__(self) -> None:
        from django.db import transaction

        self._atomic = transaction.atomic(using=DB)
        self._atomic.__enter__()
        self.open = True

    def insert(self, key: str) -> None:
        from django.db import connections

        with connections[DB].cursor() as cur:
            cur.execute("INSERT INTO suite_rows (key) VALUES (%s)", [key])

    def send(self, mode: str, task: Any, args: list[Any], options: dict[str, Any]) -> None:
        """Send ``task`` the way ``mode`` says (model/publishing.py)."""
        from django.db import transaction

        if mode == "in-transaction":
            task.apply_async(args, **options)
        elif mode == "on-commit":
            transaction.on_commit(functools.partial(task.apply_async, args, **options), using=DB)
        elif mode == "delay-on-commit":
            task.apply_async_on_commit(args, **options)  # celery.contrib.django.task
        else:
            raise ValueError(f"unknown publish mode {mode!r}")

    def commit(self) -> None:
        self.open = False
        self._atomic.__exit__(None, None, None)  # commits, then runs on_commit callbacks

    def rollback(self) -> None:
        from django.db import transaction

        self.open = False
        transaction.set_rollback(True, using=DB)
        self._atomic.__exit__(None, None, None)
