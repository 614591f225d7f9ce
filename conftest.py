"""One cluster per test session, shared by tests/nocover and properties/.

Django is configured once per process, so a session holds exactly one cluster (its
servers, controller and workers); tests that need a second one start it in a child
process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.cluster import Cluster
from harness.errors import HarnessError

# The property runs' options, matrix and findings report (tests/properties).
pytest_plugins = ("properties.plugin",)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    try:
        c = Cluster().start()
    except HarnessError as exc:
        pytest.exit(f"cannot start the suite's servers: {exc}", returncode=3)
    try:
        yield c
    finally:
        c.stop()
