"""The pytest plugin of the property runs: options, the matrix of every area, the
findings report. Loaded by the root conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import Cluster
from properties import findings, matrix, profiles
from properties.areas import AREAS, of_line
from properties.engine import Area, search
from properties.outcome import Outcome
from properties.progress import Progress, load_estimates
from properties.scenario import decode_any
from properties.timeline import render

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
        "--canvas", action="append", default=[],
        help="check a plug-in canvas 'pkg.mod:make_canvas' instead of the built-ins (repeatable)",
    )  # fmt: skip
    group.addoption(
        "--property", action="append", default=[],
        choices=sorted({p for a in AREAS.values() for p in a.properties}),
        help="only these properties (repeatable; default: all)",
    )  # fmt: skip
    group.addoption(
        "--findings", default="reports/findings.json", help="where to write the findings report"
    )
    group.addoption(
        "--progress", action="store_true",
        help="one line per finished row: rows done / total, verdict, violations, time left",
    )  # fmt: skip


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


def verify_fixed_run(cluster: Cluster, line: str, failure: str | None, shows: str) -> None:
    """Replay one scenario line exactly (a fixed run a findings page cites): it ends in
    ``failure`` (a ``Failure.kind``, or None: it holds), its timeline shows ``shows``,
    and it played the line's moves."""
    scenario = decode_any(line)
    run, found = of_line(scenario).replay(cluster, scenario)
    timeline = render(run.history.events)
    assert (found.kind if found else None) == failure, found.report() if found else timeline
    assert shows in timeline, timeline
    assert run.moves[: len(scenario.moves)] == list(scenario.moves)


def _check_effect(effect: str) -> None:
    from tasks.effects.builtin import load_effect

    try:
        load_effect(effect)
    except ValueError as exc:
        raise pytest.UsageError(f"--effect {effect}: {exc}") from None


def _check_canvas(canvas: str) -> None:
    from tasks.canvas_plugins import load_canvas

    try:
        load_canvas(canvas)
    except ValueError as exc:
        raise pytest.UsageError(f"--canvas {canvas}: {exc}") from None


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
    for canvas in config.getoption("canvas", default=[]) or []:
        _check_canvas(canvas)
    _one_server_set_per_worker(config)
    config.stash[findings.KEY] = findings.Findings(Path(config.getoption("findings")))
    if not _in_xdist_worker(config):
        config.pluginmanager.register(_Collector(config), "suite-collector")


# Servers given by URL are shared; each pytest-xdist worker needs its own (its own
# faults, keys and queues), which the harness starts when these are unset.
_SHARED_SERVERS = ("SUITE_BROKER_URL", "SUITE_CACHE_REDIS_URL", "SUITE_MEMCACHED", "SUITE_PG_DSN")


def _one_server_set_per_worker(config: pytest.Config) -> None:
    if not (config.getoption("numprocesses", default=None) or _in_xdist_worker(config)):
        return
    if given := [name for name in _SHARED_SERVERS if os.environ.get(name)]:
        raise pytest.UsageError(
            f"{', '.join(given)} set with pytest-xdist (-n): every xdist worker starts "
            "its own servers; unset them, or run without -n"
        )


def _in_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


# --- rows travel on the test reports (to pytest-xdist's controller, if any) ----------

_INDEX = pytest.StashKey[dict[str, int]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_INDEX] = {item.nodeid: i for i, item in enumerate(session.items)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    result = yield
    if call.when == "call":
        rep = result.get_result()  # type: ignore[attr-defined]
        index = item.config.stash[_INDEX].get(item.nodeid, 0)
        rep.suite_rows = item.config.stash[findings.KEY].take(index)


class _Collector:
    """In the process that writes the report (not in an xdist worker): gathers the
    rows from the test reports, and prints progress under ``--progress``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.progress = Progress()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:  # under xdist the controller collects nothing: the workers say
            self._rows([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._rows(ids)

    def _rows(self, ids: list[str]) -> None:
        self.progress.ids, self.progress.total = list(ids), len(ids)
        if not self.progress.estimates:
            self.progress.estimates = load_estimates(self.config.rootpath / ".test_durations")

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.progress.began(nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rows = getattr(report, "suite_rows", None) or []
        self.config.stash[findings.KEY].receive(rows)
        ended = report.when == "call" or (report.when == "setup" and not report.passed)
        if ended and self.config.getoption("progress"):
            line = self.progress.finished(report.nodeid, rows, report.failed)
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write(" " + line + "\n", flush=True)


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
    if f:  # an xdist worker's stays empty: its rows went to the controller
        terminalreporter.write_sep("=", "findings")
        terminalreporter.write_line(f.table())
        terminalreporter.write_line(f"written to {f.path}")
    # A regressions run (tests/regressions, --pin-set) is its rows on old pins: the
    # matrix and profiles the hints name are not its own.
    config = terminalreporter.config
    if config.getoption("progress") and not config.getoption("pin_set", default=None):
        terminalreporter.write_line(_more(config))


def _more(config: pytest.Config) -> str:
    """How to run more than this run did."""
    hints = []
    if config.getoption("matrix") != "full":
        hints.append(
            "every config: `nox -s suite -- --matrix full --dist load` (1440 tests, about "
            "3 hours on 2 cores; `load`, not the ci run's `loadfile`, which keeps a "
            "file's rows on one worker)"
        )
    if profiles.active != "nightly":
        hints.append("more examples per row: `SUITE_PROFILE=nightly nox -s suite`")
    hints += [
        "across cores: `-- -n auto`; across machines: `-- --splits N --group I` "
        "(.github/workflows/nightly.yml)",
    ]
    return "To run more:\n" + "\n".join(f"  {h}" for h in hints)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # First: pluggy skips the hooks after one that raises, and xdist's teardown of its
    # nodes raised after a Ctrl-C ("cannot send (already closed?)"): the rows done are
    # written before it runs.
    f = session.config.stash[findings.KEY]
    if f:
        f.write()
