"""The report in a real browser: Debian's headless Chromium driven by Playwright opens the page
from file://, sees no console error and no broken image, moves the rank slider and sees the
shown rank, numbers and heatmap change, and saves a screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loralab.report import ReportConfig, build_report, slider_ranks

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists() and shutil.which("chromium") is None,
                       reason="Debian's chromium is not installed; run `make browser`"),
    pytest.mark.usefixtures("one_torch_thread"),       # the small reports built here
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
        b = pw.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


def _state(page) -> dict:
    return page.evaluate("""() => {
        const img = document.querySelector('.explorer img:not([hidden])');
        return {rank: document.querySelector('output[data-field=rank]').textContent,
                gauss: document.querySelector('li[data-field=gauss]').textContent,
                struct: document.querySelector('li[data-field=struct]').textContent,
                index: img.getAttribute('data-index'), width: img.naturalWidth,
                shown: document.querySelectorAll('.explorer img:not([hidden])').length,
                active: Array.from(document.querySelectorAll('tr.active'))
                             .map(tr => tr.dataset.rank)};
    }""")


@pytest.mark.parametrize("lang, analyses", [("en", False), ("zh", True)])
def test_report_in_chromium(browser, tmp_path, lang, analyses):
    index = build_report(ReportConfig(preset="quick", hidden_size=64, lang=lang,
                                      analyses=analyses, finetune=False),
                         tmp_path / f"report_{lang}")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(index.as_uri(), wait_until="load")

    # every image decoded, including the hidden heatmaps of other ranks
    broken = page.evaluate("""() => Array.from(document.images)
        .filter(i => !i.complete || i.naturalWidth === 0).length""")
    assert broken == 0
    # the demo figure, one heatmap per slider rank, the analyses' five figures and the merge
    # methods' one
    expected = 1 + len(slider_ranks(64)) + (5 + 1 if analyses else 0)
    assert page.evaluate("document.images.length") == expected
    # formulas laid out as MathML (a block formula has a real size)
    box = page.locator("math[display=block]").first.bounding_box()
    assert box is not None and box["width"] > 50 and box["height"] > 10
    # nothing but the page itself (and its data: URIs) was loaded
    assert all(u.startswith(("file://", "data:")) for u in requests), requests

    slider = page.locator("#rank-slider")
    before = _state(page)
    assert before["rank"] == "r = 8" and before["active"] == ["8"] and before["shown"] == 1
    slider.focus()
    page.keyboard.press("ArrowRight")
    after = _state(page)
    assert after["rank"] == "r = 16" and after["active"] == ["16"]
    assert after["gauss"] != before["gauss"] and after["index"] != before["index"]
    assert after["shown"] == 1 and after["width"] > 0
    slider.fill(page.evaluate("document.getElementById('rank-slider').max"))   # full rank
    last = _state(page)
    assert last["rank"] == "r = 64" and last["active"] == []
    assert "0.0%" in last["gauss"] and "0.0%" in last["struct"]

    page.locator("#rank-explorer").scroll_into_view_if_needed()
    shot = tmp_path / f"report_{lang}.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.close()
    assert problems == []


def test_display_formulas_show_no_scroll_arrows(browser, tmp_path):
    """Chromium drew small scroll arrows beside the display formulas: tall glyphs overflowed
    the MathML block's box, which had ``overflow-x: auto`` (so a vertical scroller too). No
    block formula may now overflow its box either way at a desktop width."""
    index = build_report(ReportConfig(preset="quick", hidden_size=64, lang="en",
                                      analyses=False, finetune=False), tmp_path / "r")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(index.as_uri(), wait_until="load")
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll('math[display=block]'))
        .map(m => [m.scrollWidth - m.clientWidth, m.scrollHeight - m.clientHeight])""")
    page.close()
    assert len(boxes) > 5
    assert [b for b in boxes if b[0] > 0 or b[1] > 0] == []
