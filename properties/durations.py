"""Build pytest-split's durations file: ``python -m properties.durations SOURCE...``.

pytest-split (``--splits N --group G``) cuts the collected tests into N groups of about
equal total time, reading each test id's seconds from ``.test_durations`` (the
repository root). This writes that file for every test id of ``tests/properties``
under ``--matrix full``:

- **measured**, where a source has the test: a findings report (``--findings``: a list
  of rows with ``property`` or ``claim``, ``config`` and ``seconds``; a row is matched
  to its test id by the same property and config, recomputed from the collected
  test's parameters) or pytest-split's own ``--store-durations`` output (a mapping of
  test id to seconds, setup and teardown included). A later source wins over an
  earlier one for the same test.
- **estimated** otherwise: the mean of the measured tests of the same test function
  and property (``test_delivery`` / ``at-least-once``), else of the same test
  function, else of every measured test, else ``DEFAULT_SECONDS``.

Only the ratios matter for the split, so dev-profile and nightly-profile seconds
should not be mixed in one build. ``--check`` only verifies that the file holds
exactly the collected ids (exit 1 when it does not).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from properties.compare import key as row_key
from properties.compare import read_json

# Seconds assumed for a test when nothing at all was measured (a dev-profile row on
# the 2-core machine takes from a few seconds to a few minutes; the split only needs
# the ratios, which are then all equal).
DEFAULT_SECONDS = 60.0
DURATIONS = Path(".test_durations")  # pytest-split's default --durations-path
COLLECT = ["tests/properties", "--matrix", "full"]

# (test id, row key or None): a collected test and the findings row it writes.
Item = tuple[str, str | None]


class BadSource(Exception):
    """A source file that is missing, not JSON, or of neither known shape."""


@dataclass
class Measured:
    by_key: dict[str, float]  # findings row key -> seconds
    by_id: dict[str, float]  # test id -> seconds (pytest-split's own output)


def read_sources(paths: Sequence[Path]) -> Measured:
    """Seconds from findings reports and pytest-split durations files, in order."""
    out = Measured({}, {})
    for path in paths:
        data = read_json(path, BadSource)
        if isinstance(data, dict) and all(_number(v) for v in data.values()):
            out.by_id.update({str(k): float(v) for k, v in data.items()})
        elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
            out.by_key.update(
                {row_key(r): float(r["seconds"]) for r in data if _number(r.get("seconds"))}
            )
        else:
            raise BadSource(
                f"{path}: neither a findings report (a list of rows) nor a durations "
                "file (test id -> seconds)"
            )
    return out


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def group_of(test_id: str, row: str | None) -> tuple[str, str]:
    """What an estimate averages over: the test function and the row's property."""
    function = test_id.split("[", 1)[0]
    return function, (row.split(" ", 1)[0] if row else "")


def build(
    items: Sequence[Item], measured: Measured, default: float = DEFAULT_SECONDS
) -> tuple[dict[str, float], int, int]:
    """Seconds for every item: (durations, measured count, estimated count)."""
    known: dict[str, float] = {}
    for test_id, row in items:
        if test_id in measured.by_id:
            known[test_id] = measured.by_id[test_id]
        elif row is not None and row in measured.by_key:
            known[test_id] = measured.by_key[row]
    by_group: dict[tuple[str, str], list[float]] = defaultdict(list)
    by_function: dict[str, list[float]] = defaultdict(list)
    for test_id, row in items:
        if test_id in known:
            function, prop = group_of(test_id, row)
            by_group[function, prop].append(known[test_id])
            by_function[function].append(known[test_id])
    overall = _mean(known.values()) if known else default
    out: dict[str, float] = {}
    for test_id, row in items:
        if test_id in known:
            out[test_id] = round(known[test_id], 2)
            continue
        function, prop = group_of(test_id, row)
        pool = by_group.get((function, prop)) or by_function.get(function)
        out[test_id] = round(_mean(pool) if pool else overall, 2)
    return dict(sorted(out.items())), len(known), len(items) - len(known)


def _mean(values: Iterable[float]) -> float:
    seq = list(values)
    return sum(seq) / len(seq)


def missing_and_stale(durations: Mapping[str, Any], items: Sequence[Item]) -> tuple[set, set]:
    """Collected ids the file lacks, and ids in the file nothing collects."""
    ids = {test_id for test_id, _ in items}
    return ids - set(durations), set(durations) - ids


# --- collection (needs pytest and the suite's plugin, not servers) ------------------------


def item_row(item: Any) -> str | None:
    """The findings row key a collected property test writes, from its parameters:
    an area's ``Case``, a semantics ``claim`` on a ``broker``, or a shipped example
    lock (tests/properties/test_examples.py). None if it is none of these."""
    from model.config import LockConfig
    from properties.claims import ClaimResult
    from properties.locks import AREA as LOCKS
    from properties.plugin import Case

    params: dict[str, Any] = getattr(getattr(item, "callspec", None), "params", {})
    for value in params.values():
        if isinstance(value, Case):
            return _key(value.prop, value.area.config_row(value.prop, value.config))
    if "claim" in params and "broker" in params:
        claim = params["claim"]
        return _key(claim.id, ClaimResult(claim, params["broker"], "", "").row()["config"], "claim")
    lock = params.get("lock")
    if isinstance(lock, str):
        prop = params.get("prop") or getattr(item.module, "BROKEN", {}).get(lock)
        if isinstance(prop, str):
            return _key(prop, LOCKS.config_row(prop, LockConfig(lock, "prefork", 2)))
    return None


def _key(name: str, config: dict[str, Any], field: str = "property") -> str:
    # Through JSON and back, as a findings file holds it (tuples become lists).
    return row_key({field: name, "config": json.loads(json.dumps(config))})


class _Collector:
    def __init__(self) -> None:
        self.items: list[Item] = []

    def pytest_collection_finish(self, session: Any) -> None:
        self.items = [(i.nodeid, item_row(i)) for i in session.items]


def collect(args: Sequence[str] = COLLECT) -> list[Item]:
    """The property tests pytest collects, with the row each writes."""
    import pytest

    collector = _Collector()
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        code = pytest.main([*args, "--collect-only", "-q"], [collector])
    if code != 0:
        raise BadSource(f"collecting {' '.join(args)} failed (pytest exit {code}):\n"
                        + quiet.getvalue()[-2000:])  # fmt: skip
    return collector.items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m properties.durations",
        description="Write pytest-split's .test_durations for tests/properties --matrix full.",
    )
    parser.add_argument(
        "sources", nargs="*", type=Path,
        help="findings JSON files and/or pytest-split --store-durations files",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=DURATIONS, help="default: .test_durations")
    parser.add_argument(
        "--default", type=float, default=DEFAULT_SECONDS,
        help=f"seconds when nothing is measured (default {DEFAULT_SECONDS:g})",
    )  # fmt: skip
    parser.add_argument(
        "--check", action="store_true",
        help="only check that --out holds exactly the collected test ids",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.check and not args.sources:
        print("durations: give findings JSON or pytest-split durations files", file=sys.stderr)
        return 2
    try:
        measured = Measured({}, {}) if args.check else read_sources(args.sources)
        items = collect()
    except BadSource as exc:
        print(f"durations: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return _check(args.out, items)
    durations, n_measured, n_estimated = build(items, measured, args.default)
    args.out.write_text(json.dumps(durations, indent=4, sort_keys=True) + "\n")
    unmatched = len(measured.by_key) - len(
        {row for _, row in items if row is not None and row in measured.by_key}
    )
    print(
        f"{args.out}: {len(durations)} test ids, {n_measured} measured, "
        f"{n_estimated} estimated ({sum(durations.values()) / 3600:.1f} h in all)"
        + (f"; {unmatched} source rows matched no collected test" if unmatched else "")
    )
    return 0


def _check(path: Path, items: Sequence[Item]) -> int:
    try:
        durations = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"durations: {path}: {exc}", file=sys.stderr)
        return 2
    missing, stale = missing_and_stale(durations, items)
    for test_id in sorted(missing):
        print(f"missing: {test_id}")
    for test_id in sorted(stale):
        print(f"stale: {test_id}")
    print(
        f"{path}: {len(items)} collected, {len(missing)} missing, {len(stale)} stale"
        + ("" if not (missing or stale) else "; refresh: python -m properties.durations ...")
    )
    return 1 if missing or stale else 0


if __name__ == "__main__":
    sys.exit(main())
