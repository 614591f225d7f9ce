"""What a search ends with: a failing example (``Failure``) and a row (``Outcome``).

``Outcome.passed`` and ``Outcome.reason`` come from ``model.verdict.accept``, the one
acceptability rule: the test assertion, the findings table and the JSON read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model.verdict import accept
from properties.timeline import lanes, render


class Failure(Exception):
    """One failing example: an invariant violated or the model contradicted."""

    def __init__(self, kind: str, scenario: Any, run: Any, lines: list[str], marks: list[int]):
        super().__init__(f"{kind}: " + "; ".join(lines))
        self.kind, self.scenario, self.run, self.lines, self.marks = (
            kind, scenario, run, lines, marks,
        )  # fmt: skip

    def report(self) -> str:
        return "\n".join(
            [
                f"{self.kind.upper()}: {self.scenario.prop} on {self.scenario.config.label()}",
                *(f"  {line}" for line in self.lines),
                "Timeline:",
                render(self.run.history.events, self.marks),
                f"Reproduce with: {self.scenario.command()}",
            ]
        )


def verdict_of(failure: Failure) -> str:
    return {"invariant violated": "violated", "model mismatch": "model mismatch"}.get(
        failure.kind, "harness error"
    )


@dataclass
class Outcome:
    prop: str
    config: Any  # the area's config
    expected: str
    verdict: str  # holds | violated | model mismatch | harness error
    examples: int
    seconds: float
    failure: Failure | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    found_by: str | None = None  # "search" or "attack: <name>" for a violation
    found_at: int | None = None  # the search's first failing example (1-based)
    found_after: float | None = None  # seconds from the search's start to that failure
    why: str = ""  # the model's reason for ``expected``
    config_row: dict[str, Any] | None = None  # the config as the report shows it
    area: str = ""  # the area's registry name (properties/areas.py)

    @property
    def passed(self) -> bool:
        return accept(self)[0]

    @property
    def reason(self) -> str:
        return accept(self)[1]

    def detail(self) -> str:
        """What a failed assertion shows: the counterexample, or the harness error."""
        return self.failure.report() if self.failure else (self.error or "")

    def row(self) -> dict[str, Any]:
        f = self.failure
        return {
            "property": self.prop,
            "config": self.config_row if self.config_row is not None else self.config.as_dict(),
            "expected": self.expected,
            "verdict": self.verdict,
            "passed": self.passed,
            "reason": self.reason,
            "examples": self.examples,
            "seconds": round(self.seconds, 2),
            "why": self.why,
            "counterexample": f.report() if f else None,
            "scenario": f.scenario.encode() if f else None,
            "reproduce": f.scenario.command() if f else None,
            "found_by": self.found_by,
            "found_at": self.found_at,
            "error": self.error,
            "notes": self.notes,
            # For the HTML report (properties/report_page.py): derived, not compared.
            "area": self.area,
            "label": self.config.label(),
            "messages": list(f.lines) if f else [],
            "lanes": lanes(f.run.history.events, f.marks) if f else [],
        }
