"""The pytest plugin of the property runs: options, the matrix of every area, the
findings report. Loaded by the root conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import Cluster
from properties import findings, matrix, profiles
from properties.areas import AREAS
from properties.engine import Area, search
from properties.outcome import Outcome

profiles.register()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("celery-suite")
    group.addoption(
        "--matrix", default="ci", choices=matrix.MATRICES,
        help="configs of the built-in locks: ci (bounded) or full (every pool and concurrency)",
    )  # fmt: skip
    group.addoption(
        "--lock", action="append", default=[],
        help="check a plug-in lock 'pkg.mod:make_lock' instead of the built-ins (repeatable)",
    )  # fmt: skip
    group.addoption(
        "--effect", action="append", default=[],
        help="check a plug-in effect 'pkg.mod:make_effect' instead of the built-ins (repeatable)",
    )  # fmt: skip
    group.addoption(
        "--property", action="append", default=[],
        choices=sorted({p for a in AREAS.values() for p in a.properties}),
        help="only these properties (repeatable; default: all)",
    )  # fmt: skip
    group.addoption(
        "--findings", default="reports/findings.json", help="where to write the findings report"
    )


@dataclass(frozen=True)
class Case:
    """One row of the matrix: an area's property on one of its configs."""

    area: Area[Any]
    prop: str
    config: Any


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each area's rows parametrize its ``<area>_case`` fixture (``lock_case``,
    ``delivery_case``, ...); the semantics rows ``claim`` and ``broker``."""
    opt = metafunc.config.getoption
    if "claim" in metafunc.fixturenames:
        from properties.claims import CLAIMS

        pairs = [(c, b) for c in CLAIMS for b in c.brokers]
        metafunc.parametrize(("claim", "broker"), pairs, ids=[f"{c.id}-{b}" for c, b in pairs])
        return
    wanted = opt("property")
    for area in AREAS.values():
        if f"{area.name}_case" not in metafunc.fixturenames:
            continue
        cases = [
            Case(area, p, c) for p, c in area.cases(opt("matrix"), opt)
            if not wanted or p in wanted
        ]  # fmt: skip
        metafunc.parametrize(
            f"{area.name}_case", cases, ids=[area.case_id(c.prop, c.config) for c in cases]
        )


def verify(case: Case, cluster: Cluster, report: findings.Findings) -> Outcome:
    """Search one row, add it to the report, and fail unless ``accept`` passes it."""
    outcome = search(case.area, cluster, case.config, case.prop)
    report.add(outcome)
    assert outcome.passed, (
        f"{case.prop} on {case.config.label()}: {outcome.verdict} ({outcome.reason})\n"
        f"{outcome.detail()}"
    )
    return outcome


def _check_effect(effect: str) -> None:
    from tasks.effects.builtin import load_effect

    try:
        load_effect(effect)
    except ValueError as exc:
        raise pytest.UsageError(f"--effect {effect}: {exc}") from None


def _check_lock(lock: str) -> None:
    """Fail fast, in one line, on a lock the workers could not load."""
    from tasks.locks.builtin import load_lock

    try:
        load_lock(lock)
    except ValueError as exc:
        raise pytest.UsageError(f"--lock {lock}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    profiles.activate(config.getoption("hypothesis_profile", default=None) or "default")
    for lock in config.getoption("lock", default=[]) or []:
        _check_lock(lock)
    for effect in config.getoption("effect", default=[]) or []:
        _check_effect(effect)
    config.stash[findings.KEY] = findings.Findings(Path(config.getoption("findings")))


_SHRINK_WARNING = "WARNING: Hypothesis has spent more than five minutes working to shrink"


@pytest.fixture(autouse=True)
def _shrink_bound_worded() -> Iterator[None]:
    """Hypothesis words its shrink-deadline warning as "more than five minutes" whatever
    the deadline (hypothesis/internal/conjecture/engine.py); here the deadline is only
    the net behind the call budget (properties/shrinking.py), so say what happened."""
    from hypothesis import reporting
    from hypothesis.internal.conjecture import engine

    outer = reporting.current_reporter()

    def reworded(value: object) -> None:
        if isinstance(value, str) and value.startswith(_SHRINK_WARNING):
            value = (
                f"Shrinking stopped at the suite's time net ({engine.MAX_SHRINKING_SECONDS} s, "
                "properties/shrinking.py), before its call budget: the counterexample "
                "below is the smallest found by then, and a slower machine may stop earlier."
            )
        outer(value)

    with reporting.with_reporter(reworded):
        yield


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> findings.Findings:
    return request.config.stash[findings.KEY]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    f = terminalreporter.config.stash[findings.KEY]
    if f.outcomes or f.claims:
        terminalreporter.write_sep("=", "findings")
        terminalreporter.write_line(f.table())
        terminalreporter.write_line(f"written to {f.path}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    f = session.config.stash[findings.KEY]
    if f.outcomes or f.claims:
        f.write()
