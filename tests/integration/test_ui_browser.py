"""The "Gemini tuning" page in a real browser: Playwright for Python driving Debian's Chromium (no browser
download) against a real api-server, scheduler, dag-processor and triggerer with this package's plugin.

One run is triggered **from the trigger form** (epochs, training file, prompt set and GCS prefix typed into the
form). While ``tune`` is deferred the page shows the job's progress (it advances between two looks) and a loss
curve that is not blank (pixels of its screenshot checked); after the run the gate verdict on the page equals
``gate.json`` and the champion shown equals the pointer. A prompt with ``<script>`` is shown as text. The report
opens through the api-server for the logged-in user and is refused without a session; every route of the app
(from its own route table) refuses a caller without credentials. Screenshots go to ``$UI_SCREENSHOTS`` (default:
a temporary folder); the path is printed.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from fastapi.routing import APIRoute

from harness.paths import DAGS, DEMO, ROOT
from harness.waits import wait_for

DAG = "gemini_tuning_pipeline"
REVIEWED = "gemini_tuning__router"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.services,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"Chromium not found at {CHROMIUM} "
                                                               "(apt-get install -y chromium)"),
    pytest.mark.full,
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from harness.ui_stack import ui_stack

    tmp = tmp_path_factory.mktemp("ui")
    # one reviewed pipeline file besides the open DAG (its trigger form: test_a_reviewed_pipelines_form_...)
    folder = tmp / "pipelines"
    folder.mkdir()
    (folder / "router.yaml").write_text((ROOT / "pipelines" / "router.yaml").read_text())
    (tmp / "include").symlink_to(ROOT / "include")
    # short cache TTL so two looks a few seconds apart see new progress (the 30 s bound: scripts/bench_ui.py)
    with ui_stack(tmp, time_scale=0.12, extra_env={"AIRFLOW__GEMINI_TUNING__UI_STATUS_TTL_SECONDS": "4",
                                                   "AIRFLOW__GEMINI_TUNING__PIPELINES_FOLDER": str(folder)},
                  dag_files=(DAGS / "gemini_tuning_pipeline.py", DAGS / "gemini_tuning_pipelines.py"),
                  dag_ids=(DAG, REVIEWED)) as s:
        yield s


@pytest.fixture(scope="module")
def shots():
    path = Path(os.environ.get("UI_SCREENSHOTS") or tempfile.mkdtemp(prefix="ui-screenshots-"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots: {path}")
    return path


def demo(name: str) -> list[dict]:
    return [json.loads(x) for x in (DEMO / name).read_text().splitlines() if x.strip()]


SCRIPT = "<script>window.pwned=1</script> I was charged twice for my order"


def inputs(tmp: Path) -> tuple[str, str]:
    train = tmp / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in demo("train.jsonl")[:160]))
    prompts = tmp / "prompts.jsonl"
    rows = [{"prompt": SCRIPT, "reference": "billing", "tags": ["xss"]}] + demo("eval_prompts.jsonl")[:59]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(train), str(prompts)


def progress_of(page) -> float:
    return float(page.get_attribute("section.tuning svg.progress", "aria-valuenow"))


def blue_pixels(png: bytes) -> int:
    """Pixels of the loss curve's colour (#1a73e8) in a screenshot."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(np.count_nonzero((np.abs(rgb - np.array([0x1a, 0x73, 0xe8])).max(axis=-1)) < 40))


def test_the_page_follows_a_run_triggered_from_the_form(stack, shots, tmp_path):
    from playwright.sync_api import sync_playwright

    from harness.airflow_ui import login, open_run_tab, trigger_with_form
    from harness.ui_stack import BUCKET

    af, emu = stack
    train, prompts = inputs(tmp_path)
    prefix = f"gs://{BUCKET}/ui/{uuid.uuid4().hex[:8]}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            login(page, af.base_url)
            run_id = trigger_with_form(page, af.base_url, DAG, {"epochs": 2, "training_data": train,
                                                               "eval_prompts": prompts, "gcs_prefix": prefix,
                                                               "gate_min_score": 0.1})
            conf = af.dag_run(DAG, run_id)["conf"]
            assert (conf["epochs"], conf["training_data"], conf["gcs_prefix"]) == (2, train, prefix)
            run_page = f"{af.base_url}/gemini-tuning/runs/{DAG}/{run_id}"

            # --- while tune is deferred: progress advances, the loss curve has points
            af.wait_ti_state(DAG, run_id, "tune", "deferred", timeout=240)

            def look() -> float | None:
                page.goto(run_page)
                value = progress_of(page)
                return value if 0 < value < 100 and page.locator("section.tuning path.series").count() else None

            first = wait_for(look, 120, "progress and a loss curve on the page while tune is deferred", interval=2.0)
            assert af.task_instance(DAG, run_id, "tune")["state"] == "deferred"
            chart = page.locator("section.tuning div.loss svg")
            png = chart.screenshot(path=str(shots / "loss-running.png"))
            assert blue_pixels(png) > 200, "the loss curve is blank"
            page.screenshot(path=str(shots / "run-running.png"), full_page=True)
            second = wait_for(lambda: (v := look()) and v > first and v, 90, "progress to advance between two looks",
                              interval=2.0)
            assert second > first

            # --- the dag_run tab shows the same run
            frame = open_run_tab(page, af.base_url, DAG, run_id)
            assert frame.locator("section.tuning").count() == 1

            # --- after the run: the gate on the page is gate.json, the champion is the pointer
            assert af.wait_run(DAG, run_id, timeout=420) == "success"
            page.goto(run_page)
            page.screenshot(path=str(shots / "run-finished.png"), full_page=True)
            gate = gcs_json(emu, f"{prefix}/runs/{run_id.replace(':', '-').replace('+', '-')}/eval/gate.json")
            assert page.inner_text("#gate-decision").strip() == gate["decision"]
            rows = page.locator("tr.rule")
            assert rows.count() == len(gate["rules"])
            for i, rule in enumerate(gate["rules"]):
                assert rows.nth(i).locator("td").first.inner_text() == rule["name"]
                assert rows.nth(i).locator("td >> nth=1").inner_text() == rule["verdict"]
                assert json.loads(rows.nth(i).locator("td.observed").get_attribute("data-value")) == rule["observed"]
                assert json.loads(rows.nth(i).locator("td.threshold").get_attribute("data-value")) == rule["threshold"]
            # the prompt with a script tag is text on the page, never markup
            assert SCRIPT in page.locator("section.examples").inner_text()
            assert page.evaluate("typeof window.pwned") == "undefined"

            page.goto(f"{af.base_url}/gemini-tuning/")
            page.screenshot(path=str(shots / "overview.png"), full_page=True)
            pointer = gcs_json(emu, f"{prefix}/champion.json")
            section = page.locator("section.pipeline", has_text=f"{prefix}/champion.json")
            assert section.locator("code.champion-model").inner_text() == pointer["tuned_model"]
            assert pointer["run_id"] == run_id

            # --- the report through the api-server: for the logged-in user, not without a session
            report = page.goto(f"{af.base_url}/gemini-tuning/report/{DAG}/{run_id}")
            assert report.status == 200 and "Gemini tuning report" in page.title()
            anonymous = browser.new_context().new_page()
            refused = anonymous.goto(f"{af.base_url}/gemini-tuning/report/{DAG}/{run_id}")
            assert refused.status in (401, 403)
        finally:
            browser.close()


def gcs_json(emu: dict, uri: str) -> dict:
    bucket, _, name = uri[len("gs://"):].partition("/")
    r = requests.get(f"{emu['gcs_url']}/download/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}",
                     params={"alt": "media"}, timeout=10)
    r.raise_for_status()
    return r.json()


def test_a_reviewed_pipelines_form_offers_only_what_a_run_may_change(stack, shots):
    """Issue 20: the trigger form of a pipeline built from a reviewed file shows exactly the run-changeable fields
    (``pipelines.policy.RUN_FIELDS``), none of the locked ones, and bounds the tighten-only ones by the policy (the
    number inputs' own bounds are the policy's values)."""
    from playwright.sync_api import sync_playwright

    from gemini_tuning.pipelines.policy import RUN_FIELDS, TITLES
    from harness.airflow_ui import FIELD_ROOT, login, open_trigger_dialog

    af, _ = stack
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            login(page, af.base_url)
            dialog = open_trigger_dialog(page, af.base_url, REVIEWED)
            for _ in range(3):                                   # open every collapsed section
                closed = dialog.locator("[data-part=item-trigger][aria-expanded=false]")
                if not closed.count():
                    break
                closed.first.click()
            labels = [t.strip().rstrip("*").strip() for t in dialog.locator(f"{FIELD_ROOT} label").all_inner_texts()]
            # Airflow's own fields of every trigger dialog; the raw conf editor is there too, and a locked key typed
            # into it is refused by the Param schema / check_policy (tests/integration/test_pipelines_e2e.py)
            airflow_own = {"Logical Date", "Run ID", "Configuration JSON", "Dag Run Note"}
            shown = {t for t in labels if t} - airflow_own
            page.screenshot(path=str(shots / "reviewed-trigger-form.png"), full_page=True)
            assert shown == {TITLES[name] for name in RUN_FIELDS}, sorted(shown ^ {TITLES[n] for n in RUN_FIELDS})
            for locked in ("GCS prefix", "Backend", "Gate: primary metric", "Model-based evaluation"):
                assert not any(t.startswith(locked) for t in shown), locked
            # the tighten-only fields are bounded by the policy in the form itself: the number inputs carry the
            # policy's value as their bound (the form, and the REST API's Param check, refuse beyond it)
            from harness.airflow_ui import _locate_field

            def bound(name: str, side: str) -> str | None:
                box = _locate_field(dialog, name, 30_000).locator("input[role=spinbutton]").first
                return box.get_attribute(f"aria-value{side}")

            assert float(bound("gate_min_score", "min")) == 0.6            # router.yaml: min_score 0.6
            assert float(bound("gate_max_error_rate", "max")) == 0.05      # router.yaml: max_error_rate 0.05
            assert float(bound("gate_min_prompts", "min")) == 20
        finally:
            browser.close()


def test_every_route_refuses_a_caller_without_credentials(stack):
    """From the app's own route table, so a new route cannot slip through untested."""
    from gemini_tuning.ui.app import app

    af, _ = stack
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 5
    for route in routes:
        path = "/gemini-tuning" + route.path.replace("{dag_id}", DAG).replace("{run_id}", "manual__x")
        for method in route.methods:
            for headers, cookies in (({}, {}), ({"Authorization": "Bearer not-a-token"}, {}), ({}, {"_token": "x"})):
                r = requests.request(method, af.base_url + path, headers=headers, cookies=cookies, timeout=30)
                assert r.status_code in (401, 403), (method, path, headers, cookies, r.status_code)
