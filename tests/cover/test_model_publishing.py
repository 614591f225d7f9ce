"""The transactional-publishing model (model/publishing.py) on hand-written histories."""

from __future__ import annotations

import pytest

from model.config import PublishConfig, parse_publish_label
from model.history import (
    Committed,
    Event,
    Inserted,
    Looked,
    Published,
    RolledBack,
    Started,
    Submitted,
)
from model.publishing import expected_verdict, mismatches, violations

IN_TX = PublishConfig("in-transaction", "prefork", 2)
ON_COMMIT = PublishConfig("on-commit", "prefork", 2)
DELAY = PublishConfig("delay-on-commit", "threads", 2)


def submit(t: str, *, at_once: bool = True) -> list[Event]:
    out: list[Event] = [Submitted(t), Inserted(t)]
    if at_once:
        out += [Published(t), Started(t, t, "w1.c1")]
    return out


def test_in_transaction_look_before_commit_finds_nothing_and_violates() -> None:
    h = [*submit("t1"), Looked("t1", False), Committed()]
    assert mismatches(IN_TX, h) == []
    (v,) = violations(h)
    assert v.executions == ("t1",)


def test_in_transaction_look_after_commit_finds_the_row() -> None:
    h = [*submit("t1"), Committed(), Looked("t1", True)]
    assert mismatches(IN_TX, h) == [] and violations(h) == []


def test_rollback_leaves_nothing_to_find() -> None:
    h = [*submit("t1"), RolledBack(), Looked("t1", False)]
    assert mismatches(IN_TX, h) == []
    assert len(violations(h)) == 1


@pytest.mark.parametrize(
    ("before", "found"), [(True, True), (False, False)], ids=["dirty-read", "lost-commit"]
)
def test_a_look_that_disagrees_with_the_commit_order_is_a_mismatch(
    before: bool, found: bool
) -> None:
    # found before the commit (a dirty read), or not found after it
    look = Looked("t1", found)
    h = [*submit("t1"), look, Committed()] if before else [*submit("t1"), Committed(), look]
    (m,) = mismatches(IN_TX, h)
    assert m.index == h.index(look)


def test_on_commit_publishes_at_the_commit_only() -> None:
    h = [
        *submit("t1", at_once=False), Committed(), Published("t1"),
        Started("t1", "t1", "w1.c1"), Looked("t1", True),
    ]  # fmt: skip
    assert mismatches(ON_COMMIT, h) == [] and violations(h) == []


def test_on_commit_publish_inside_the_transaction_is_a_mismatch() -> None:
    h = [*submit("t1"), Committed(), Looked("t1", True)]
    (m,) = mismatches(ON_COMMIT, h)
    assert "inside the open transaction" in m.observed


def test_on_commit_must_publish_every_pending_task_at_the_commit() -> None:
    h = [*submit("t1", at_once=False), Committed()]
    (m,) = mismatches(ON_COMMIT, h)
    assert "t1 not published" in m.observed


def test_on_commit_rollback_sends_nothing() -> None:
    h = [*submit("t1", at_once=False), RolledBack()]
    assert mismatches(ON_COMMIT, h) == []
    late = [*h, Published("t1")]
    assert len(mismatches(ON_COMMIT, late)) == 1


def test_a_start_without_a_publish_is_a_mismatch() -> None:
    h = [Submitted("t1"), Inserted("t1"), Started("t1", "t1", "w1.c1")]
    assert len(mismatches(IN_TX, h)) == 1


def test_delay_on_commit_on_another_database_publishes_at_once() -> None:
    h = [*submit("t1"), Looked("t1", False), Committed()]
    assert mismatches(DELAY, h) == []
    held = [*submit("t1", at_once=False), Committed(), Published("t1")]
    assert len(mismatches(DELAY, held)) == 1  # the model says it cannot wait


def test_predictions() -> None:
    assert expected_verdict(IN_TX) == "violated"
    assert expected_verdict(DELAY) == "violated"
    assert expected_verdict(ON_COMMIT) == "holds"


def test_labels_round_trip_and_bad_ones_name_the_choices() -> None:
    for c in (IN_TX, ON_COMMIT, DELAY, PublishConfig("on-commit", "solo", 1)):
        assert parse_publish_label(c.label()) == c
    with pytest.raises(ValueError, match="in-transaction"):
        parse_publish_label("sometimes/prefork/c2")
    with pytest.raises(ValueError, match="concurrency"):
        PublishConfig("on-commit", "solo", 2)
