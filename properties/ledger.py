"""A findings report as a full-matrix ledger TSV: ``python -m properties.ledger FILE...``.

One line per row (docs/full-matrix/README.md keeps them): area, property (or semantics
claim), config label, expected verdict, verdict, reason, examples, seconds; then a
summary on stderr: rows, per verdict, harness errors and disagreements. A claim row
is area ``semantics``, its broker as its label and ``confirmed`` as its expected verdict.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from properties.merge import BadInput, failing, is_claim, load

Row = dict[str, Any]
COLUMNS = ("area", "property", "config", "expected", "verdict", "reason", "examples", "seconds")


def line(row: Row) -> list[str]:
    if is_claim(row):
        broker = str(row.get("config", {}).get("broker", ""))
        cells = ["semantics", row["claim"], broker, "confirmed", row.get("verdict", "?"),
                 row.get("detail") or "", "", ""]  # fmt: skip
    else:
        cells = [row.get("area", ""), row.get("property", ""), row.get("label", ""),
                 row.get("expected", ""), row.get("verdict", ""), row.get("reason", ""),
                 str(row.get("examples", "")), str(row.get("seconds", ""))]  # fmt: skip
    return [" ".join(str(c).split()) for c in cells]  # one line each, no tabs


def summary(rows: list[Row]) -> str:
    """Counts per verdict; harness errors and the other rows that fail a merge (a
    shipped broken example caught is not one: ``properties.merge.failing``)."""
    verdicts = Counter(r.get("verdict", "?") for r in rows)
    errors = sum(1 for r in rows if r.get("verdict") == "harness error")
    others = len(failing(rows)) - errors
    shown = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    return f"{len(rows)} rows: {shown}; {errors} harness errors, {others} other failures"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledger", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    rows: list[Row] = []
    try:
        for path in args.files:
            rows += load(path)
    except BadInput as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    print("\t".join(COLUMNS))
    for row in rows:
        print("\t".join(line(row)))
    print(summary(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
