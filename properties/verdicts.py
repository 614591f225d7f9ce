"""Whether an outcome passes: built-ins must agree with the model; plug-ins must hold.

A plug-in lock has no model. It is *broken* if mutual exclusion (with or without
expiries), exactly-one-invoice without faults, or no-orphaned-lock fails. Failing
``invoice-under-expiry`` alone only says what no lock without a fencing token can
avoid: reported as "unsafe without fencing", not as broken.
"""

from __future__ import annotations

from properties.search import Outcome

FENCING = "invoice-under-expiry"
UNSAFE_WITHOUT_FENCING = "unsafe without fencing"


def acceptable(outcome: Outcome) -> tuple[bool, str]:
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
        o.notes.append(UNSAFE_WITHOUT_FENCING)
        return True, UNSAFE_WITHOUT_FENCING
    return False, "broken"
