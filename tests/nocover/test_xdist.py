"""pytest-xdist on real workers: each xdist worker starts its own servers and celery
workers, and the rows of all of them land in one findings report, in collection
order, with one progress line per row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.servers, pytest.mark.workers]

ROOT = Path(__file__).resolve().parents[2]
ROWS = "test_state and threads/c2 and not kill and not q2 and (read-your-writes or sender-sees)"


def _pytest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/properties/test_state.py", "-q",
         "-p", "no:cacheprovider", "--matrix", "ci", "--hypothesis-profile", "ci", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**_clean_env(), **(env or {})},
    )  # fmt: skip


def _clean_env() -> dict[str, str]:
    """This process's environment without its cluster's URLs (a cluster sets them) or
    the xdist worker it may itself run in."""
    drop = ("SUITE_", "PYTEST_XDIST")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def test_two_xdist_workers_write_one_report(tmp_path: Path) -> None:
    out = tmp_path / "findings.json"
    done = _pytest("-n", "2", "-k", ROWS, "--progress", "--findings", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["property"] for r in rows] == [
        "read-your-writes-across-tasks", "sender-sees-task-writes",
    ]  # fmt: skip
    # One process holds the threads' module state; the app's own copy never sees it.
    assert [(r["verdict"], r["passed"]) for r in rows] == [("holds", True), ("violated", True)]
    progress = [line for line in done.stdout.splitlines() if "/2] " in line]
    assert len(progress) == 2, done.stdout[-3000:]
    assert "[2/2]" in progress[-1] and "1 violated, 0 disagreeing" in progress[-1]
    assert done.stdout.count("2 findings: 1 holds, 1 violated") == 1  # the controller's table


def test_a_shared_server_url_is_refused_under_xdist() -> None:
    done = _pytest("-n", "2", "-k", ROWS, env={"SUITE_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    assert "SUITE_BROKER_URL set with pytest-xdist" in done.stderr
    assert "Traceback" not in done.stderr


# A plug-in whose session-finish hook raises as xdist's did after a Ctrl-C: its
# DSession tears the nodes down there (`teardown_nodes`) and execnet raised
# "OSError: cannot send (already closed?)". Registered at configure time, as DSession
# is, so pluggy calls it before hooks registered earlier and skips them once it raises.
RAISING_TEARDOWN = """
import pytest

class Teardown:
    def pytest_sessionfinish(self):
        raise OSError("cannot send (already closed?)")

def pytest_configure(config):
    config.pluginmanager.register(Teardown(), "raising-teardown")
"""


def test_a_failing_teardown_of_the_workers_still_writes_the_findings(tmp_path: Path) -> None:
    """The rows already done are written even when a session-finish hook of another
    plug-in raises (seen 2026-12-07: a Ctrl-C of `nox -s suite` wrote no findings)."""
    (tmp_path / "raising_teardown.py").write_text(RAISING_TEARDOWN)
    out = tmp_path / "findings.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/properties/test_state.py", "-q",
         "-p", "no:cacheprovider", "-p", "raising_teardown", "--matrix", "ci",
         "-k", "eager/module and no-lost-update-locked", "--findings", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**_clean_env(), "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert "cannot send (already closed?)" in done.stdout + done.stderr  # it did raise
    assert out.exists(), done.stdout[-3000:] + done.stderr[-2000:]
    assert [r["property"] for r in json.loads(out.read_text())] == ["no-lost-update-locked"]
