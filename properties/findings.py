"""The findings report: property x config -> verdict, as a table and as JSON.

A test adds its rows while it runs; the plugin moves them onto the test's report
(``Entry`` is plain JSON), so the process that writes the report is the one that
reads the reports: the test process itself, or pytest-xdist's controller when the
rows ran in several workers. Rows are kept in collection order, whichever worker
finished first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from properties import report_page
from properties.claims import UNTESTED, ClaimResult
from properties.outcome import Outcome

HEAD = ("property", "config", "model says", "verdict", "examples", "found at", "s")


@dataclass
class Entry:
    """One row as it travels from the test to the report."""

    row: dict[str, Any]  # what the JSON holds
    cells: list[str]  # its line of the table; a claim's one line in ``cells[0]``
    claim: bool = False
    failure: str = ""  # the counterexample shown under the table
    index: int = 0  # the test's place in the collection

    @classmethod
    def of_outcome(cls, o: Outcome) -> Entry:
        cells = [
            o.prop, o.config.label(), o.expected, o.verdict + _mark(o), str(o.examples),
            _found_at(o), f"{o.seconds:.1f}",
        ]  # fmt: skip
        return cls(o.row(), cells, failure=o.failure.report() if o.failure else "")

    @classmethod
    def of_claim(cls, c: ClaimResult) -> Entry:
        line = f"  [{c.verdict}] {c.claim.id} ({c.broker}): {c.claim.text}" + (
            "" if c.verdict == "confirmed" else f" -- {c.detail}"
        )
        return cls(c.row(), [line], claim=True)


@dataclass
class Findings:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    pending: list[Entry] = field(default_factory=list)  # the running test's rows

    def add(self, outcome: Outcome) -> None:
        self.pending.append(Entry.of_outcome(outcome))

    def add_claim(self, result: ClaimResult) -> None:
        self.pending.append(Entry.of_claim(result))

    def take(self, index: int) -> list[dict[str, Any]]:
        """The running test's rows, as they ride on its report."""
        taken, self.pending = self.pending, []
        return [asdict(e) | {"index": index} for e in taken]

    def receive(self, rows: list[dict[str, Any]]) -> None:
        self.entries.extend(Entry(**r) for r in rows)
        self.entries.sort(key=lambda e: e.index)

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def outcomes(self) -> list[Entry]:
        return [e for e in self.entries if not e.claim]

    @property
    def claims(self) -> list[Entry]:
        return [e for e in self.entries if e.claim]

    def rows(self) -> list[dict[str, Any]]:
        rows = [e.row for e in self.outcomes] + [e.row for e in self.claims]
        if self.claims:  # the reference rows no run checks, with the reason
            rows += [u.row() for u in UNTESTED]
        return rows

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = self.rows()
        self.path.write_text(json.dumps(rows, indent=2) + "\n")
        report_page.write_page(rows, report_page.page_path(self.path))

    def table(self) -> str:
        ours = [e for e in self.outcomes if e.row.get("area") != LIBRARIES]
        libs = [e for e in self.outcomes if e.row.get("area") == LIBRARIES]
        lines = _grid([e.cells for e in ours]) if ours or not libs else []
        if libs:
            lines += ["", "libraries (third-party locks, model/libraries.py):"]
            lines += _grid([e.cells for e in libs])
            lines += ["", *library_summary([e.row for e in libs])]
        counts: dict[str, int] = {}
        for e in self.outcomes:
            counts[e.row["verdict"]] = counts.get(e.row["verdict"], 0) + 1
        summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        if self.claims:
            claim_lines = [e.cells[0] for e in self.claims]
            claim_lines += [f"  [not tested] {u.id}: {u.text} -- {u.reason}" for u in UNTESTED]
            lines += ["", "semantics reference, row by row:", *claim_lines]
        parts = ["\n".join(lines), f"{len(self.outcomes)} findings: {summary}"]
        parts += [e.failure for e in self.outcomes if e.failure]
        return "\n\n".join(parts)


KEY = pytest.StashKey[Findings]()

LIBRARIES = "libraries"  # the area of a third-party library's rows (properties/locks.py)


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [HEAD, *rows]) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [HEAD, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def library_summary(rows: list[dict[str, Any]]) -> list[str]:
    """One line per library and pool shape: its verdict per property, then the cause
    of each violation (the model's ``why``, which cites the library's source)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        config = row.get("config") or {}
        shape = f"{config.get('pool')}/c{config.get('concurrency')}"
        lock, lib = str(config.get("lock")), str(config.get("library", config.get("lock")))
        name = lock if lock == lib else f"{lock} ({lib})"
        key = (name, str(config.get("version", "?")), shape)
        groups.setdefault(key, []).append(row)
    lines = []
    for (lib, version, shape), group in groups.items():
        verdicts = ", ".join(f"{r['property']} {r['verdict']}" for r in group)
        lines.append(f"{lib} {version} ({shape}): {verdicts}")
        lines += [f"    {r['property']}: {r['why']}" for r in group if r["verdict"] == "violated"]
    return lines


def _mark(o: Outcome) -> str:
    """A row that failed its check, and why; a passing one's reason where it says more
    than "as predicted" (a plug-in's "unsafe without fencing")."""
    if not o.passed:
        return f"  <-- {o.reason}"
    return "" if o.reason in ("as the model predicts", "holds") else f"  ({o.reason})"


def _found_at(o: Outcome) -> str:
    """Where a violation showed: the search's example number, or the attack's name."""
    if o.found_at is not None:
        return f"#{o.found_at}"
    return o.found_by or "-"
