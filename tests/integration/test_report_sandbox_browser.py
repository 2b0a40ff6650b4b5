"""The report still renders under the report route's Content-Security-Policy (with ``sandbox``), in Debian's
Chromium driven by Playwright: the app's own route (TestClient, auth manager of ``test_ui_auth``) serves a real
report (demo-scale data of ``harness.report_data``, with a ``<script>`` smuggled in), and the browser gets
exactly those bytes and headers. The three inline SVG charts render (non-zero boxes, drawing the challenger's and
the champion's colours), the page is not blank, the title is there, and the smuggled script never runs. Skipped
without Chromium (``apt-get install -y chromium``)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from test_ui_auth import full_record, make_ui

from harness.report_data import build_data

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"Chromium not found at {CHROMIUM} "
                                                                         "(apt-get install -y chromium)"),
              pytest.mark.full]
SMUGGLED = "<script>window.pwned = 1</script>"
#: the report's charts (the loss curve, the metrics bars, the per-tag bars)
N_CHARTS = 3


def _report_html() -> str:
    from gemini_tuning.services.reporting import render_report

    return render_report(build_data()).replace("</body>", SMUGGLED + "</body>")


def _pixels(png: bytes, colour: str) -> int:
    """Pixels of ``colour`` (``#rrggbb``, give or take 15 a channel) in a screenshot."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.count_nonzero(np.abs(rgb - target).max(axis=-1) <= 15))


@pytest.fixture
def served(airflow_db, monkeypatch):
    from gemini_tuning.ui import data

    ui = make_ui(monkeypatch)
    ui.records = [full_record("visible", "r1")]
    html = _report_html()
    monkeypatch.setattr(data, "report_html", lambda uri: html.encode())
    r = ui.client.get("/report/visible/r1", headers=ui.auth)
    assert r.status_code == 200 and "sandbox" in r.headers["content-security-policy"]
    return r, html


def test_the_report_renders_under_its_sandboxed_policy(served):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from gemini_tuning.services.reporting import CHALLENGER_COLOR, CHAMPION_COLOR

    response, html = served
    assert html.count('<svg class="chart') == N_CHARTS
    url = "http://ui.test/gemini-tuning/report/visible/r1"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.route("**/*", lambda route: route.fulfill(status=200, body=response.content,
                                                           headers=dict(response.headers))
                       if route.request.url == url else route.abort())
            page.goto(url, wait_until="load")
            assert page.title().startswith("Gemini tuning")
            charts = page.evaluate("() => Array.from(document.querySelectorAll('svg.chart')).map(s => "
                                   "{const r = s.getBoundingClientRect(); return [s.namespaceURI, "
                                   "s.getAttribute('aria-label'), r.width, r.height];})")
            assert len(charts) == N_CHARTS, charts
            for ns, label, width, height in charts:
                assert ns == "http://www.w3.org/2000/svg" and label, charts
                assert width > 0 and height > 0, f"{label}: empty box {width}x{height}"
            assert page.evaluate("() => typeof window.pwned") == "undefined"      # the sandbox runs no script
            assert page.evaluate("() => window.origin") == "null"                # and gives an opaque origin
            rgb = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(np.uint32)
            colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
            assert len(colours) > 500                                             # charts and styles, not blank
            for i, (_, label, _, _) in enumerate(charts):                         # each chart draws its series
                shot = page.locator("svg.chart").nth(i).screenshot()
                drawn = [_pixels(shot, colour) for colour in (CHALLENGER_COLOR, CHAMPION_COLOR)]
                assert max(drawn) > 500, (label, drawn)
        finally:
            browser.close()
