"""Beat on real ``celery beat`` processes: every row of the beat matrix, and the
fixed runs docs/findings/beat.md cites (each replays one scenario line exactly)."""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from properties.findings import Findings
from properties.plugin import Case, verify, verify_fixed_run


def test_beat(beat_case: Case, cluster: Cluster, report: Findings) -> None:
    verify(beat_case, cluster, report)


# (scenario line, the failure it must end in or None if it must hold, a line its
# timeline must show)
FIXED = [
    pytest.param(
        "one-send-per-tick beat persistent/b2/none tasks=1: "
        "advance; tick b1; send b1; tick b2; send b2",
        "invariant violated",
        "b2           SENT e1 (tick due 00:01)",
        id="two-persistent-beats-send-one-tick-twice",
    ),
    pytest.param(
        "one-send-per-tick beat persistent/b1/kill tasks=1: advance; tick b1; send b1; "
        "kill b1; restart b1; send b1",
        "invariant violated",
        "b1'          SENT e1 (tick due 00:01)",
        id="persistent-restart-before-a-save-resends",
    ),
    pytest.param(
        "one-send-per-tick beat redbeat/b2/pause tasks=1: advance; tick b1; pause b1; "
        "expire; tick b2; send b2; resume b1; send b1",
        "invariant violated",
        "b1           SENT e1 (tick due 00:01)",
        id="redbeat-holder-paused-inside-a-tick-sends-twice",
    ),
    pytest.param(
        "one-send-per-tick beat redbeat/b2/pause tasks=1: advance; pause b1; expire; "
        "tick b2; send b2; resume b1; tick b1",
        None,
        "b1           EXITS: redis.exceptions.LockNotOwnedError",
        id="redbeat-holder-paused-between-ticks-exits",
    ),
    # django-celery-beat's DatabaseScheduler: no lock, rows saved only at a sync.
    pytest.param(
        "one-send-per-tick beat django/b2/none tasks=1: "
        "advance; tick b1; send b1; tick b2; send b2",
        "invariant violated",
        "b2           SENT e1 (tick due 00:01)",
        id="two-django-beats-send-one-tick-twice",
    ),
    pytest.param(
        "one-send-per-tick beat django/b2/pause tasks=1: advance; tick b1; pause b1; "
        "tick b2; send b2; resume b1; send b1",
        "invariant violated",
        "b1           SENT e1 (tick due 00:01)",
        id="django-beat-paused-inside-a-tick-sends-twice",
    ),
    pytest.param(
        "one-send-per-tick beat django/b2/pause tasks=1: advance; pause b1; tick b2; "
        "send b2; resume b1; tick b1; send b1",
        "invariant violated",
        "b1           SENT e1 (tick due 00:01)",
        id="django-beat-paused-between-ticks-sends-twice",
    ),
    pytest.param(
        "one-send-per-tick beat django/b1/kill tasks=1: advance; tick b1; send b1; "
        "kill b1; restart b1; send b1",
        "invariant violated",
        "b1'          SENT e1 (tick due 00:01)",
        id="django-restart-before-a-save-resends",
    ),
    pytest.param(
        "one-send-per-tick beat django/b1/kill tasks=5: advance; tick b1; send b1; "
        "advance; advance; advance; advance; tick b1; kill b1; restart b1; send b1",
        None,
        "b1           SAVED e1's row: last_run_at 00:01, 1 run(s)",
        id="django-restart-after-a-save-sends-the-next-tick-once",
    ),
]


@pytest.mark.parametrize(("line", "failure", "shows"), FIXED)
def test_beat_fixed_run(line: str, failure: str | None, shows: str, cluster: Cluster) -> None:
    verify_fixed_run(cluster, line, failure, shows)
