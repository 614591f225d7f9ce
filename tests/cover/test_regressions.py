"""The regression pin sets (properties/regressions.py): the table, the version check,
what a row counts as, and the summary of ``nox -s regressions``."""

from __future__ import annotations

from pathlib import Path

import pytest

from properties import regressions as rg
from properties.claims import CLAIMS


def test_every_bug_has_a_buggy_and_a_fixed_pin_set_differing_in_its_fix() -> None:
    ids = [p.id for p in rg.PIN_SETS]
    assert len(ids) == len(set(ids)) == 2 * len(rg.BUGS)
    assert len(rg.BUGS) >= 3
    for bug in rg.BUGS:
        assert {f"{bug.id}-buggy", f"{bug.id}-fixed"} <= set(ids)
        differ = {k for k, v in bug.buggy.as_dict().items() if bug.fixed.as_dict()[k] != v}
        assert len(differ) == 1, f"{bug.id}: the pins differ in {differ}, not one package"
        assert "#" in bug.ref and bug.rows and bug.cause


def test_every_claim_row_names_a_claim_on_one_of_its_brokers() -> None:
    known = {(c.id, b) for c in CLAIMS for b in c.brokers}
    for bug in rg.BUGS:
        for row in bug.rows:
            if row.kind == "claim":
                assert (row.name, row.broker) in known, row.label()


def test_a_row_is_a_search_with_a_config_or_a_claim_with_a_broker() -> None:
    with pytest.raises(ValueError, match="a search needs a config"):
        rg.Row("search", "at-least-once", "x")
    with pytest.raises(ValueError, match="a search needs a config"):
        rg.Row("claim", "ack.early", "x")


def test_an_unknown_pin_set_or_another_installed_version_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown pin set 'nope': choose one of kombu-1484"):
        rg.pin_set("nope")
    p = rg.pin_set("kombu-1484-buggy")
    assert rg.version_error(p, {"celery": "5.2.7", "kombu": "5.2.3", "billiard": "3.6.4.0"}) is None
    error = rg.version_error(p, {"celery": "5.2.7", "kombu": "5.7.0", "billiard": "3.6.4.0"})
    assert error is not None
    assert "kombu 5.7.0 (wants 5.2.3)" in error
    assert "nox -s 'regressions(kombu-1484-buggy)'" in error


def test_a_failure_counts_as_caught_only_with_the_bug_signature() -> None:
    row = rg.Row("claim", "child-kill.requeue", "redelivered=False", broker="redis")
    assert rg.judged(row, True, False, "") == "passes"
    assert rg.judged(row, False, False, "came back with redelivered=False") == "caught"
    assert rg.judged(row, False, False, "FAILURE was written") == "failed otherwise"
    assert rg.judged(row, False, True, "redelivered=False") == "harness error"


def test_the_replay_runs_in_the_pin_sets_venv() -> None:
    p = rg.pin_set("celery-7781-buggy")
    search, claim = p.bug.rows[0], p.bug.rows[1]
    line = "at-least-once insert-on-conflict redis/late+requeue/prefork/2 tasks=1: submit; kill t1"
    assert p.replay(search, line) == (f"nox -s 'regressions(celery-7781-buggy)' -- replay '{line}'")
    assert p.replay(claim, "") == (
        "nox -s 'regressions(celery-7781-buggy)' -- -k child-kill.requeue-redis"
    )


def _reports(got: dict[str, str]) -> dict[str, rg.Report]:
    """Every pin set's report, each row ``got`` what the pin set's side says."""
    out = {}
    for p in rg.PIN_SETS:
        results = [
            rg.Result(r.label(), got[p.side], 10.0, 3.0 if got[p.side] == "caught" else None,
                      "submit; kill t1" if got[p.side] == "caught" else "")
            for r in p.bug.rows
        ]  # fmt: skip
        out[p.id] = rg.Report(p.id, p.pins.as_dict(), results)
    return out


def test_the_summary_says_rediscovered_when_caught_on_buggy_and_passing_on_fixed() -> None:
    text, ok = rg.summary(_reports({"buggy": "caught", "fixed": "passes"}))
    assert ok
    assert text.count("rediscovered: caught on") == len(rg.BUGS)
    assert "(search 3.0 s, claim 3.0 s)" in text
    assert "caught after" in text.splitlines()[0]
    assert "3.0 s" in text and "submit; kill t1" in text and "<--" not in text


def test_a_fixed_pin_that_fails_or_a_missing_pin_set_fails_the_summary() -> None:
    reports = _reports({"buggy": "caught", "fixed": "failed otherwise"})
    text, ok = rg.summary(reports)
    assert not ok and "failed otherwise  <--" in text and "NOT rediscovered" in text
    reports = _reports({"buggy": "caught", "fixed": "passes"})
    del reports["celery-5998-fixed"]
    text, ok = rg.summary(reports)
    assert not ok
    assert "celery #5998: NOT rediscovered" in text and "not run" in text


def test_reports_round_trip_and_the_summary_command_exits_by_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for report in _reports({"buggy": "caught", "fixed": "passes"}).values():
        assert rg.Report.read(report.write(tmp_path)) == report
    assert rg.main(["summary", str(tmp_path)]) == 0
    assert "celery PR #7781: rediscovered" in capsys.readouterr().out
    (tmp_path / "kombu-1484-fixed.json").write_text("[]")
    assert rg.main(["summary", str(tmp_path)]) == 2
    assert "is not a pin set's report" in capsys.readouterr().err
