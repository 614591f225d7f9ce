"""A known bug's rows on one pin set (``nox -s regressions``): caught on the buggy
pins, passing on the fixed ones. The model and the claims are today's; the finding
names the bug (properties/regressions.py)."""

from __future__ import annotations

import time

from harness.cluster import Cluster
from properties import regressions as rg
from properties.claims import CLAIMS
from properties.delivery import AREA
from properties.engine import search
from properties.findings import Findings
from properties.semantics import check


def test_regression(
    regression_row: rg.Row,
    pin_set: rg.PinSet,
    cluster: Cluster,
    report: Findings,
    regression_report: rg.Report,
) -> None:
    row, note = regression_row, pin_set.bug.note(pin_set.side)
    started = time.monotonic()
    if row.config is not None:
        outcome = search(AREA, cluster, row.config, row.name)
        outcome.notes.append(note)
        report.add(outcome)
        failure = outcome.failure
        text = "\n".join(failure.lines) if failure else (outcome.error or "")
        got = rg.judged(row, outcome.passed, outcome.verdict == "harness error", text)
        scenario = failure.scenario.encode() if failure else ""
        shown = "; ".join(failure.scenario.moves) if failure else ""
        detail = outcome.detail()
        catch = outcome.found_after
    else:
        claim = next(c for c in CLAIMS if c.id == row.name)
        result = check(cluster, claim, row.broker or "")
        text = shown = result.detail
        got = rg.judged(row, result.verdict == "confirmed", result.verdict == "harness error", text)
        scenario, catch = "", None  # one fixed run: caught when it ends
        detail = f"{result.verdict}: {result.detail}\n{result.scenario}\n{result.timeline}"
        result.detail += f" [{note}]"
        report.add_claim(result)
    seconds = time.monotonic() - started
    replay = pin_set.replay(row, scenario) if got != "passes" else ""
    if row.config is not None and replay:  # its "Reproduce with" would run today's pins
        outcome.notes.append(f"replay on these pins: {replay}")
    if got != "caught":
        catch = None
    elif catch is None:
        catch = seconds
    regression_report.results.append(rg.Result(
        row.label(), got, round(seconds, 1), None if catch is None else round(catch, 1),
        shown if got != "passes" else "", replay,
        detail if got != rg.WANTED[pin_set.side] else "",
    ))  # fmt: skip
    assert got == rg.WANTED[pin_set.side], (
        f"{row.label()} on {pin_set.id} ({pin_set.pins.label()}): wanted "
        f"{rg.WANTED[pin_set.side]}, got {got} (the bug's signature: {row.signature!r})\n"
        f"{detail}\nReplay: {replay}"
    )
