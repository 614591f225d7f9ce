"""The invoices table an effect writes and the suite counts, in the run's PostgreSQL.

For the harness, from the test process, on its own plain psycopg connection in
autocommit mode (no scheduling points: this is the suite's bookkeeping, not task code).
"""

from __future__ import annotations

from typing import Any

TABLE = "invoices"

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS invoices (
    id bigserial PRIMARY KEY,
    order_id text NOT NULL,
    execution text,
    idempotency_key text UNIQUE
)
""".strip()


def create_table(conn: Any) -> None:
    """Create the table if it does not exist (``TABLE_SQL``)."""
    conn.execute(TABLE_SQL)


def count(conn: Any, order_id: str) -> int:
    """How many invoices ``order_id`` has (committed ones: other sessions' open
    transactions are invisible)."""
    row = conn.execute("SELECT count(*) FROM invoices WHERE order_id = %s", (order_id,)).fetchone()
    return int(row[0])


def clear(conn: Any) -> None:
    """Delete every invoice. Rows of transactions still open elsewhere are not seen,
    so they appear if those transactions commit later; end the workers' executions
    first."""
    conn.execute("DELETE FROM invoices")
