"""The run report opens in a real browser and shows its plots: Debian's Chromium, headless.

Renders a report from demo-scale data (120 prompts of ``include/demo``, real metrics and gate, 45 loss
points over 3 epochs), then:

* takes a screenshot (1280x2400) and checks it is a PNG of that size that is not blank: many distinct
  colours, the decision banner's green, and the chart colours (challenger blue, champion orange) over far
  more pixels than the page's CSS could paint;
* dumps the DOM and checks every ``<img>`` has a ``data:image/png`` source;
* dumps the DOM of a copy with a tiny probe script (test-only: the report itself has no JS) that records
  each image's ``complete``/``naturalWidth``/``naturalHeight`` after the load event: every image decoded,
  at the size its PNG header says.

External network is blocked (``--host-resolver-rules``), so the page can only work if it is self-contained.
Skipped when ``/usr/bin/chromium`` is missing (``apt-get install -y chromium``; set ``CHROMIUM`` to use
another binary). Set ``REPORT_SCREENSHOT=/some/path.png`` to keep the screenshot.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gemini_tuning.services.reporting import render_report

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 2400
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROBE = ("<script>window.addEventListener('load',function(){var im=document.images;"
         "for(var i=0;i<im.length;i++){im[i].setAttribute('data-probe',"
         "im[i].complete+' '+im[i].naturalWidth+' '+im[i].naturalHeight);}"
         "document.body.setAttribute('data-probed',String(im.length));});</script>")

pytestmark = [
    pytest.mark.skipif(not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
                       reason=f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
                              "(or set CHROMIUM=/path/to/chrome) to run the headless-browser check of the report"),
    pytest.mark.timeout(240),
    pytest.mark.full,
]


def _unit_fixtures():
    """The unit tests' data builder (real summarize()/decide() on the demo prompt set)."""
    path = Path(__file__).resolve().parents[1] / "unit" / "test_report.py"
    spec = importlib.util.spec_from_file_location("_report_test_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
           f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def _png_size(raw: bytes) -> tuple[int, int]:
    assert raw[:8] == PNG_MAGIC and raw[12:16] == b"IHDR"
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def _near(rgb: np.ndarray, hex_colour: str, tol: float = 0.06) -> int:
    target = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.count_nonzero(np.abs(rgb - target).max(axis=-1) < tol))


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    data = _unit_fixtures().build_data()
    assert data["decision"] == "promote"
    path = tmp_path_factory.mktemp("report") / "index.html"
    path.write_text(render_report(data), encoding="utf-8")
    return path


def test_screenshot_shows_report_and_plots(report_file, tmp_path):
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", report_file.as_uri())
    assert shot.is_file()
    raw = shot.read_bytes()
    assert _png_size(raw) == (WIDTH, HEIGHT)
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REPORT_SCREENSHOT"])

    import matplotlib.image

    img = matplotlib.image.imread(str(shot))
    assert img.shape[:2] == (HEIGHT, WIDTH)
    rgb = img[..., :3].astype(np.float32)
    white = np.all(rgb > 0.985, axis=-1).mean()
    assert white < 0.9, f"page is {white:.0%} white"
    q = (rgb * 255).round().astype(np.uint32)
    distinct = len(np.unique((q[..., 0] << 16) | (q[..., 1] << 8) | q[..., 2]))
    assert distinct > 500, f"only {distinct} distinct colours"
    # the PROMOTE banner
    from gemini_tuning.services.reporting import CHALLENGER_COLOR, CHAMPION_COLOR, PROMOTE_COLOR

    assert _near(rgb, PROMOTE_COLOR) > 50_000
    # Bars and the loss line. The CSS paints these colours only on two 4 px card borders and two 10 px
    # swatches (< 2,000 px each): tens of thousands of pixels mean the charts are there.
    blue, orange = _near(rgb, CHALLENGER_COLOR), _near(rgb, CHAMPION_COLOR)
    assert blue > 10_000, blue
    assert orange > 10_000, orange


def test_dom_images_are_embedded_pngs(report_file, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", report_file.as_uri()).stdout
    srcs = re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', dom)
    assert len(srcs) == 3, [s[:40] for s in srcs]
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    assert "PROMOTE" in dom and "Examples where the models differ" in dom


def test_images_decode_in_browser(report_file, tmp_path):
    page = report_file.read_text(encoding="utf-8")
    expected = [_png_size(base64.b64decode(b64)) for b64 in
                re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert len(expected) == 3
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", probed.as_uri()).stdout
    assert 'data-probed="3"' in dom, "load event never fired"
    probes = re.findall(r'data-probe="(\w+) (\d+) (\d+)"', dom)
    assert [(c, int(w), int(h)) for c, w, h in probes] == [("true", w, h) for w, h in expected]
