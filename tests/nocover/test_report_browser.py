"""The HTML findings page in a real headless browser: Debian's Chromium, driven by
Playwright. No console errors, the filters hide rows, a timeline has a size, and a
screenshot (reports/findings-page.png) for a person to look at."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from properties.report_page import write_page
from tests.cover.findings_rows import rows

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "reports" / "findings-page.png"


def _chromium() -> str:
    """Debian's Chromium; missing, the test fails with its fix: a skip would let the
    page go untested in CI."""
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found is None:
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium", pytrace=False)
    return found


def test_the_page_renders_filters_and_draws_in_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright not installed: pip install -e '.[browser]'", pytrace=False)
    path = tmp_path / "findings.html"
    write_page(rows(), path)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            rows_ = page.locator("#findings tr.filterable")
            assert rows_.count() == 4
            assert page.locator("#f-count").inner_text() == "5 of 5 rows shown"

            page.fill("#f-text", "cookbook")  # config text: only the lock rows
            visible = page.locator("#findings tr.filterable:visible")
            assert visible.count() == 2
            assert all("cookbook" in t for t in visible.all_inner_texts())
            assert page.locator("#claims tr.filterable:visible").count() == 0
            page.fill("#f-text", "")

            page.select_option("#f-verdict", "model mismatch")
            assert page.locator("#findings tr.filterable:visible").count() == 1
            assert page.locator("article.card:visible").count() == 1
            page.select_option("#f-verdict", "")
            page.select_option("#f-area", "semantics")
            assert page.locator("tr.filterable:visible").count() == 1
            page.select_option("#f-area", "")
            page.check("#f-failed")
            assert page.locator("#findings tr.filterable:visible").count() == 2
            page.uncheck("#f-failed")

            box = page.locator("svg.tl").first.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 200
            marked = page.locator("svg.tl g.marked rect").first.bounding_box()
            assert marked is not None and marked["width"] > 0
            for plot in ("#plot-found-at svg", "#plot-seconds svg"):
                size = page.locator(plot).bounding_box()
                assert size is not None and size["height"] > 50

            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            page.click("button.copy >> nth=0")
            page.wait_for_selector("button.copy.done")  # copied: the script's feedback
        finally:
            browser.close()
    assert errors == []
