"""The worker settings schema: what the harness writes is what a worker reads back,
in the encodings workers have always read (flags "1"/"0", empty for no value)."""

from __future__ import annotations

import subprocess
import sys

from tasks.settings import Settings


def test_round_trip() -> None:
    for s in [
        Settings(),
        Settings(worker="w@h", result_url="redis://x/1", acks_late=True, acks_on_failure=False),
        Settings(prefetch=4, state_init=0, gates=True, queue_expires_ms=600000),
        Settings(visibility_timeout=1.5, pool_maintain_period=5.0, dedup=True),
        Settings(heartbeat=2.0),
    ]:
        assert Settings.from_env(s.to_env()) == s


def test_encodings() -> None:
    env = Settings(worker="w", acks_late=True, state_init=7, prefetch=2).to_env()
    assert env["SUITE_ACKS_LATE"] == "1" and env["SUITE_DEDUP"] == "0"
    assert env["SUITE_STATE_INIT"] == "7" and env["SUITE_PREFETCH"] == "2"
    assert Settings().to_env()["SUITE_STATE_INIT"] == ""
    assert Settings().to_env()["SUITE_RESULT_URL"] == ""
    assert Settings().to_env()["SUITE_HEARTBEAT"] == ""  # Celery's own broker_heartbeat


def test_absent_or_empty_means_the_default() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"SUITE_STATE_INIT": "", "SUITE_RESULT_URL": ""}) == Settings()
    # anything but "1" is off, even for a flag that defaults on
    assert not Settings.from_env({"SUITE_ACKS_ON_FAILURE": ""}).acks_on_failure


def test_tasks_import_no_examples() -> None:
    code = (
        "import sys, tasks.effects.builtin, tasks.plugins;"
        "assert not [m for m in sys.modules if m.startswith('examples')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
