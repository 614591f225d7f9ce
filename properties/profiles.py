"""Hypothesis settings profiles and the example database.

``dev`` is quick, ``ci`` bounded and derandomized (the same examples every run),
``nightly`` many examples. Failing examples are kept in ``.hypothesis/`` by default;
``SUITE_EXAMPLE_DB=redis://...`` shares them through Redis (read-write when ``CI`` is
set, read-only on a developer's machine, next to the local directory).
"""

from __future__ import annotations

import os

from hypothesis import Phase, settings
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    MultiplexedDatabase,
    ReadOnlyDatabase,
)

PROFILES = ("dev", "ci", "nightly")

# Scenarios Hypothesis may run to shrink one failure (properties/shrinking.py: a count,
# not seconds, so the counterexample a row reports does not depend on the machine's
# speed). On real workers a shrink step costs a whole scenario (0.3-1 s), so the
# bounded profiles stop early and report the smallest counterexample found by then.
SHRINK_CALLS = {"dev": 60, "ci": 20, "nightly": 600}
DELIVERY_SHRINK_CALLS = {"dev": 30, "ci": 15, "nightly": 600}
# ci, on a violation the model predicts: the verdict is the answer the row wanted, and
# more shrinking would only polish the counterexample in findings-ci.json. A violation
# nobody predicted (a disagreement, a plug-in's) keeps the full budget: someone has to
# read it. The suite (dev) and nightly shrink every violation fully.
PREDICTED_SHRINK_CALLS = {"ci": 3}


# Examples per lock property run. ci plays 10: with 20, the search found each
# predicted violation by its 11th example or an attack script found it (every
# predicted lock violation has one, properties/attacks.py), and a kill-heavy "holds"
# row cost about 0.8 s an example, half the lock rows' time.
LOCK_EXAMPLES = {"dev": 25, "ci": 10, "nightly": 400}
# Examples per delivery property run: a delivery scenario costs more than a lock one
# (a killed main process means a worker taking over, a vt move a restore scan).
DELIVERY_EXAMPLES = {"dev": 15, "ci": 10, "nightly": 200}
# Module-state scenarios are short (one to four tasks, a few points each).
STATE_EXAMPLES = {"dev": 30, "ci": 25, "nightly": 300}
# With kills a violation needs a write, a kill after it and a later read: rarer draws.
# (ci: the kill rows' violations showed by the 7th example; the holding row is the
# costliest state row, about 0.6 s an example.)
STATE_KILL_EXAMPLES = {"dev": 80, "ci": 40, "nightly": 500}
active = "default"


def shrink_calls(expected: str, delivery: bool = False) -> int:
    """The shrink budget of one search, given what the model predicts for it."""
    if expected == "violated" and active in PREDICTED_SHRINK_CALLS:
        return PREDICTED_SHRINK_CALLS[active]
    return (DELIVERY_SHRINK_CALLS if delivery else SHRINK_CALLS).get(active, 600)


def activate(profile: str) -> None:
    """The profile the searches' budgets follow (pytest's ``--hypothesis-profile``)."""
    global active
    active = profile


def example_database() -> ExampleDatabase | None:
    local = DirectoryBasedExampleDatabase(
        os.environ.get("SUITE_EXAMPLE_DIR", ".hypothesis/examples")
    )
    url = os.environ.get("SUITE_EXAMPLE_DB")
    if not url:
        return local
    import redis
    from hypothesis.extra.redis import RedisExampleDatabase

    shared: ExampleDatabase = RedisExampleDatabase(redis.Redis.from_url(url))
    # The fleet writes what it finds; a developer's machine replays it, never adds.
    return MultiplexedDatabase(local, shared if os.environ.get("CI") else ReadOnlyDatabase(shared))


# Every phase but explain. Hypothesis's explain phase replays the shrunk failure with
# parts of it varied, a whole scenario on real workers each time, to comment on which
# draws matter; here the counterexample is the timeline, and the draws are indices
# into enabled moves, so its comments say nothing a reader can use. It also ran
# outside what a row reports: on 2026-12-07 its replays hid a harness timeout each
# (docs/findings/harness.md).
PHASES = tuple(p for p in Phase if p is not Phase.explain)


def register() -> None:
    db = example_database()
    settings.register_profile("dev", max_examples=25, database=db, phases=PHASES)
    settings.register_profile("ci", max_examples=20, derandomize=True, database=None, phases=PHASES)
    settings.register_profile("nightly", max_examples=400, database=db, phases=PHASES)
