"""What the model predicts for a row, and the one rule that says whether a row passed.

Every area's ``*_properties`` module predicts ``holds``, ``violated`` or (a plug-in,
which has no model) ``unknown``; a search ends in a verdict. ``accept`` is the only
acceptability rule: the test assertion, the findings table and the JSON report all
read it, so they cannot disagree.

A plug-in is *broken* if it violates a property it could have kept. Failing
``invoice-under-expiry`` alone says what no lock without a fencing token can avoid:
reported as "unsafe without fencing", not as broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Prediction = Literal["holds", "violated", "unknown"]
Verdict = Literal["holds", "violated", "model mismatch", "harness error"]

FENCING = "invoice-under-expiry"
UNSAFE_WITHOUT_FENCING = "unsafe without fencing"


class Judged(Protocol):
    """What ``accept`` reads of an outcome."""

    @property
    def prop(self) -> str: ...
    @property
    def expected(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def examples(self) -> int: ...


def accept(outcome: Judged) -> tuple[bool, str]:
    """(passed, why): built-ins must agree with the model; plug-ins must hold."""
    o = outcome
    if o.verdict in ("harness error", "model mismatch"):
        return False, o.verdict
    if o.expected != "unknown":
        if o.verdict == o.expected:
            return True, "as the model predicts"
        if o.expected == "violated":
            return False, f"the model predicts a violation, none found in {o.examples} examples"
        return False, "violated where the model says it holds"
    if o.verdict == "holds":
        return True, "holds"
    if o.prop == FENCING:
        return True, UNSAFE_WITHOUT_FENCING
    return False, "broken"


@dataclass(frozen=True)
class Mismatch:
    """Where a run did what an area's replay model does not allow (publishing, beat,
    canvas; locks and delivery add the execution or task to theirs)."""

    index: int
    expected: str
    observed: str
    why: str

    def describe(self) -> str:
        return f"#{self.index}: expected {self.expected}, observed {self.observed} — {self.why}"
