"""The lock area: a lock's acquire/release outcomes and the invoice it guards.

Hypothesis draws the number of tasks and then every move (submit, step, kill, pause,
expire); each run is replayed against the lock's semantics (a difference is a *model
mismatch*, for built-in locks only), then checked against the property's invariant.
After the search, the ``attacks.py`` scripts run, and a failure the search found is
tightened (``tighten.py``) before it is reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

from harness.cluster import Cluster
from harness.runs.lock import LockRun, LockRunner
from model import history as h
from model import lock_properties
from model.config import LockConfig
from model.locks import check_lock_model
from model.verdict import Prediction
from properties import attacks, matrix, profiles
from properties.engine import Area, Found, judge, plain
from properties.outcome import Failure
from properties.scenario import Scenario
from properties.tighten import size, tighten


class LockArea(Area[LockConfig]):
    name = "lock"
    digest = ""
    line = Scenario
    config_type = LockConfig
    properties = tuple(lock_properties.PROPERTIES)
    tasks = st.integers(min_value=2, max_value=10)

    def runner(self, cluster: Cluster, config: LockConfig, prop: str) -> LockRunner:
        return LockRunner(cluster, config, frozenset(lock_properties.PROPERTIES[prop].moves))

    def attacks(self, runner: Any, config: LockConfig, prop: str) -> Iterator[tuple[str, LockRun]]:
        return attacks.play(runner, prop)

    def passed_note(self, attacks: int) -> list[str]:
        return [f"{attacks} attack scripts passed too"]

    def tighten(self, cluster: Cluster, failure: Failure) -> Failure:
        """The failure on the shortest move list ``tighten`` finds that fails the same
        way, or an attack shape that fails the same way if that is smaller still."""
        sc = failure.scenario

        def same(run: LockRun) -> bool:
            again = judge(self, sc.prop, sc.config, run)
            return again is not None and again.kind == failure.kind

        try:
            run = tighten(cluster, failure.run, sc.prop, same)
            runner = self.runner(cluster, sc.config, sc.prop)
            for _name, tried in attacks.play(runner, sc.prop):
                if size(tried.moves) < size(run.moves) and same(tried):
                    run = tried
        except Exception:  # a harness hiccup here must not hide the failure already found
            return failure
        return judge(self, sc.prop, sc.config, run) or failure

    def predict(self, config: LockConfig, prop: str) -> tuple[Prediction, str]:
        return lock_properties.expected(config, prop), lock_properties.why(config, prop)

    def mismatches(self, config: LockConfig, events: Sequence[h.Event]) -> Found:
        if config.semantics is None:  # a plug-in has no model
            return []
        return [
            (m.index, f"#{m.index} {m.execution}: expected {m.expected}, observed {m.observed}: "
             f"{m.why}")
            for m in check_lock_model(config.semantics, events)
        ]  # fmt: skip

    def violations(self, config: LockConfig, prop: str, events: Sequence[h.Event]) -> Found:
        return plain(lock_properties.PROPERTIES[prop].check(events))

    def row_area(self, config: LockConfig) -> str:
        """A third-party library's rows, its kind or its adapter as a plug-in, are
        shown under "libraries" (model/libraries.py)."""
        return "libraries" if config.library is not None else self.name

    def examples(self, config: LockConfig) -> dict[str, int]:
        return profiles.LOCK_EXAMPLES

    def cases(self, matrix_: str, options: Any) -> list[tuple[str, LockConfig]]:
        wanted = options("property")
        props = [p for p in self.properties if not wanted or p in wanted]
        return matrix.lock_cases(matrix_, props, options("lock"))

    def case_id(self, prop: str, config: LockConfig) -> str:
        return f"{config.label()}-{prop}"


AREA = LockArea()
