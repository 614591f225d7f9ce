"""The findings report: property x config -> verdict, as a table and as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from properties import report_page
from properties.claims import UNTESTED, ClaimResult
from properties.outcome import Outcome


@dataclass
class Findings:
    path: Path
    outcomes: list[Outcome] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def add_claim(self, result: ClaimResult) -> None:
        self.claims.append(result)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = [o.row() for o in self.outcomes] + [c.row() for c in self.claims]
        if self.claims:  # the reference rows no run checks, with the reason
            rows += [u.row() for u in UNTESTED]
        self.path.write_text(json.dumps(rows, indent=2) + "\n")
        report_page.write_page(rows, report_page.page_path(self.path))

    def table(self) -> str:
        head = ("property", "config", "model says", "verdict", "examples", "found at", "s")
        rows = [
            (
                o.prop, o.config.label(), o.expected,
                o.verdict + _mark(o), str(o.examples),
                _found_at(o), f"{o.seconds:.1f}",
            )
            for o in self.outcomes
        ]  # fmt: skip
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.verdict] = counts.get(o.verdict, 0) + 1
        summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        if self.claims:
            claim_lines = [
                f"  [{c.verdict}] {c.claim.id} ({c.broker}): {c.claim.text}"
                + ("" if c.verdict == "confirmed" else f" -- {c.detail}")
                for c in self.claims
            ]
            claim_lines += [f"  [not tested] {u.id}: {u.text} -- {u.reason}" for u in UNTESTED]
            lines += ["", "semantics reference, row by row:", *claim_lines]
        shown = [o for o in self.outcomes if o.failure is not None]
        parts = ["\n".join(lines), f"{len(self.outcomes)} findings: {summary}"]
        for o in shown:
            assert o.failure is not None
            parts.append(o.failure.report())
        return "\n\n".join(parts)


KEY = pytest.StashKey[Findings]()


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
