"""Where a run keeps its failing examples: the local directory, and with
``SUITE_EXAMPLE_DB`` a Redis the fleet shares (written under ``CI``, read elsewhere).
No server: the Redis client connects only when the database is used."""

from __future__ import annotations

import pytest
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    MultiplexedDatabase,
    ReadOnlyDatabase,
)
from hypothesis.extra.redis import RedisExampleDatabase

from properties.profiles import example_database


def test_local_only_without_a_shared_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUITE_EXAMPLE_DB", raising=False)
    assert isinstance(example_database(), DirectoryBasedExampleDatabase)


@pytest.mark.parametrize(
    ("ci", "shared"), [("true", RedisExampleDatabase), (None, ReadOnlyDatabase)]
)
def test_the_fleet_writes_and_a_developer_reads(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, shared: type
) -> None:
    monkeypatch.setenv("SUITE_EXAMPLE_DB", "redis://127.0.0.1:1/0")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    db = example_database()
    assert isinstance(db, MultiplexedDatabase)
    local, other = db._wrapped
    assert isinstance(local, DirectoryBasedExampleDatabase)
    assert type(other) is shared
