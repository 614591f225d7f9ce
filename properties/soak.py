"""Run the ``ci`` selection again and again: ``python -m properties.soak [-- pytest args]``.

Each run is the property part of ``nox -s tests``::

    pytest tests/properties -q --matrix ci --hypothesis-profile ci -n 2 --dist loadfile \\
        --findings reports/soak/run-N.json [pytest args]

``SOAK_RUNS`` (default 20) or ``--runs`` says how many; pytest's output goes to
``reports/soak/run-N.log``. The ``ci`` profile is derandomized and seeds each row from
its property and config, so every run should give every row the same verdict, the
same example count and the same counterexample. This prints every row where one of
them changed, or that is missing from some run, and the figure ``false alarms: X rows
in N runs``: rows that did not pass in some run but passed in another, or whose
verdict changed. Exit status 1 on any change (or a run that wrote no findings), 2 on
bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from properties.compare import key
from properties.timeline import canonical

Row = dict[str, Any]
# What must not change from run to run (timings may).
WATCHED = ("verdict", "passed", "examples", "counterexample")
DEFAULT_RUNS = 20


@dataclass
class Change:
    row: str  # the row's key: property (or claim) and config
    field: str  # a WATCHED field, or "present"
    values: list[tuple[list[int], Any]]  # each distinct value and the runs (1-based) with it

    def describe(self) -> str:
        def shown(value: Any) -> str:
            if self.field == "counterexample" and isinstance(value, str):
                return repr(value.splitlines()[0] + (" ..." if "\n" in value else ""))
            return repr(value)

        parts = [f"runs {_runs(runs)}: {shown(v)}" for runs, v in self.values]
        return f"{self.row}: {self.field}: " + "; ".join(parts)


def _runs(runs: list[int]) -> str:
    return ",".join(str(r) for r in runs)


def changes(runs: Sequence[Sequence[Row]]) -> list[Change]:
    """Every row and watched field whose value is not the same in every run; a row
    missing from some runs is a change of ``present``."""
    table: dict[str, dict[int, Row]] = {}
    for n, rows in enumerate(runs, 1):
        for row in rows:
            table.setdefault(key(row), {})[n] = row
    out: list[Change] = []
    for k, by_run in table.items():
        if len(by_run) != len(runs):
            present = [n for n in range(1, len(runs) + 1) if n in by_run]
            absent = [n for n in range(1, len(runs) + 1) if n not in by_run]
            out.append(Change(k, "present", [(present, True), (absent, False)]))
        for field in WATCHED:
            values: list[tuple[list[int], Any]] = []
            for n, row in sorted(by_run.items()):
                value = row.get(field)
                if field == "counterexample" and isinstance(value, str):
                    value = canonical(value)  # example numbers, concurrent reports' order
                for seen_runs, seen in values:
                    if seen == value:
                        seen_runs.append(n)
                        break
                else:
                    values.append(([n], value))
            if len(values) > 1:
                out.append(Change(k, field, values))
    return out


def false_alarms(found: Sequence[Change]) -> set[str]:
    """Rows that passed in one run and not in another, or whose verdict changed."""
    return {c.row for c in found if c.field in ("verdict", "passed")}


def command(findings: Path, extra: Sequence[str]) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "tests/properties", "-q", "--matrix", "ci",
        "--hypothesis-profile", "ci", "-n", "2", "--dist", "loadfile",  # as nox -s tests
        "--findings", str(findings), *extra,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m properties.soak", allow_abbrev=False,
        description="Run the ci selection N times and report every row that changed.",
        epilog="Any other argument goes to pytest (e.g. -k 'test_lock and redis').",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=None, help="default: SOAK_RUNS, else 20")
    parser.add_argument("--dir", type=Path, default=Path("reports/soak"))
    args, extra = parser.parse_known_args(argv)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    raw = os.environ.get("SOAK_RUNS", str(DEFAULT_RUNS))
    if args.runs is None and not raw.strip().isdigit():
        print(f"soak: SOAK_RUNS={raw!r} is not a number of runs", file=sys.stderr)
        return 2
    n = args.runs if args.runs is not None else int(raw)
    if n < 2:
        print(f"soak: {n} runs: need at least 2 to compare", file=sys.stderr)
        return 2
    args.dir.mkdir(parents=True, exist_ok=True)
    for old in args.dir.glob("run-*.*"):
        old.unlink()
    results: list[list[Row]] = []
    missing: list[int] = []
    started = time.monotonic()
    for i in range(1, n + 1):
        findings, log = args.dir / f"run-{i}.json", args.dir / f"run-{i}.log"
        t0 = time.monotonic()
        with log.open("w") as out:
            code = subprocess.run(command(findings, extra), stdout=out, stderr=subprocess.STDOUT)
        rows = json.loads(findings.read_text()) if findings.exists() else None
        took = time.monotonic() - t0
        if rows is None:
            missing.append(i)
            print(f"run {i}/{n}: pytest exit {code.returncode}, no findings written (see {log})")
            rows = []
        else:
            print(f"run {i}/{n}: pytest exit {code.returncode}, {len(rows)} rows, {took:.0f} s")
        results.append(rows)
        sys.stdout.flush()
    found = changes([r for i, r in enumerate(results, 1) if i not in missing])
    for change in found:
        print(change.describe())
    alarms = false_alarms(found)
    rows = len({key(r) for run in results for r in run})
    print(
        f"{n} runs, {rows} rows, {time.monotonic() - started:.0f} s: "
        f"{len({c.row for c in found})} rows changed; false alarms: {len(alarms)} rows in {n} runs"
    )
    return 1 if found or missing else 0


if __name__ == "__main__":
    sys.exit(main())
