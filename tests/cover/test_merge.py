"""Merging shards' findings: dedup, disagreements, exit codes, bad input."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from properties import merge as m


def prop(name: str, pool: str = "prefork", verdict: str = "holds", passed: bool = True) -> dict:
    reason = "as the model predicts" if passed else "the model predicts holds"
    return {"property": name, "config": {"pool": pool}, "verdict": verdict, "passed": passed,
            "reason": reason}  # fmt: skip


def claim(cid: str, verdict: str = "confirmed") -> dict:
    return {"claim": cid, "config": {"broker": "redis"}, "verdict": verdict, "detail": "d"}


def shard(tmp_path: Path, name: str, rows: list[Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return str(path)


def run(tmp_path: Path, *shards: str) -> tuple[int, list[Any]]:
    out = tmp_path / "out" / "findings.json"
    code = m.main([*shards, "--out", str(out)])
    return code, json.loads(out.read_text()) if out.exists() else []


def test_rows_of_all_shards_once_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = shard(tmp_path, "a.json", [prop("p"), prop("q", verdict="violated"), claim("c")])
    b = shard(tmp_path, "b.json", [prop("p", "threads"), prop("p"), claim("c")])
    code, rows = run(tmp_path, a, b)
    assert code == 0
    assert [(r.get("property") or r["claim"], r["config"]) for r in rows] == [
        ("p", {"pool": "prefork"}), ("q", {"pool": "prefork"}), ("c", {"broker": "redis"}),
        ("p", {"pool": "threads"}),
    ]  # fmt: skip
    out = capsys.readouterr().out
    assert "3 findings: 2 holds, 1 violated" in out and "1 semantics rows: 1 confirmed" in out


def test_a_row_that_failed_its_check_fails_the_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = shard(tmp_path, "a.json", [prop("p")])
    b = shard(tmp_path, "b.json", [prop("q", verdict="harness error", passed=False)])
    code, rows = run(tmp_path, a, b)
    assert code == 1 and len(rows) == 2  # the merged file is written all the same
    assert "FAILED q" in capsys.readouterr().out


@pytest.mark.parametrize("verdict", ["refuted", "harness error"])
def test_a_claim_not_confirmed_fails_the_merge(tmp_path: Path, verdict: str) -> None:
    assert run(tmp_path, shard(tmp_path, "a.json", [prop("p"), claim("c", verdict)]))[0] == 1


def test_an_untested_claim_does_not_fail_it(tmp_path: Path) -> None:
    assert run(tmp_path, shard(tmp_path, "a.json", [claim("c", m.NOT_TESTED)]))[0] == 0


def test_a_row_keyed_by_id_is_a_claim(tmp_path: Path) -> None:
    row = {"id": "x", "config": {}, "verdict": "refuted"}
    assert m.is_claim(row)
    assert run(tmp_path, shard(tmp_path, "a.json", [row]))[0] == 1


def test_shards_disagreeing_on_a_row_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = shard(tmp_path, "a.json", [prop("p")])
    b = shard(tmp_path, "b.json", [prop("p", verdict="violated", passed=False)])
    assert run(tmp_path, a, b)[0] == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("merge: shards disagree on p") and "a.json" in err and "\n" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "No such file"),
        ("{nope", "not JSON"),
        ('{"property": "p"}', "not a findings report"),
        ('[{"config": {}}]', "neither a property nor a claim"),
        ('[{"property": "p", "verdict": "holds"}]', "no passed"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, message: str
) -> None:
    path = tmp_path / "shard.json"
    if text is not None:
        path.write_text(text)
    assert run(tmp_path, str(path))[0] == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_no_files_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path)[0] == 2
    assert "no findings files" in capsys.readouterr().err


def test_the_html_page_is_written_when_its_module_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[tuple[int, Path]] = []
    module = types.ModuleType("properties.report_page")
    module.write_page = lambda rows, path: written.append((len(rows), path))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "properties.report_page", module)
    monkeypatch.setattr(m.importlib.util, "find_spec", lambda name: object())
    run(tmp_path, shard(tmp_path, "a.json", [prop("p")]))
    assert written == [(1, tmp_path / "out" / "findings.html")]


def test_without_the_module_no_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m.importlib.util, "find_spec", lambda name: None)
    assert m.write_html([prop("p")], tmp_path / "findings.json") is None
    assert not (tmp_path / "findings.html").exists()


def plugin_row(lock: str, verdict: str = "violated") -> dict:
    config = {"lock": lock, "backend": "plugin", "pool": "prefork", "concurrency": 2}
    return {"property": "mutual-exclusion", "config": config, "verdict": verdict,
            "passed": False, "reason": "broken"}  # fmt: skip


def test_a_shipped_broken_example_caught_is_what_its_self_test_wants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [plugin_row("examples.locks.cookbook_locmem:make_lock"), prop("p")]
    assert run(tmp_path, shard(tmp_path, "a.json", rows))[0] == 0
    assert "1 shipped broken examples caught" in capsys.readouterr().out


def test_a_shipped_broken_canvas_caught_is_expected_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seen in the full matrix of 2026-12-07: the canvas plug-in's spec is ``plugin``.
    config = {"shape": "custom", "plugin": "examples.canvas.ship_twice:make_canvas"}
    row = {"property": "effects-once", "config": config, "verdict": "violated",
           "passed": False, "reason": "broken"}  # fmt: skip
    assert run(tmp_path, shard(tmp_path, "a.json", [row]))[0] == 0
    assert "1 shipped broken examples caught" in capsys.readouterr().out


@pytest.mark.parametrize(
    "lock",
    [
        "examples.locks.redis_set_nx_px:make_lock",  # SOUND: found broken is a failure
        "mylocks:make_lock",  # a user's plug-in
        "examples.locks.no_such_module:make_lock",
    ],
)
def test_any_other_broken_plugin_fails_the_merge(tmp_path: Path, lock: str) -> None:
    assert run(tmp_path, shard(tmp_path, "a.json", [plugin_row(lock)]))[0] == 1
