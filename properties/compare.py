"""Compare two findings reports row by row: ``python -m properties.compare A B``.

Rows are matched by property (or semantics claim) and config. Timings are ignored
(``seconds``), and so are the keys the HTML report derives from the others (``DERIVED``),
so a report written before they existed compares with one written after;
``--ignore KEY`` ignores more keys. Prints every row that is only in
one report or differs, key by key, and exits 1 if any does: two runs of the ``ci``
selection must give the same report, and a change that should not alter behaviour
must give the report it had.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

Row = dict[str, Any]
# From config, the property, the counterexample: compared already where they come from.
DERIVED = frozenset({"area", "label", "messages", "lanes"})


def read_json(path: Path, error: type[Exception]) -> Any:
    """A report file's JSON; a missing or unreadable file, or not JSON, is ``error`` with
    one line naming the file (the merge and the durations builder print it)."""
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise error(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise error(f"{path}: not JSON ({exc})") from None


def key(row: Row) -> str:
    name = row.get("property") or row.get("claim")
    return f"{name} {json.dumps(row.get('config', {}), sort_keys=True)}"


def differences(a: list[Row], b: list[Row], ignore: set[str]) -> list[str]:
    """One line per row only in ``a`` or ``b``, and per key that differs between them."""
    left, right = {key(r): r for r in a}, {key(r): r for r in b}
    out = [f"only in the first: {k}" for k in left if k not in right]
    out += [f"only in the second: {k}" for k in right if k not in left]
    for k, row in left.items():
        other = right.get(k)
        if other is None:
            continue
        for field in sorted((set(row) | set(other)) - ignore):
            if row.get(field) != other.get(field):
                out.append(f"{k}: {field}: {row.get(field)!r} != {other.get(field)!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compare", description=__doc__)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--ignore", action="append", default=[], help="a row key to ignore")
    args = parser.parse_args(argv)
    try:
        a, b = (json.loads(p.read_text()) for p in (args.first, args.second))
    except (OSError, ValueError) as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    found = differences(a, b, {"seconds", *DERIVED, *args.ignore})
    for line in found:
        print(line)
    print(f"{len(a)} and {len(b)} rows: {len(found)} differences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
