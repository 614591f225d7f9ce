"""Session plumbing for the property runs: options, the cluster, the findings report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model import delivery_properties, lock_properties, publishing, state_properties
from properties import findings, matrix, profiles

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
        choices=sorted(
            [*lock_properties.PROPERTIES, *delivery_properties.PROPERTIES,
             *state_properties.PROPERTIES, *publishing.PROPERTIES]
        ),
        help="only these properties (repeatable; default: all)",
    )  # fmt: skip
    group.addoption(
        "--findings", default="reports/findings.json", help="where to write the findings report"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    opt = metafunc.config.getoption
    if "claim" in metafunc.fixturenames:
        from properties.semantics import CLAIMS

        pairs = [(c, b) for c in CLAIMS for b in c.brokers]
        metafunc.parametrize(("claim", "broker"), pairs, ids=[f"{c.id}-{b}" for c, b in pairs])
        return
    if "state_config" in metafunc.fixturenames:
        wanted = [p for p in opt("property") if p in state_properties.PROPERTIES]
        states = [
            (p, c) for p, c in matrix.state_cases(opt("matrix"))
            if p in wanted or not opt("property")
        ]  # fmt: skip
        metafunc.parametrize(
            ("state_prop", "state_config"), states, ids=[f"{p}-{c.label()}" for p, c in states]
        )
        return
    if "publish_config" in metafunc.fixturenames:
        on = not opt("property") or publishing.PROPERTY in opt("property")
        publish = matrix.publish_cases(opt("matrix")) if on else []
        metafunc.parametrize("publish_config", publish, ids=[c.label() for c in publish])
        return
    if "eager_config" in metafunc.fixturenames:
        eager = [
            (p, c) for p, c in matrix.eager_cases(opt("matrix"))
            if p in opt("property") or not opt("property")
        ]  # fmt: skip
        metafunc.parametrize(
            ("eager_prop", "eager_config"), eager,
            ids=[f"{p}-{c.label()}" for p, c in eager],  # type: ignore[attr-defined]
        )  # fmt: skip
        return
    if "delivery_config" in metafunc.fixturenames:
        wanted = [p for p in opt("property") if p in delivery_properties.PROPERTIES]
        cases = matrix.delivery_cases(opt("matrix"), opt("effect"), wanted or None)
        metafunc.parametrize(
            ("delivery_prop", "delivery_config"), cases,
            ids=[f"{p}-{c.label()}" for p, c in cases],
        )  # fmt: skip
        return
    if "lock_config" not in metafunc.fixturenames:
        return
    props = [p for p in opt("property") if p in lock_properties.PROPERTIES] or (
        [] if opt("property") else list(lock_properties.PROPERTIES)
    )
    locks = matrix.lock_cases(opt("matrix"), props, opt("lock"))
    metafunc.parametrize(("prop", "lock_config"), locks, ids=[f"{c.label()}-{p}" for p, c in locks])


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
    profiles.bound_shrinking(config.getoption("hypothesis_profile", default=None) or "default")
    for lock in config.getoption("lock", default=[]) or []:
        _check_lock(lock)
    for effect in config.getoption("effect", default=[]) or []:
        _check_effect(effect)
    config.stash[findings.KEY] = findings.Findings(Path(config.getoption("findings")))


_SHRINK_WARNING = "WARNING: Hypothesis has spent more than five minutes working to shrink"


@pytest.fixture(autouse=True)
def _shrink_bound_worded() -> Iterator[None]:
    """Hypothesis words its shrink-deadline warning as "more than five minutes" whatever
    the deadline (hypothesis/internal/conjecture/engine.py); the bounded profiles stop
    after seconds (properties/profiles.py), so say what happened."""
    from hypothesis import reporting
    from hypothesis.internal.conjecture import engine

    outer = reporting.current_reporter()

    def reworded(value: object) -> None:
        if isinstance(value, str) and value.startswith(_SHRINK_WARNING):
            value = (
                f"Shrinking stopped at this profile's bound ({engine.MAX_SHRINKING_SECONDS} s, "
                "properties/profiles.py): the counterexample below is the smallest found "
                "by then."
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
