"""One search engine for every area: Hypothesis drives a runner, the model judges.

An area (locks, delivery, module state, ...) says what differs: its runner, its
model check and invariant, its prediction, its attack shapes, its scenario line
(``Area``). The engine does the rest the same way for all of them: the Hypothesis
test (``hypothesis_test``), the verdict on one run (``judge``), the search of one
property on one config with attacks after it (``search``), and exact replay
(``replay``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition

from harness import timing
from harness.cluster import Cluster
from model import history as h
from model.verdict import Prediction
from properties import profiles, shrinking
from properties.outcome import Failure, Outcome, verdict_of
from properties.scenario import Line
from properties.schedule import Chooser, exact, first_difference, schedule, watching
from properties.timeline import render

C = TypeVar("C")


class Runner(Protocol):
    """What plays examples: ``run`` returns the scenario's size, moves and history."""

    def run(self, tasks: int, choose: Chooser) -> Any: ...


# One finding line per mismatch or violation: the event index it marks, and the text.
Found = list[tuple[int, str]]


class Area(Generic[C]):
    """What an area provides; the engine does the rest. See the README's
    "Adding an area" for the list."""

    name: ClassVar[str]  # the registry key
    digest: ClassVar[str]  # prefix of each search's Hypothesis digest (its seed in ci)
    line: ClassVar[type[Line[Any]]]  # the scenario line kind
    config_type: ClassVar[type]  # its config class: a scenario line's config names its area
    properties: ClassVar[Sequence[str]]  # the properties it searches
    tasks: ClassVar[st.SearchStrategy[int]] = st.integers(min_value=1, max_value=3)

    # --- what runs ---------------------------------------------------------------------
    def runner(self, cluster: Cluster, config: C, prop: str) -> Any:
        """What plays one example: a harness runner (``Runner``) or the area's own."""
        raise NotImplementedError

    def draw(self, data: st.DataObject, runner: Runner) -> Any:
        """One example: the scenario's size, then every move drawn from Hypothesis."""
        return runner.run(data.draw(self.tasks, label="tasks"), schedule(data))

    def attacks(self, runner: Runner, config: C, prop: str) -> Iterator[tuple[str, Any]]:
        """Known schedule shapes played when the search finds nothing: (name, run)."""
        return iter(())

    def passed_note(self, attacks: int) -> list[str]:
        """The note on a row that held, after ``attacks`` attack runs."""
        return []

    def tighten(self, cluster: Cluster, failure: Failure) -> Failure:
        """A last, area-aware shrink of the failure the search found."""
        return failure

    # --- what the model says -----------------------------------------------------------
    def predict(self, config: C, prop: str) -> tuple[Prediction, str]:
        """What the model predicts for ``prop`` on ``config``, and why."""
        raise NotImplementedError

    def mismatches(self, config: C, events: Sequence[h.Event]) -> Found:
        """Where the run differs from the area's model (empty if it has none)."""
        return []

    def violations(self, config: C, prop: str, events: Sequence[h.Event]) -> Found:
        raise NotImplementedError

    # --- budgets and the report ----------------------------------------------------------
    def examples(self, config: C) -> dict[str, int] | None:
        """max_examples per profile, or None for the profile's own."""
        return None

    def shrink(self, expected: str) -> int:
        return profiles.shrink_calls(expected)

    def config_row(self, prop: str, config: C) -> dict[str, Any]:
        return config.as_dict()  # type: ignore[attr-defined]

    def row_area(self, config: C) -> str:
        """The group a row is shown under in the findings (the report page's area
        filter): the area's name, unless the area sorts its configs further."""
        return self.name

    # --- the pytest matrix ---------------------------------------------------------------
    def cases(self, matrix: str, options: Any) -> list[tuple[str, C]]:
        """(property, config) rows of ``matrix``; ``options`` is pytest's getoption."""
        raise NotImplementedError

    def case_id(self, prop: str, config: C) -> str:
        return f"{prop}-{config.label()}"  # type: ignore[attr-defined]

    # --- replay ----------------------------------------------------------------------------
    def replay(
        self, cluster: Cluster, scenario: Line[C], offered: list[list[str]] | None = None
    ) -> tuple[Any, Failure | None]:
        """Run exactly the scenario's moves; a move that is not enabled is a divergence.
        ``offered`` keeps the enabled set of each move (``schedule.watching``)."""
        runner = self.runner(cluster, scenario.config, scenario.prop)
        choose = exact(scenario.moves)
        run = runner.run(scenario.tasks, choose if offered is None else watching(choose, offered))
        return run, judge(self, scenario.prop, scenario.config, run)


def plain(violations: Iterable[Any]) -> Found:
    """``#i message`` lines of invariant violations."""
    return [(v.index, f"#{v.index} {v.message}") for v in violations]


def described(found: Iterable[Any]) -> Found:
    """Lines of findings that describe themselves."""
    return [(v.index, v.describe()) for v in found]


def judge(area: Area[C], prop: str, config: C, run: Any) -> Failure | None:
    """The verdict on one run: a task's own error first, then a model mismatch, then
    the property's invariant."""
    scenario = area.line(prop, config, run.tasks, tuple(run.moves))
    events: Sequence[h.Event] = run.history.events
    crashed = [
        (i, e) for i, e in enumerate(events) if isinstance(e, h.Finished) and e.status == "error"
    ]
    if crashed:  # the task itself failed: neither Celery nor the code under test is judged
        lines = [f"#{i} {e.execution} raised {e.error}" for i, e in crashed]
        return Failure("task error", scenario, run, lines, [i for i, _ in crashed])
    for kind, found in (
        ("model mismatch", lambda: area.mismatches(config, events)),
        ("invariant violated", lambda: area.violations(config, prop, events)),
    ):
        if rows := found():
            return Failure(kind, scenario, run, [t for _, t in rows], [i for i, _ in rows])
    return None


class Tally:
    """Scenarios played (the search's, then any attack's), and which of the search's
    failed first: how much of a profile's budget a row needs before its violation
    shows (``found_at`` in the findings)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_failure: int | None = None
        self.started = time.monotonic()
        self.first_failure_s: float | None = None  # seconds from the start to it


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
    ``shrink``: scenarios Hypothesis may run to shrink a failure
    (properties/shrinking.py), else the profile's bound.

    A derandomized profile (ci) seeds each search from ``digest`` alone: Hypothesis
    would seed it from the test function's source text (``function_digest``), so any
    edit to a closure here would give every ci row other examples."""
    current = settings()  # the loaded profile
    default = current.max_examples
    seen = tally or Tally()

    def counted(data: st.DataObject) -> None:
        seen.calls += 1
        try:
            with timing.phase("example"):  # its own time: Hypothesis, judging
                one(data)
        except Failure:
            if seen.first_failure is None:
                seen.first_failure = seen.calls
                seen.first_failure_s = time.monotonic() - seen.started
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
        with shrinking.bounded(profiles.shrink_calls("holds") if shrink is None else shrink):
            test()

    return bounded


@dataclass
class Played:
    """One example of a search: its Hypothesis choices, the enabled sets it was
    offered, the history it made and the error it raised, if any."""

    choices: tuple[Any, ...]
    offered: list[list[str]]
    events: list[h.Event]
    error: str = ""


class Watched:
    """An area's runner whose examples are kept as ``Played``: the evidence when a
    search does not replay (``replayed_differently``)."""

    def __init__(self, runner: Any, cluster: Cluster) -> None:
        self._runner, self._cluster = runner, cluster
        self.examples: list[Played] = []
        self._offered: list[list[str]] = []

    def run(self, tasks: int, choose: Chooser) -> Any:
        self._offered = []
        return self._runner.run(tasks, watching(choose, self._offered))

    def keep(self, data: st.DataObject, error: BaseException | None = None) -> None:
        """The example just played."""
        events = self._cluster.controller.history.events
        why = "" if error is None else f"{type(error).__name__}: {error}"
        self.examples.append(Played(data.conjecture_data.choices, self._offered, events, why))

    def __getattr__(self, name: str) -> Any:  # the rest is the area's runner
        return getattr(self._runner, name)


def replayed_differently(examples: Sequence[Played]) -> str:
    """For a FlakyStrategyDefinition ("data generation behaved differently"): the last
    example and the earlier one that made the most of the same choices, where the
    enabled sets they were offered first differ, and both timelines."""
    if len(examples) < 2:
        return ""
    *earlier, last = examples

    def common(other: Played) -> int:
        n = 0
        for a, b in zip(other.choices, last.choices, strict=False):
            if a != b:
                break
            n += 1
        return n

    k = max(range(len(earlier)), key=lambda i: common(earlier[i]))
    twin = earlier[k]
    differs = first_difference(twin.offered, last.offered) or "nowhere: the same sets"
    raised = f"\nThe last one raised {last.error}" if last.error else ""
    return (
        f"\nExample {k + 1} and the last one ({len(examples)}) made the same first "
        f"{common(twin)} Hypothesis choices; their enabled sets first differ {differs}.{raised}"
        f"\nExample {k + 1}:\n{render(twin.events)}\nThe last one:\n{render(last.events)}"
    )


def _first_failure(exc: BaseException) -> str:
    """What failed first when Hypothesis could not make a failure happen again
    (FlakyFailure): the original error, with the timeline of the run that raised it."""
    subs = getattr(exc, "exceptions", None)
    if not subs:
        return ""
    first = subs[0]
    detail = first.report() if isinstance(first, Failure) else f"{type(first).__name__}: {first}"
    detail += "".join(f"\n{note}" for note in getattr(first, "__notes__", []))
    return f"\nThe first run failed with: {detail}"


def search(area: Area[C], cluster: Cluster, config: C, prop: str) -> Outcome:
    """Search ``prop`` on ``config`` under the loaded Hypothesis profile, then play the
    area's attack shapes if the search found nothing."""
    runner = area.runner(cluster, config, prop)
    watched = Watched(runner, cluster)

    def one(data: st.DataObject) -> None:
        try:
            run = area.draw(data, watched)
        except Exception as exc:  # kept for the report if a replay does not repeat it
            watched.keep(data, exc)
            exc.add_note("Timeline:\n" + render(cluster.controller.history.events))
            raise
        watched.keep(data)
        if (failure := judge(area, prop, config, run)) is not None:
            raise failure

    expected, why = area.predict(config, prop)
    tally = Tally()
    test = hypothesis_test(
        one, f"{area.digest}{prop}|{config.label()}",  # type: ignore[attr-defined]
        area.examples(config), tally, shrink=area.shrink(expected),
    )  # fmt: skip
    started = time.monotonic()

    def outcome(verdict: str, **kw: Any) -> Outcome:
        return Outcome(
            prop, config, expected, verdict, tally.calls, time.monotonic() - started,
            why=why, config_row=area.config_row(prop, config), area=area.row_area(config), **kw,
        )  # fmt: skip

    def harness_error(where: str, exc: BaseException) -> Outcome:
        if isinstance(exc, FlakyStrategyDefinition):  # the two runs say more than the last
            detail = replayed_differently(watched.examples)
        else:
            detail = f"\nTimeline:\n{render(cluster.controller.history.events)}"
        error = f"{where}{type(exc).__name__}: {exc}{_first_failure(exc)}{detail}"
        return outcome("harness error", error=error)

    try:
        test()
    except Failure as failure:
        return outcome(
            verdict_of(failure), failure=area.tighten(cluster, failure), found_by="search",
            found_at=tally.first_failure, found_after=tally.first_failure_s,
        )  # fmt: skip
    except Exception as exc:  # a harness error is a verdict too, never a pass
        return harness_error("", exc)
    searched = tally.calls
    try:
        for name, run in area.attacks(runner, config, prop):
            tally.calls += 1
            if (found := judge(area, prop, config, run)) is not None:
                return outcome(
                    verdict_of(found), failure=found, found_by=f"attack: {name}",
                    found_after=time.monotonic() - started,
                    notes=[f"the random search found no counterexample in {searched} examples"],
                )  # fmt: skip
    except Exception as exc:
        return harness_error("attacks: ", exc)
    return outcome("holds", notes=area.passed_note(tally.calls - searched))
