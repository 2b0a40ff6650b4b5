"""The run report opens in a real browser and shows its charts: Debian's Chromium, headless, driven by Playwright.

Renders a report from demo-scale data (120 prompts of ``include/demo``, real metrics and gate, 45 loss
points over 3 epochs), opens it from disk (viewport 1280x3000) with every request but the file itself refused and
external names unresolvable (``--host-resolver-rules``), so the page can only work if it is self-contained, then:

* takes a screenshot and decodes it (Pillow): a PNG of the viewport's size that is not blank (many distinct
  colours, the decision banner's green), with the chart colours (challenger blue, champion orange) over far more
  pixels than the page's CSS could paint, and inside each chart's box the colours it draws;
* checks the DOM holds exactly the report's three inline chart SVGs (the loss curve, the metrics bars, the
  per-tag bars), each a real SVG element with ``role="img"``, a non-empty ``aria-label`` and its drawn series,
  and that nothing points outside the page: no ``<img>`` or ``src``/``href`` but ``data:`` or ``#fragment``, and
  the browser requested nothing but the report;
* checks each chart lays out: a non-zero bounding box (``getBoundingClientRect``), at its viewBox's aspect, with
  non-empty drawn content (``getBBox``).

Skipped when ``/usr/bin/chromium`` is missing (``apt-get install -y chromium``; set ``CHROMIUM`` to use
another binary). Set ``REPORT_SCREENSHOT=/some/path.png`` to keep the screenshot.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gemini_tuning.services.reporting import (
    CHALLENGER_COLOR,
    CHAMPION_COLOR,
    LOSS_COLOR,
    PROMOTE_COLOR,
    render_report,
)
from harness.report_data import build_data

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 3000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: the report's charts, top to bottom: the ``class`` of each ``<svg>`` and a phrase of its ``aria-label``
EXPECTED_CHARTS = [("chart loss", "loss"), ("chart bars", "challenger vs champion"), ("chart bars", "per tag")]
#: every ``<svg class="chart">``: what the browser made of it (geometry in CSS px, viewport coordinates)
CHARTS_JS = """() => Array.from(document.querySelectorAll('svg.chart')).map(s => {
  const r = s.getBoundingClientRect(), b = s.getBBox(), vb = s.viewBox.baseVal || {width: 0, height: 0};
  const fills = sel => Array.from(s.querySelectorAll(sel)).map(e => e.getAttribute('fill'));
  const strokes = sel => Array.from(s.querySelectorAll(sel)).map(e => e.getAttribute('stroke'));
  return {cls: s.getAttribute('class'), ns: s.namespaceURI, role: s.getAttribute('role'),
          label: s.getAttribute('aria-label'), box: [r.left, r.top, r.width, r.height], bbox: [b.width, b.height],
          viewbox: [vb.width, vb.height], bars: fills('rect.bar'), series: strokes('path.series')};
})"""
#: every element that could load something: its tag and where it points
LINKS_JS = """() => Array.from(document.querySelectorAll('img, [src], [*|href]')).map(e =>
  [e.tagName, e.getAttribute('src') || e.getAttribute('href') || e.getAttributeNS('http://www.w3.org/1999/xlink',
   'href') || ''])"""

pytestmark = [
    pytest.mark.skipif(not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
                       reason=f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
                              "(or set CHROMIUM=/path/to/chrome) to run the headless-browser check of the report"),
    pytest.mark.timeout(240),
    pytest.mark.full,
]


def _near(rgb: np.ndarray, hex_colour: str, tol: float = 0.06) -> int:
    """Pixels of ``rgb`` (floats in 0..1) within ``tol`` of ``hex_colour`` on every channel."""
    target = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.count_nonzero(np.abs(rgb - target).max(axis=-1) < tol))


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    data = build_data()
    assert data["decision"] == "promote"
    path = tmp_path_factory.mktemp("report") / "index.html"
    path.write_text(render_report(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def opened(report_file, tmp_path_factory):
    """The report loaded in Chromium: its DOM, its charts, its links, what it requested and a screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            requested = []
            page.on("request", lambda request: requested.append(request.url))
            page.route(lambda url: url != report_file.as_uri(), lambda route: route.abort())
            page.goto(report_file.as_uri(), wait_until="load")
            yield SimpleNamespace(dom=page.content(), charts=page.evaluate(CHARTS_JS),
                                  links=page.evaluate(LINKS_JS), screenshot=page.screenshot(),
                                  scroll=page.evaluate("() => [window.scrollX, window.scrollY]"),
                                  requested=requested, uri=report_file.as_uri())
        finally:
            browser.close()


def test_screenshot_shows_report_and_charts(opened, tmp_path):
    from PIL import Image

    raw = opened.screenshot
    assert raw[:8] == PNG_MAGIC
    if os.environ.get("REPORT_SCREENSHOT"):
        Path(os.environ["REPORT_SCREENSHOT"]).write_bytes(raw)
    img = Image.open(io.BytesIO(raw))
    assert img.format == "PNG" and img.size == (WIDTH, HEIGHT)
    rgb = np.asarray(img.convert("RGB")).astype(np.float32) / 255
    white = np.all(rgb > 0.985, axis=-1).mean()
    assert white < 0.9, f"page is {white:.0%} white"
    q = (rgb * 255).round().astype(np.uint32)
    distinct = len(np.unique((q[..., 0] << 16) | (q[..., 1] << 8) | q[..., 2]))
    assert distinct > 500, f"only {distinct} distinct colours"
    # the PROMOTE banner
    assert _near(rgb, PROMOTE_COLOR) > 50_000
    # Bars and the loss line. The CSS paints these colours only on two 4 px card borders, two 10 px swatches and
    # link text (< 2,000 px each): tens of thousands of pixels mean the charts are there.
    blue, orange = _near(rgb, CHALLENGER_COLOR), _near(rgb, CHAMPION_COLOR)
    assert blue > 10_000, blue
    assert orange > 10_000, orange
    # and each chart draws its own colours inside its box (crops of the same screenshot, taken unscrolled)
    assert opened.scroll == [0, 0]
    assert len(opened.charts) == len(EXPECTED_CHARTS)
    for chart in opened.charts:
        left, top, width, height = chart["box"]
        assert 0 <= left and left + width <= WIDTH and 0 <= top and top + height <= HEIGHT, \
            f"{chart['cls']} at {chart['box']} is outside the {WIDTH}x{HEIGHT} screenshot"
        crop = rgb[round(top):round(top + height), round(left):round(left + width)]
        if chart["cls"] == "chart loss":
            assert _near(crop, LOSS_COLOR) > 500, (chart["label"], _near(crop, LOSS_COLOR))
        else:
            counts = _near(crop, CHALLENGER_COLOR), _near(crop, CHAMPION_COLOR)
            assert min(counts) > 5_000, (chart["label"], counts)


def test_dom_has_the_inline_chart_svgs(opened):
    dom = opened.dom
    assert "PROMOTE" in dom and "Examples where the models differ" in dom
    assert dom.count("<svg") == len(EXPECTED_CHARTS)          # the report has no other SVG
    charts = opened.charts
    assert [c["cls"] for c in charts] == [cls for cls, _ in EXPECTED_CHARTS]
    for chart, (_, phrase) in zip(charts, EXPECTED_CHARTS, strict=True):
        assert chart["ns"] == "http://www.w3.org/2000/svg", chart      # parsed as SVG, not an unknown element
        assert chart["role"] == "img" and chart["label"].strip(), chart
        assert phrase in chart["label"].lower(), (phrase, chart["label"])
        if chart["cls"] == "chart loss":
            assert LOSS_COLOR in chart["series"], chart["series"]
        else:
            assert {CHALLENGER_COLOR, CHAMPION_COLOR} <= set(chart["bars"]), chart["bars"]
    assert len({c["label"] for c in charts}) == len(charts)
    # nothing points outside the page: no <img> at all but data: ones, no src/href but data: or #fragment
    external = [(tag, where) for tag, where in opened.links
                if not where.startswith("data:" if tag.lower() == "img" else ("data:", "#"))]
    assert not external, external
    assert opened.requested == [opened.uri], opened.requested


def test_charts_render_in_browser(opened):
    assert len(opened.charts) == len(EXPECTED_CHARTS)
    for chart in opened.charts:
        _, _, width, height = chart["box"]
        vb_width, vb_height = chart["viewbox"]
        assert width > 0 and height > 0, f"{chart['label']}: empty box {chart['box']}"
        assert vb_width > 0 and abs(height - width * vb_height / vb_width) <= 1, \
            f"{chart['label']}: {width}x{height} is not at the aspect of its viewBox {vb_width}x{vb_height}"
        assert min(chart["bbox"]) > 0, f"{chart['label']}: nothing drawn ({chart['bbox']})"
