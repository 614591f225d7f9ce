"""Hypothesis searches a property of one config; the verdict is compared with the model.

Hypothesis draws the number of tasks and then every move from the enabled set the
runner offers. An invariant violation or a model mismatch fails the example;
Hypothesis shrinks it, and the minimal scenario comes back as an ``Outcome`` with its
timeline and the one-line reproduction.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from harness.cluster import Cluster
from harness.runs.lock import LockRun, LockRunner
from model import expectations
from model import history as h
from model.config import LockConfig
from model.locks import check_lock_model
from properties import attacks, profiles
from properties.scenario import Scenario
from properties.tighten import size, tighten
from properties.timeline import render

TASKS = st.integers(min_value=2, max_value=10)
# Per example, how often the scheduler switches executions and injects faults: 1 in
# 2**k moves. Swarm testing (Groce et al., ISSTA 2012): examples differ in *kind*, so
# some run one execution deep into its critical section and others interleave finely.
SWITCHING = st.integers(min_value=0, max_value=3)
FAULTS = st.integers(min_value=1, max_value=4)


def _one_in(data: st.DataObject, k: int) -> bool:
    """True with odds 1 in 2**k; shrinks to False."""
    n = (1 << k) - 1
    return n == 0 or data.draw(st.integers(0, n)) == n


class Scheduler:
    """Chooses each move from the enabled ones, drawing every decision from Hypothesis.

    Progress (submit, step, resume) sticks with the execution it last stepped unless a
    switch is drawn; a fault (kill, pause, expire) is drawn rarely. Every draw shrinks
    towards "no switch, no fault", so a shrunk counterexample keeps only the
    interleaving and the faults it needs.
    """

    def __init__(self, data: st.DataObject, switching: int, faults: int) -> None:
        self.data, self.switching, self.faults = data, switching, faults
        self.current: str | None = None

    def __call__(self, enabled: list[str]) -> str:
        calm = [m for m in enabled if m.startswith(("submit", "step", "resume"))]
        faults = [m for m in enabled if m not in calm]
        if faults and (not calm or _one_in(self.data, self.faults)):
            return self.data.draw(st.sampled_from(faults))
        if self.current in calm and not _one_in(self.data, self.switching):
            move = self.current
        else:
            move = self.data.draw(st.sampled_from(calm))
        self.current = move if move.startswith("step") else None
        return move


def schedule(data: st.DataObject) -> Scheduler:
    """A Scheduler with this example's switching and fault odds."""
    return Scheduler(
        data, data.draw(SWITCHING, label="switching"), data.draw(FAULTS, label="faults")
    )


class Tally:
    """Scenarios played (the search's, then any attack's), and which of the search's
    failed first: how much of a profile's budget a row needs before its violation
    shows (``found_at`` in the findings)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_failure: int | None = None


def hypothesis_test(
    one: Callable[[st.DataObject], None],
    digest: str,
    examples: dict[str, int] | None = None,
    tally: Tally | None = None,
    shrink: int | None = None,
) -> Callable[[], None]:
    """``one`` as a Hypothesis test: no deadline (real workers), one failure reported,
    and its own example-database entry per ``digest`` (property and config), not one
    shared by all. ``examples``: max_examples per profile, else the profile's own;
    ``shrink``: seconds Hypothesis may shrink a failure, else the profile's bound.

    A derandomized profile (ci) seeds each search from ``digest`` alone. Hypothesis
    would seed it from the test function's source text (``function_digest``), so an
    edit to a closure here silently gave every ci row other examples (seen: one
    row's violation stopped showing after a one-line change)."""
    current = settings()  # the loaded profile
    default = current.max_examples
    seen = tally or Tally()

    def counted(data: st.DataObject) -> None:
        seen.calls += 1
        try:
            one(data)
        except Failure:
            if seen.first_failure is None:
                seen.first_failure = seen.calls
            raise

    test = settings(
        max_examples=default if examples is None else examples.get(profiles.active, default),
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )(given(st.data())(counted))
    test._hypothesis_internal_add_digest = digest.encode()  # type: ignore[attr-defined]
    if current.derandomize:
        test = seed(int.from_bytes(hashlib.sha256(digest.encode()).digest()[:8], "big"))(test)

    def bounded() -> None:
        from hypothesis.internal.conjecture import engine

        before = engine.MAX_SHRINKING_SECONDS
        if shrink is not None:
            engine.MAX_SHRINKING_SECONDS = shrink
        try:
            test()
        finally:
            engine.MAX_SHRINKING_SECONDS = before

    return bounded


class Failure(Exception):
    """One failing example: an invariant violated or the model contradicted."""

    def __init__(self, kind: str, scenario: Any, run: Any, lines: list[str], marks: list[int]):
        super().__init__(f"{kind}: " + "; ".join(lines))
        self.kind, self.scenario, self.run, self.lines, self.marks = (
            kind,
            scenario,
            run,
            lines,
            marks,
        )

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


def judge(prop: str, config: LockConfig, run: LockRun) -> Failure | None:
    """The verdict on one run: a model mismatch first, then the property's invariant."""
    scenario = Scenario(prop, config, run.tasks, tuple(run.moves))
    events: Sequence[h.Event] = run.history.events
    crashed = [
        (i, e) for i, e in enumerate(events) if isinstance(e, h.Finished) and e.status == "error"
    ]
    if crashed:  # the task itself failed: neither the lock nor Celery is judged
        lines = [f"#{i} {e.execution} raised {e.error}" for i, e in crashed]
        return Failure("task error", scenario, run, lines, [i for i, _ in crashed])
    if (sem := config.semantics) is not None:
        mismatches = check_lock_model(sem, events)
        if mismatches:
            lines = [
                f"#{m.index} {m.execution}: expected {m.expected}, observed {m.observed}: {m.why}"
                for m in mismatches
            ]
            return Failure("model mismatch", scenario, run, lines, [m.index for m in mismatches])
    violations = expectations.PROPERTIES[prop].check(events)
    if violations:
        lines = [f"#{v.index} {v.message}" for v in violations]
        return Failure("invariant violated", scenario, run, lines, [v.index for v in violations])
    return None


@dataclass
class Outcome:
    prop: str
    config: Any  # LockConfig or DeliveryConfig
    expected: str
    verdict: str  # holds | violated | model mismatch | harness error
    examples: int
    seconds: float
    failure: Failure | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    found_by: str | None = None  # "search" or "attack: <name>" for a violation
    found_at: int | None = None  # the search's first failing example (1-based)
    why: str = ""  # the model's reason for ``expected``

    def _fault(self) -> dict[str, str]:
        """The fault moves the property's scenarios may contain (delivery rows)."""
        from model.delivery_properties import PROPERTIES

        if self.prop in PROPERTIES and not hasattr(self.config, "lock"):
            return {"fault": ",".join(sorted(PROPERTIES[self.prop].moves)) or "none"}
        return {}

    @property
    def agrees(self) -> bool:
        return self.verdict == self.expected or (
            self.expected == "unknown" and self.verdict in ("holds", "violated")
        )

    def row(self) -> dict[str, Any]:
        f = self.failure
        return {
            "property": self.prop,
            "config": {**self.config.as_dict(), **self._fault()},
            "expected": self.expected,
            "verdict": self.verdict,
            "agrees_with_model": self.agrees,
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
        }


def search(cluster: Cluster, config: LockConfig, prop: str) -> Outcome:
    """Search under the loaded Hypothesis profile (``dev``, ``ci``, ``nightly``)."""
    spec = expectations.PROPERTIES[prop]
    runner = LockRunner(cluster, config, frozenset(spec.moves))

    def one(data: st.DataObject) -> None:
        run = runner.run(data.draw(TASKS, label="tasks"), schedule(data))
        failure = judge(prop, config, run)
        if failure is not None:
            raise failure

    expected = expectations.expected(config, prop)
    tally = Tally()
    test = hypothesis_test(
        one, f"{prop}|{config.label()}", profiles.LOCK_EXAMPLES, tally,
        shrink=profiles.shrink_seconds(expected),
    )  # fmt: skip
    started = time.monotonic()

    def outcome(verdict: str, **kw: Any) -> Outcome:
        return Outcome(
            prop, config, expected, verdict, tally.calls, time.monotonic() - started,
            why=expectations.why(config, prop), **kw,
        )  # fmt: skip

    try:
        test()
    except Failure as failure:
        return outcome(
            verdict_of(failure), failure=_tightened(cluster, failure), found_by="search",
            found_at=tally.first_failure,
        )  # fmt: skip
    except Exception as exc:  # a harness error is a verdict too, never a pass
        return outcome("harness error", error=f"{type(exc).__name__}: {exc}")
    # The search found nothing: play the known attack shapes (properties/attacks.py).
    searched = tally.calls
    try:
        for name, run in attacks.play(runner, prop):
            tally.calls += 1
            if (found := judge(prop, config, run)) is not None:
                return outcome(
                    verdict_of(found), failure=found, found_by=f"attack: {name}",
                    notes=[f"the random search found no counterexample in {searched} examples"],
                )  # fmt: skip
    except Exception as exc:
        return outcome("harness error", error=f"attack scripts: {type(exc).__name__}: {exc}")
    return outcome("holds", notes=[f"{tally.calls - searched} attack scripts passed too"])


def _tightened(cluster: Cluster, failure: Failure) -> Failure:
    """The failure, on the shortest move list ``tighten`` finds that fails the same way."""
    sc = failure.scenario

    def same(run: LockRun) -> bool:
        again = judge(sc.prop, sc.config, run)
        return again is not None and again.kind == failure.kind

    try:
        run = tighten(cluster, failure.run, sc.prop, same)
        # An attack shape that fails the same way may be smaller still.
        runner = LockRunner(cluster, sc.config, frozenset(expectations.PROPERTIES[sc.prop].moves))
        for _name, tried in attacks.play(runner, sc.prop):
            if size(tried.moves) < size(run.moves) and same(tried):
                run = tried
    except Exception:  # a harness hiccup here must not hide the failure already found
        return failure
    return judge(sc.prop, sc.config, run) or failure


def verdict_of(failure: Failure) -> str:
    return {"invariant violated": "violated", "model mismatch": "model mismatch"}.get(
        failure.kind, "harness error"
    )


def replay(cluster: Cluster, scenario: Scenario) -> tuple[LockRun, Failure | None]:
    """Run exactly the scenario's moves; a move that is not enabled is a divergence."""
    spec = expectations.PROPERTIES[scenario.prop]
    runner = LockRunner(cluster, scenario.config, frozenset(spec.moves))
    queue = list(scenario.moves)

    def choose(enabled: list[str]) -> str:
        if not queue:
            # A scenario cut short (hand-written, or edited) runs to its end the
            # simplest way: the lowest execution steps, tasks are submitted in order.
            return next(m for m in enabled if m == "submit" or m.startswith(("step", "resume")))
        move = queue.pop(0)
        if move not in enabled:
            raise ReplayDiverged(f"move {move!r} is not enabled; enabled: {enabled}")
        return move

    run = runner.run(scenario.tasks, choose)
    return run, judge(scenario.prop, scenario.config, run)


class ReplayDiverged(Exception):
    pass
