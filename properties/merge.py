"""Merge shards' findings: ``python -m properties.merge SHARD... --out reports/findings.json``.

Each shard of a split run (``--splits N --group G``) writes its own findings report.
This merges them into one file: rows are matched by property (or semantics claim) and
config, as ``properties.compare`` does; a row two shards both have is kept once, and
two shards giving one row different verdicts is an error. It prints the counts per
verdict and every row that fails, and writes ``findings.html`` beside the output when
``properties.report_page`` is there.

Exit status: 0 when every row passed; 1 when a row has ``passed: false`` (it disagrees
with the model, a harness error, a broken plug-in; not a shipped example that says it
is BROKEN and was caught: ``expected_catch``) or a semantics claim was not
confirmed (refuted, harness error); 2, with one line, on bad input (no files, a
missing file, not JSON, not a findings report, shards that disagree). A claim row
``not tested`` (``properties.claims.UNTESTED``, listed with its reason) does not fail
the merge: it does not fail the run that wrote it either.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from properties.compare import key, read_json

Row = dict[str, Any]
NOT_TESTED = "not tested"


class BadInput(Exception):
    """Input the merge cannot use; the message is the one line printed."""


def is_claim(row: Row) -> bool:
    """A semantics reference row (properties/claims.py), not a property x config one."""
    return "claim" in row or ("id" in row and "property" not in row)


def load(path: Path) -> list[Row]:
    data = read_json(path, BadInput)
    if not isinstance(data, list):
        raise BadInput(f"{path}: not a findings report (a JSON list of rows)")
    for i, row in enumerate(data):
        if not isinstance(row, dict) or not (row.get("property") or is_claim(row)):
            raise BadInput(f"{path}: row {i} has neither a property nor a claim")
        if not isinstance(row.get("verdict"), str):
            raise BadInput(f"{path}: row {i} ({_name(row)}) has no verdict")
        if not is_claim(row) and not isinstance(row.get("passed"), bool):
            raise BadInput(f"{path}: row {i} ({_name(row)}) has no passed: true/false")
    return data


def _name(row: Row) -> str:
    return str(row.get("property") or row.get("claim") or row.get("id"))


def _key(row: Row) -> str:
    return key(row) if "claim" in row or "property" in row else key({**row, "claim": row["id"]})


def merge(shards: list[tuple[str, list[Row]]]) -> list[Row]:
    """One row per property (or claim) and config, in the order first seen."""
    merged: dict[str, tuple[str, Row]] = {}
    for source, rows in shards:
        for row in rows:
            k = _key(row)
            if k not in merged:
                merged[k] = (source, row)
                continue
            first, seen = merged[k]
            if seen["verdict"] != row["verdict"]:
                raise BadInput(
                    f"shards disagree on {k}: {seen['verdict']!r} in {first}, "
                    f"{row['verdict']!r} in {source}"
                )
    return [row for _, row in merged.values()]


def failing(rows: list[Row]) -> list[Row]:
    """Rows that fail the merge: passed false (but a shipped broken example caught), or
    a claim neither confirmed nor untested."""
    return [
        r for r in rows
        if (r["verdict"] not in ("confirmed", NOT_TESTED) if is_claim(r)
            else not r["passed"] and not expected_catch(r))
    ]  # fmt: skip


ROOT = Path(__file__).resolve().parents[1]


def expected_catch(row: Row) -> bool:
    """A shipped example plug-in whose module docstring says BROKEN (examples/), found
    broken: its row has ``passed: false`` ("broken"), and that is what
    tests/properties/test_examples.py asserts, so the test passed. A sound example,
    or a user's plug-in, found broken still fails the merge."""
    config = row.get("config") or {}
    spec = config.get("lock") or config.get("effect") or config.get("plugin")  # a canvas's
    if row.get("reason") != "broken" or row.get("verdict") != "violated":
        return False
    if not isinstance(spec, str) or not spec.startswith("examples.") or ":" not in spec:
        return False
    path = ROOT.joinpath(*spec.split(":", 1)[0].split(".")).with_suffix(".py")
    try:  # read, not imported: properties does not import examples (test_imports)
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    except (OSError, SyntaxError, ValueError):
        return False
    return "BROKEN" in doc.split("\n", 1)[0]


def summary(rows: list[Row]) -> list[str]:
    """The counts per verdict, then one line per failing row."""
    props = [r for r in rows if not is_claim(r)]
    claims = [r for r in rows if is_claim(r)]

    def counts(of: list[Row]) -> str:
        return ", ".join(f"{n} {v}" for v, n in sorted(Counter(r["verdict"] for r in of).items()))

    lines = [f"{len(props)} findings: {counts(props) or 'none'}"]
    if claims:
        lines.append(f"{len(claims)} semantics rows: {counts(claims)}")
    if caught := [r for r in rows if not is_claim(r) and not r["passed"] and expected_catch(r)]:
        lines.append(f"{len(caught)} shipped broken examples caught, as they must be")
    for r in failing(rows):
        why = r.get("reason") or r.get("detail") or ""
        config = json.dumps(r.get("config", {}), sort_keys=True)
        lines.append(f"FAILED {_name(r)} {config}: {r['verdict']}" + (f" ({why})" if why else ""))
    return lines


def write_html(rows: list[Row], out: Path) -> Path | None:
    """findings.html beside ``out``, if the report page module is installed."""
    if importlib.util.find_spec("properties.report_page") is None:
        return None
    write_page = getattr(importlib.import_module("properties.report_page"), "write_page", None)
    if write_page is None:
        return None
    page = out.with_suffix(".html")
    write_page(rows, page)
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m properties.merge", description=__doc__)
    parser.add_argument("shards", nargs="*", type=Path, help="findings JSON of each shard")
    parser.add_argument("--out", type=Path, default=Path("reports/findings.json"))
    args = parser.parse_args(argv)
    try:
        if not args.shards:
            raise BadInput("no findings files given (did the shards' artifacts download?)")
        rows = merge([(str(p), load(p)) for p in args.shards])
    except BadInput as exc:
        print(f"merge: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"merged {len(args.shards)} files into {args.out}")
    for line in summary(rows):
        print(line)
    if (page := write_html(rows, args.out)) is not None:
        print(f"written {page}")
    return 1 if failing(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
