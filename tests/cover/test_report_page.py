"""The HTML findings page: every row in the table, filters, timelines, plots."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from properties.findings import Findings
from properties.outcome import Outcome
from properties.report_page import FIT, LANE_MIN, page_path, render_page, timeline, write_page
from tests.cover.findings_rows import LOCK, LOCK_EVENTS, MARKED, lock_failure, rows


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The page of ``rows()``, written once: each render draws two plots."""
    path = tmp_path_factory.mktemp("report") / "findings.html"
    write_page(rows(), path)
    return path.read_text()


def test_a_row_carries_its_area_label_and_lanes() -> None:
    row = rows()[0]
    assert row["area"] == "locks" and row["label"] == LOCK.label()
    assert [e["index"] for e in row["lanes"]] == list(range(len(LOCK_EVENTS)))
    assert [e["index"] for e in row["lanes"] if e["marked"]] == [MARKED]
    assert {e["lane"] for e in row["lanes"]} == {"global", "w1.c1", "w1.c2"}
    json.dumps(row)  # the JSON holds it as it is


def test_every_row_is_in_the_table_with_its_verdict(page: str) -> None:
    table = page[page.index('<section id="findings">') : page.index('<section id="claims">')]
    trs = re.findall(r'<tr id="row-\d+" class="filterable v-(\w+)( failed)?"', table)
    assert trs == [("violated", ""), ("holds", ""), ("mismatch", " failed"), ("error", " failed")]
    for label in ("cookbook-locmem/prefork/c2", "insert-on-conflict/redis/late/prefork/c2"):
        assert f'<td class="mono">{label}</td>' in table
    assert 'data-area="locks" data-verdict="violated"' in table
    assert 'data-area="delivery" data-verdict="model mismatch"' in table
    assert '<td class="num">#4</td>' in table and '<td class="num">60.0</td>' in table
    assert "✗ " in table  # the failed checks say so


def test_the_filters_are_there_with_the_rows_values(page: str) -> None:
    nav = page[page.index('<nav class="filters"') : page.index("</nav>")]
    areas = re.findall(r"<option>([^<]+)</option>", nav[: nav.index('id="f-verdict"')])
    assert areas == ["delivery", "locks", "semantics"]
    for verdict in ("holds", "violated", "model mismatch", "harness error", "refuted"):
        assert f"<option>{verdict}</option>" in nav
    assert 'id="f-text"' in nav and 'id="f-failed"' in nav
    assert 'getElementById("f-text")' in page  # the script that filters is inlined


def test_the_counterexample_is_a_timeline_with_the_marked_step_highlighted(page: str) -> None:
    card = page[page.index('id="cx-row-0"') : page.index('id="cx-row-2"')]
    svg = card[card.index("<svg") : card.index("</svg>")]
    for title in ("scenario · broker", "w1.c1 child", "w1.c2 child"):
        assert f">{title}</text>" in svg
    marked = re.findall(r'<g class="ev k-(\w+) marked" data-index="(\d+)"', svg)
    assert marked == [("step", str(MARKED))]
    assert svg.count('class="mark-band"') == 1
    faults = re.findall(r'<g class="ev k-fault" data-index="(\d+)"', svg)
    assert faults == ["5", "6", "10"]  # pause, expire, resume
    assert "t2: acquire -&gt; ACQUIRED" in svg
    assert "#9 t2 acquired invoice:o1 while t1 holds it" in card


def test_reproduce_command_copy_button_and_text_counterexample(page: str) -> None:
    command = lock_failure().scenario.command()
    escaped = command.replace("'", "&#39;")
    assert f'data-copy="{escaped}"' in page and f">{escaped}</code>" in page
    assert "<summary>counterexample as text</summary>" in page
    assert "INVARIANT VIOLATED: mutual-exclusion on cookbook-locmem/prefork/c2" in page
    assert "TimeoutError: w1 did not park" in page  # the harness error, shown as text


def test_claims_are_shown_with_their_verdict(page: str) -> None:
    claims = page[page.index('<section id="claims">') : page.index('<section id="counter')]
    assert '<td class="mono">ack.early</td>' in claims
    assert '<span class="pill v-violated">refuted</span>' in claims
    assert "broker: t1 acked" in claims


def test_both_plots_are_inline_svg(page: str) -> None:
    for plot in ("plot-found-at", "plot-seconds"):
        figure = page[page.index(f'<figure id="{plot}">') :]
        figure = figure[: figure.index("</figure>")]
        assert "<svg" in figure and "nothing to plot" not in figure
    assert "examples until the first failure" in page and "seconds per row" in page
    assert "<?xml" not in page and "http://" not in page.replace("http://www.w3.org/", "")


def test_no_failure_no_rows_and_bad_rows_still_render(tmp_path: Path) -> None:
    holds = [r for r in rows() if r.get("verdict") == "holds"]
    page = render_page(holds)
    assert page.count("nothing to plot") == 1 and "nothing to draw" in page
    assert "Every row passed its check." in page
    empty = render_page([])
    assert "No property rows" in empty and empty.count("nothing to plot") == 2
    bad = render_page(
        [42, "x", {}, {"property": "p", "lanes": [None, {"lane": 3}], "seconds": "slow"},
         {"claim": "c", "config": None}]
    )  # fmt: skip
    assert "2 rows of the report could not be read" in bad
    assert bad.count('class="filterable v-unknown"') == 3
    assert timeline([None, {"text": "no lane"}]) is None
    assert "1 row of the report could not be read" in render_page({"not": "a list"})
    assert "<svg" in render_page([{"property": "$p", "label": "a$b", "seconds": 1.0}])


def test_findings_write_puts_the_page_next_to_the_json(tmp_path: Path) -> None:
    outcome = Outcome(
        "mutual-exclusion", LOCK, "violated", "violated", 7, 3.0, failure=lock_failure(),
        found_at=4, area="locks",
    )  # fmt: skip
    report = Findings(tmp_path / "reports" / "findings.json")
    report.add(outcome)
    report.receive(report.take(0))  # as the plugin moves a test's rows onto the report
    report.write()
    assert json.loads((tmp_path / "reports" / "findings.json").read_text())[0]["area"] == "locks"
    assert "cx-row-0" in (tmp_path / "reports" / "findings.html").read_text()
    assert page_path(Path("r/f.html")) == Path("r/f.html.html")


def test_wide_timelines_cut_only_their_widest_lanes_to_fit() -> None:
    long = "x" * 80
    lanes = [{"lane": f"w{i}", "text": long if i < 6 else "short"} for i in range(7)]
    t = timeline(lanes)
    assert t is not None and t["width"] <= FIT
    widths = {lane["name"]: lane["w"] for lane in t["lanes"]}
    assert widths["w6"] == LANE_MIN and len({widths[f"w{i}"] for i in range(6)}) == 1
    assert widths["w0"] > LANE_MIN
    assert all(b["text"].endswith("…") and b["full"] == long for b in t["boxes"][:6])
    assert t["boxes"][6]["text"] == "short"
