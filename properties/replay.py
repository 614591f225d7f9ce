"""Replay one scenario line exactly: ``nox -s replay -- '<scenario>'``.

Exit status: 1 when the scenario fails (the failure reproduced), 0 when it holds,
2 when it cannot be replayed (bad line, diverged, harness error).
"""

from __future__ import annotations

import argparse
import sys

from harness.cluster import Cluster
from harness.errors import HarnessError
from properties.areas import of_line
from properties.scenario import decode_any
from properties.schedule import ReplayDiverged, first_difference
from properties.timeline import anonymous, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="replay", description=__doc__)
    parser.add_argument("scenario", help="the scenario line a failure printed")
    parser.add_argument("--times", type=int, default=1, help="replay N times, compare outcomes")
    args = parser.parse_args(argv)
    try:
        scenario = decode_any(args.scenario)
    except ValueError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    area = of_line(scenario)
    outcomes: list[str] = []
    offered: list[list[list[str]]] = []  # each replay's enabled sets, move by move
    cluster = Cluster()
    try:
        with cluster:
            for i in range(args.times):
                offered.append([])
                run, failure = area.replay(cluster, scenario, offered[-1])
                if i == 0:
                    print(failure.report() if failure else render(run.history.events))
                outcomes.append(anonymous("\n".join(failure.lines)) if failure else "holds")
    except (HarnessError, ReplayDiverged, ValueError) as exc:
        print(render(cluster.controller.history.events))
        print(f"replay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    # The same moves from different enabled sets: a search would not replay (Hypothesis
    # draws an index into the set), even where the outcomes below agree.
    for n, other in enumerate(offered[1:], start=2):
        if differs := first_difference(offered[0], other):
            print(f"NONDETERMINISTIC: replays 1 and {n} were offered other moves {differs}")
            return 2
    distinct = sorted(set(outcomes))
    if len(distinct) > 1:
        print(f"NONDETERMINISTIC: {len(distinct)} different outcomes in {args.times} replays:")
        for d in distinct:
            print(f"  {outcomes.count(d)}x {d}")
        return 2
    verdict = "holds" if distinct == ["holds"] else "FAILS"
    label = f"{scenario.prop} on {scenario.config.label()}"
    print(f"\n{label}: {verdict} ({args.times}/{args.times} replays)")
    return 0 if verdict == "holds" else 1


if __name__ == "__main__":
    sys.exit(main())
