"""The report still renders under the report route's Content-Security-Policy (with ``sandbox``), in Debian's
Chromium driven by Playwright: the app's own route (TestClient, auth manager of ``test_ui_auth``) serves a real
report (demo-scale data of ``tests/unit/test_report.py``, with a ``<script>`` smuggled in), and the browser gets
exactly those bytes and headers. Every image decodes at its PNG size, the page is not blank, the title is there,
and the smuggled script never runs. Skipped without Chromium (``apt-get install -y chromium``)."""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_ui_auth import full_record, make_ui

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"Chromium not found at {CHROMIUM} "
                                                                         "(apt-get install -y chromium)"),
              pytest.mark.full]
SMUGGLED = "<script>window.pwned = 1</script>"


def _report_html() -> str:
    from gemini_tuning.services.reporting import render_report

    path = Path(__file__).resolve().parents[1] / "unit" / "test_report.py"
    spec = importlib.util.spec_from_file_location("_report_test_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return render_report(mod.build_data()).replace("</body>", SMUGGLED + "</body>")


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

    response, html = served
    expected = [Image.open(io.BytesIO(base64.b64decode(b))).size
                for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]
    assert len(expected) == 3
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
            sizes = page.evaluate("() => Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
                                  "i.naturalHeight])")
            assert sizes == [[True, w, h] for w, h in expected]
            assert page.evaluate("() => typeof window.pwned") == "undefined"      # the sandbox runs no script
            assert page.evaluate("() => window.origin") == "null"                # and gives an opaque origin
            rgb = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(np.uint32)
            colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
            assert len(colours) > 500                                             # charts and styles, not blank
        finally:
            browser.close()
