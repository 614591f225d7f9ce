"""The nightly workflow's shape: 8 shards of the full matrix under the nightly
profile, each with its own findings file, and a merge that waits for all of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


@pytest.fixture(scope="module")
def flow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def shard_command(flow: dict[Any, Any]) -> str:
    runs = [s["run"] for s in flow["jobs"]["shard"]["steps"] if "nox -s suite" in s.get("run", "")]
    assert len(runs) == 1, "one step runs the shard"
    return " ".join(runs[0].split())


def expand(command: str, group: int) -> str:
    return command.replace("${{ matrix.group }}", str(group))


def test_nightly_and_on_demand(flow: dict[Any, Any]) -> None:
    on = flow[True]  # YAML 1.1 reads the bare key "on" as a boolean
    assert "workflow_dispatch" in on
    assert re.fullmatch(r"[\d*]+ [\d*]+ \* \* \*", on["schedule"][0]["cron"])


def test_one_shard_per_group_of_the_split(flow: dict[Any, Any]) -> None:
    shard = flow["jobs"]["shard"]
    groups = shard["strategy"]["matrix"]["group"]
    splits = int(re.search(r"--splits (\d+)", shard_command(flow)).group(1))  # type: ignore[union-attr]
    assert groups == list(range(1, splits + 1))
    assert shard["strategy"]["fail-fast"] is False


def test_every_shard_runs_nightly_and_writes_its_own_files(flow: dict[Any, Any]) -> None:
    shard = flow["jobs"]["shard"]
    assert shard["env"]["SUITE_PROFILE"] == "nightly"
    command = shard_command(flow)
    assert "--group ${{ matrix.group }}" in command
    assert "--matrix full" in command  # nox -s suite alone runs the ci selection
    groups = shard["strategy"]["matrix"]["group"]
    for option in ("--findings", "--junitxml"):
        paths = {re.search(rf"{option} (\S+)", expand(command, g)).group(1) for g in groups}  # type: ignore[union-attr]
        assert len(paths) == len(groups), f"{option} must differ per shard"
    # noxfile's suite session names the profile itself (Hypothesis would load its own
    # "ci" profile on seeing CI): SUITE_PROFILE reaches --hypothesis-profile.
    nox = (ROOT / "noxfile.py").read_text()
    suite = nox[nox.index("def suite(") :].split("\n@nox.session", 1)[0]
    assert '"--hypothesis-profile", _profile()' in suite
    assert 'os.environ.get("SUITE_PROFILE"' in nox


def test_the_services_and_the_example_database(flow: dict[Any, Any]) -> None:
    shard = flow["jobs"]["shard"]
    services = shard["services"]
    assert {"redis", "rabbitmq"} <= set(services)
    assert services["rabbitmq"]["env"]["RABBITMQ_DEFAULT_USER"] == "guest"
    assert "redis://127.0.0.1:6379" in shard["env"]["SUITE_EXAMPLE_DB"]
    # The servers the suite faults are its own, one set per xdist worker: a URL to a
    # shared one is refused under -n (properties/plugin.py), which the suite uses.
    from properties.plugin import _SHARED_SERVERS

    assert not set(_SHARED_SERVERS) & set(shard["env"])
    installs = " ".join(s.get("run", "") for s in shard["steps"])
    assert "apt-get install" in installs
    assert all(b in installs for b in ("memcached", "redis-server", "postgresql"))


def test_artifacts_are_uploaded_even_when_a_shard_fails(flow: dict[Any, Any]) -> None:
    uploads = [s for s in flow["jobs"]["shard"]["steps"] if "upload-artifact" in s.get("uses", "")]
    assert len(uploads) == 1 and uploads[0]["if"] == "always()"
    paths = uploads[0]["with"]["path"]
    assert "findings-${{ matrix.group }}.json" in paths and "junit-${{ matrix.group }}.xml" in paths
    assert ".html" in paths
    assert "${{ matrix.group }}" in uploads[0]["with"]["name"]


def test_the_merge_waits_for_every_shard_and_fails_on_disagreement(
    flow: dict[Any, Any],
) -> None:
    merge = flow["jobs"]["merge"]
    needs = merge["needs"]
    assert (needs if isinstance(needs, list) else [needs]) == ["shard"]
    assert merge["if"] == "always()"
    steps = merge["steps"]
    download = next(i for i, s in enumerate(steps) if "download-artifact" in s.get("uses", ""))
    run = next(i for i, s in enumerate(steps) if "nox -s merge" in s.get("run", ""))
    assert download < run
    assert "continue-on-error" not in steps[run] and "|| true" not in steps[run]["run"]
    assert "findings-*.json" in steps[run]["run"]
