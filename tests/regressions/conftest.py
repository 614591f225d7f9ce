"""The rows of one pin set (``--pin-set``, set by ``nox -s regressions``), and its
report, written when the session ends (properties/regressions.py)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata

import pytest

from properties import regressions as rg


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("celery-suite").addoption(
        "--pin-set", default=None,
        help="the pin set this venv was installed with (nox -s regressions sets it)",
    )  # fmt: skip


def _installed() -> dict[str, str]:
    found = {}
    for dist in ("celery", "kombu", "billiard"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "missing"
    return found


def _pin_set(config: pytest.Config) -> rg.PinSet:
    name = config.getoption("pin_set")
    if not name:
        raise pytest.UsageError("tests/regressions needs --pin-set: run it with nox -s regressions")
    try:
        p = rg.pin_set(name)
    except ValueError as exc:
        raise pytest.UsageError(f"--pin-set: {exc}") from None
    if (error := rg.version_error(p, _installed())) is not None:
        raise pytest.UsageError(error)
    return p


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "regression_row" in metafunc.fixturenames:
        rows = _pin_set(metafunc.config).bug.rows
        metafunc.parametrize("regression_row", rows, ids=[r.id for r in rows])


@pytest.fixture(scope="session")
def pin_set(request: pytest.FixtureRequest) -> rg.PinSet:
    return _pin_set(request.config)


@pytest.fixture(scope="session")
def regression_report(pin_set: rg.PinSet) -> Iterator[rg.Report]:
    report = rg.Report(pin_set.id, _installed())
    yield report
    report.write()
