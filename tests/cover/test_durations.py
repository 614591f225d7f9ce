"""The durations file builder: what is measured, what is estimated, and from what."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from model.config import LockConfig
from properties import durations as d
from properties.locks import AREA as LOCKS
from properties.plugin import Case

DELIVERY = "tests/properties/test_delivery.py::test_delivery"
LOCK = "tests/properties/test_locks.py::test_lock"


def row(prop: str, pool: str, seconds: float) -> dict[str, object]:
    return {"property": prop, "config": {"pool": pool}, "seconds": seconds}


def key(prop: str, pool: str) -> str:
    return f'{prop} {{"pool": "{pool}"}}'


def test_a_row_is_measured_by_its_key_and_a_durations_entry_by_its_id() -> None:
    items = [(f"{DELIVERY}[a]", key("p", "solo")), (f"{DELIVERY}[b]", key("p", "threads"))]
    measured = d.Measured({key("p", "solo"): 4.0}, {f"{DELIVERY}[b]": 10.0})
    out, n_measured, n_estimated = d.build(items, measured)
    assert out == {f"{DELIVERY}[a]": 4.0, f"{DELIVERY}[b]": 10.0}
    assert (n_measured, n_estimated) == (2, 0)


def test_an_estimate_is_the_mean_of_its_property_then_its_function_then_all() -> None:
    items = [
        (f"{DELIVERY}[m1]", key("p", "a")),
        (f"{DELIVERY}[m2]", key("p", "b")),
        (f"{DELIVERY}[m3]", key("q", "a")),
        (f"{DELIVERY}[same-prop]", key("p", "c")),
        (f"{DELIVERY}[same-function]", key("r", "c")),
        (f"{LOCK}[nothing-alike]", key("p", "c")),
    ]
    measured = d.Measured({key("p", "a"): 2.0, key("p", "b"): 4.0, key("q", "a"): 12.0}, {})
    out, n_measured, n_estimated = d.build(items, measured)
    assert out[f"{DELIVERY}[same-prop]"] == 3.0  # p's mean
    assert out[f"{DELIVERY}[same-function]"] == 6.0  # test_delivery's mean
    assert out[f"{LOCK}[nothing-alike]"] == 6.0  # every measured test's mean
    assert (n_measured, n_estimated) == (3, 3)


def test_with_nothing_measured_every_test_gets_the_default() -> None:
    out, n_measured, _ = d.build([(f"{LOCK}[x]", None)], d.Measured({}, {}), default=7.0)
    assert out == {f"{LOCK}[x]": 7.0} and n_measured == 0


def test_sources_of_both_shapes_later_wins(tmp_path: Path) -> None:
    findings = tmp_path / "f.json"
    findings.write_text(json.dumps([row("p", "solo", 3.0), {"claim": "c", "config": {}}]))
    later = tmp_path / "g.json"
    later.write_text(json.dumps([row("p", "solo", 5.0)]))
    split = tmp_path / "durations"
    split.write_text(json.dumps({"t::x[1]": 1.5}))
    measured = d.read_sources([findings, split, later])
    assert measured.by_key == {key("p", "solo"): 5.0}  # the claim row has no seconds
    assert measured.by_id == {"t::x[1]": 1.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "not JSON"), ('{"t": "slow"}', "neither"), ("[1, 2]", "neither")],
)
def test_a_bad_source_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(d.BadSource, match=message):
        d.read_sources([path])
    with pytest.raises(d.BadSource, match="No such file"):
        d.read_sources([tmp_path / "absent.json"])


def test_missing_and_stale_ids() -> None:
    missing, stale = d.missing_and_stale({"a": 1.0, "old": 2.0}, [("a", None), ("new", None)])
    assert (missing, stale) == ({"new"}, {"old"})


def test_a_collected_case_maps_to_the_key_of_the_row_it_writes() -> None:
    config = LockConfig("cookbook-redis", "prefork", 2)
    item = SimpleNamespace(
        callspec=SimpleNamespace(params={"lock_case": Case(LOCKS, "mutual-exclusion", config)})
    )
    written = {
        "property": "mutual-exclusion",
        "config": LOCKS.config_row("mutual-exclusion", config),
    }
    assert d.item_row(item) == d.row_key(json.loads(json.dumps(written)))
    other = SimpleNamespace(
        callspec=SimpleNamespace(params={"lock_case": Case(LOCKS, "no-orphaned-lock", config)})
    )
    assert d.item_row(other) != d.item_row(item)


def test_an_example_lock_maps_through_its_module_table() -> None:
    lock = "examples.locks.cookbook_locmem:make_lock"
    item = SimpleNamespace(
        callspec=SimpleNamespace(params={"lock": lock}),
        module=SimpleNamespace(BROKEN={lock: "mutual-exclusion"}),
    )
    assert (d.item_row(item) or "").startswith("mutual-exclusion {")
    assert d.item_row(SimpleNamespace(callspec=SimpleNamespace(params={"x": 1}))) is None


def test_the_command_needs_a_source_and_says_why_a_source_is_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert d.main([]) == 2
    assert d.main([str(tmp_path / "absent.json")]) == 2
    err = capsys.readouterr().err
    assert "give findings JSON" in err and "absent.json" in err


def test_the_repository_file_covers_every_full_matrix_test() -> None:
    """pytest-split gives an unknown test the mean; a stale file splits unevenly. After
    adding or renaming rows: python -m properties.durations <measured sources>."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "properties.durations", "--check"],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


SHARDS = """
import json, sys
from types import SimpleNamespace
from pytest_split.algorithms import Algorithms
from properties import durations as d
items = [SimpleNamespace(nodeid=i) for i, _ in d.collect()]
table = json.loads(d.DURATIONS.read_text())
groups = Algorithms.duration_based_chunks.value(int(sys.argv[1]), items, table)
print(json.dumps([[len(g.selected), g.duration] for g in groups]))
"""


def test_the_nightly_shards_are_even() -> None:
    """pytest-split's default algorithm cuts the collection order into chunks: with a
    skewed file a shard can end up empty (pytest exit 5 fails it) or hold hours more."""
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    workflow = (root / ".github" / "workflows" / "nightly.yml").read_text()
    splits = re.search(r"--splits (\d+)", workflow).group(1)  # type: ignore[union-attr]
    done = subprocess.run(
        [sys.executable, "-c", SHARDS, splits], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    groups = json.loads(done.stdout.splitlines()[-1])
    assert len(groups) == int(splits) and all(n > 0 for n, _ in groups)
    seconds = [s for _, s in groups]
    assert max(seconds) <= 1.15 * sum(seconds) / len(seconds), seconds
