"""A chord on the database backend ends when its polls can only wait for a header.

chord_unlock retries with ``max_retries=None``: once the scenario's own ``vt`` moves
are used up while a header's message waits unacked on a dead worker, the polls would
retry until the move bound. The full matrix met it (``fires-once chord/redis/late/db``,
"scenario did not finish within 400 moves"); the runner now ends such a scenario as a
delivery scenario ends, with ``vt`` until every redelivery has run."""

from __future__ import annotations

import pytest

from harness.cluster import Cluster
from properties.canvas import AREA
from properties.scenario import CanvasScenario

pytestmark = [pytest.mark.servers, pytest.mark.workers]

# Two vt moves, a poll's child killed, then the worker whose child reran t1 killed:
# t1's message is unacked on the dead worker and no vt is left to the scenario.
LINE = (
    "fires-once canvas chord/redis/late/db/prefork/c2 tasks=1: submit; vt; step t8; vt;"
    " kill t8#2; step t1; step t8#3; kill-main t1#2"
)


def test_polls_that_wait_for_a_header_end_with_the_visibility_timeout(cluster: Cluster) -> None:
    run, failure = AREA.replay(cluster, CanvasScenario.decode(LINE))
    # The finish: vt (t1 comes back and completes the chord), then what it owes.
    assert run.moves[8] == "vt" and len(run.moves) < 40, run.moves
    # ...and the body, published by the poll that found the chord ready and by the
    # polls of the lineages the kills made, runs more than once: fires-once breaks.
    assert failure is not None and failure.kind == "invariant violated", failure
