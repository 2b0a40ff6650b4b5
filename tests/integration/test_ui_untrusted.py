"""The "Gemini tuning" page over data it must not trust: XCom values (any task, or a user with XCom write access,
can put anything there), champion pointers and results files in GCS, and live statuses. In-process (FastAPI
TestClient over the plugin's app, the auth manager of ``test_ui_auth``); GCS objects in the emulator.

What a user sees is asserted: a malformed run still lists, its row (and its run page) says ``unreadable: <why>``,
and every other run is unaffected; a job in a project the deployment does not allow is not asked about, and the
row says why. The fuzz test at the end throws random XCom shapes (and pointers, live statuses) at every route.
"""

from __future__ import annotations

import copy
import json
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ui_auth import MODEL, POINTER, full_record, make_ui

from gemini_tuning.ui import data as ui_data

pytestmark = pytest.mark.fast

REAL_LIVE_STATUS = ui_data.live_status
REAL_POINTER = ui_data.pointer
REAL_EXAMPLES = ui_data.examples


@pytest.fixture
def ui(airflow_db, monkeypatch):
    return make_ui(monkeypatch)


def row_of(page: str, run_id: str) -> str:
    """The overview's table row of one run (HTML)."""
    rows = [r for r in page.split("<tr") if f'>{run_id}</a><div class="muted small">' in r]   # not history rows
    assert len(rows) == 1, f"one row for {run_id}"
    return rows[0]


def run_json(ui, run_id: str) -> dict:
    out = ui.client.get("/api/overview", headers=ui.auth)
    assert out.status_code == 200, out.text[:300]
    (row,) = [r for p in out.json()["pipelines"] for r in p["runs"] if r.get("run_id") == run_id]
    return row


def test_a_wrongly_typed_progress_in_xcom_leaves_the_overview_up(ui):
    """Finding: ``progress_percent: "50"`` in one run's XCom made the overview answer 500 for every user."""
    good, bad = full_record("visible", "good_run", "2026-12-01T09:00:00"), full_record("visible", "bad_run")
    bad.xcom[("tune", "return_value")]["progress_percent"] = "50"
    ui.records = [good, bad]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200
    assert re.search(r"unreadable: .*progress_percent", row_of(page.text, "bad_run"))
    assert "unreadable" not in row_of(page.text, "good_run")
    assert "progress_percent" in run_json(ui, "bad_run")["unreadable"]
    assert run_json(ui, "good_run")["unreadable"] is None and run_json(ui, "good_run")["tuned_model"] == MODEL
    run_page = ui.client.get("/runs/visible/bad_run", headers=ui.auth)
    assert run_page.status_code == 200 and re.search(r"unreadable: .*progress_percent", run_page.text)


def test_a_malformed_checkpoint_leaves_the_run_page_up(ui):
    """Finding: a checkpoint ``step: "x"`` in the tune task's XCom made the run page answer 500."""
    rec = full_record("visible", "r1")
    rec.xcom[("tune", "return_value")]["checkpoints"] = [{"checkpoint_id": "1", "epoch": 1, "step": "x"}]
    ui.records = [rec]
    page = ui.client.get("/runs/visible/r1", headers=ui.auth)
    assert page.status_code == 200 and re.search(r"unreadable: .*checkpoints\[0\]\.step", page.text)
    api = ui.client.get("/api/runs/visible/r1", headers=ui.auth)
    assert api.status_code == 200 and "step" in api.json()["unreadable"]
    assert ui.client.get("/", headers=ui.auth).status_code == 200


@pytest.mark.parametrize("where, value", [
    (("evaluate", "return_value"), {"summary": [1], "n_prompts": 3}),
    (("evaluate", "return_value"), {"summary": {"challenger": {"metrics": {"rouge_l_f1": "high"}}}}),
    (("gate", "gate"), {"decision": "promote", "rules": "all passed"}),
    (("gate", "gate"), {"decision": "promote", "rules": [{"name": "x", "observed": float("nan")}]}),
    (("promote", "return_value"), {"status": "promoted", "champion": "m"}),
    (("tune", "return_value"), {"state": "JOB_STATE_SUCCEEDED", "loss_history": 5}),
    (("tune", "return_value"), {"state": "JOB_STATE_RUNNING", "progress_percent": float("inf")}),
    (("tune", "return_value"), ["not", "an", "object"]),
], ids=["summary-list", "metric-str", "rules-str", "observed-nan", "champion-str", "loss-int", "progress-inf",
        "tune-list"])
def test_any_malformed_xcom_shows_as_unreadable_in_its_row(ui, where, value):
    good, bad = full_record("visible", "good_run", "2026-12-01T09:00:00"), full_record("visible", "bad_run")
    bad.xcom[where] = value
    ui.records = [good, bad]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200 and "unreadable: " in row_of(page.text, "bad_run")
    assert "unreadable" not in row_of(page.text, "good_run")
    assert run_json(ui, "bad_run")["unreadable"]
    for path in ("/runs/visible/bad_run", "/api/runs/visible/bad_run"):
        r = ui.client.get(path, headers=ui.auth)
        assert r.status_code == 200 and "unreadable" in r.text, path


def test_an_xcom_value_airflow_cannot_decode_is_unreadable_not_a_failed_query(ui):
    """A serde-looking value naming a class Airflow will not import made ``load_runs`` raise: no overview at all."""
    from types import SimpleNamespace

    row = SimpleNamespace(value='{"__classname__": "no.such.Cls", "__version__": 1, "__data__": {}}',
                          key="return_value", task_id="tune", dag_id="visible", run_id="bad_run", map_index=-1)
    value = ui_data._value(row)
    bad = full_record("visible", "bad_run")
    bad.xcom[("tune", "return_value")] = value
    ui.records = [full_record("visible", "good_run", "2026-12-01T09:00:00"), bad]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200
    assert re.search(r"unreadable: tune result: is an undecodable XCom value \(&lt;ImportError", row_of(page.text,
                                                                                                     "bad_run"))


def test_the_no_decision_verdict_is_shown_as_such(ui):
    rec = full_record("visible", "r1")
    del rec.xcom[("promote", "return_value")]
    rec.state = "failed"
    rec.xcom[("gate", "gate")] = {"decision": "no_decision", "summary": "no decision: judge errors 40% > 10%",
                                  "rules": [{"name": "judge_error_rate", "verdict": "fail", "observed": 0.4,
                                             "threshold": 0.1, "reason": "outage", "details": None}]}
    ui.records = [rec]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200 and "no decision" in row_of(page.text, "r1")
    assert run_json(ui, "r1")["decision"] == "no_decision"
    run_page = ui.client.get("/runs/visible/r1", headers=ui.auth).text
    assert re.search(r'id="gate-decision"[^>]*>no decision<', run_page)
    assert "no decision: judge errors 40% &gt; 10%" in run_page


# ------------------------------------------------------------------------------------------------ live status
class Fetches:
    def __init__(self):
        self.calls = []

    def __call__(self, backend, ref):
        self.calls.append((backend, ref))
        return {"name": ref, "backend": backend, "state": "JOB_STATE_RUNNING", "progress_percent": 40.0}


@pytest.fixture
def live(ui, monkeypatch, tmp_path):
    """Real ``data.live_status`` over a status cache whose requests are recorded; the UI's Google connection is in
    project ``home-project``."""
    from types import SimpleNamespace

    from gemini_tuning.ui.status_cache import StatusCache

    fetches = Fetches()
    cache = StatusCache(tmp_path / "cache", fetches, ttl=30)
    monkeypatch.setattr(ui_data, "live_status", REAL_LIVE_STATUS)
    monkeypatch.setattr(ui_data, "status_cache", lambda: cache)
    monkeypatch.setattr(ui_data, "hook", lambda: SimpleNamespace(project_id="home-project"))
    monkeypatch.delenv("AIRFLOW__GEMINI_TUNING__UI_STATUS_PROJECTS", raising=False)
    return fetches


def running(run_id: str, ref: str, backend: str = "vertex"):
    rec = full_record("visible", run_id)
    rec.state = "running"
    for key in [k for k in rec.xcom if k != ("tune", "gemini_tuning_job")]:
        del rec.xcom[key]
    rec.tasks["tune"]["state"] = "deferred"
    for t in ("evaluate", "gate", "promote", "report"):
        rec.tasks[t]["state"] = None
    rec.xcom[("tune", "gemini_tuning_job")].update(ref=ref, name=ref, backend=backend)
    return rec


def test_a_job_in_another_project_is_not_asked_about(ui, live):
    """Finding: a ``ref`` in XCom made the api-server poll jobs in any project its account can see."""
    home = "projects/home-project/locations/us-central1/tuningJobs/1"
    away = "projects/other-project/locations/us-central1/tuningJobs/2"
    ui.records = [running("home_run", home), running("away_run", away)]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200
    assert live.calls == [("vertex", home)]
    assert "40.0%" in row_of(page.text, "home_run")
    row = row_of(page.text, "away_run")
    assert "not fetched" in row and "other-project" in row and "ui_status_projects" in row
    assert "not fetched" in run_json(ui, "away_run")["status_note"]


def test_the_allowed_projects_are_a_setting(ui, live, monkeypatch):
    monkeypatch.setenv("AIRFLOW__GEMINI_TUNING__UI_STATUS_PROJECTS", "other-project, third-project")
    away = "projects/other-project/locations/europe-west4/tuningJobs/2"
    home = "projects/home-project/locations/us-central1/tuningJobs/1"
    ui.records = [running("away_run", away), running("home_run", home)]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200 and live.calls == [("vertex", away)]
    assert "home-project" in row_of(page.text, "home_run") and "not fetched" in row_of(page.text, "home_run")


@pytest.mark.parametrize("ref", [
    "projects/home-project/locations/evil.example.com#/tuningJobs/1",     # the location builds a host name
    "projects/home-project/locations/us-central1/tuningJobs/1/../../../../x",
    "projects/home-project/locations/us-central1/tuningJobs/1?alt=media",
    "projects/home-project/locations/us-central1/models/9",                 # not a tuning job
    "https://evil.example.com/v1/projects/home-project/locations/us-central1/tuningJobs/1",
], ids=["host-in-location", "dot-dot", "query", "not-a-job", "url"])
def test_a_malformed_job_name_is_never_fetched(ui, live, ref):
    ui.records = [running("r1", ref)]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200 and live.calls == []
    assert "unreadable: " in row_of(page.text, "r1")


def test_a_malformed_live_status_is_unreadable_not_a_500(ui, monkeypatch):
    monkeypatch.setattr(ui_data, "live_status", lambda rec: {"at": "yesterday", "status": {"progress_percent": "50"}})
    ui.records = [running("r1", "projects/p/locations/us-central1/tuningJobs/1")]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200 and "unreadable: " in row_of(page.text, "r1")


# ------------------------------------------------------------------------------------------------ GCS objects
@pytest.fixture
def gcs(ui, gcs_client, monkeypatch):
    """The real pointer/examples readers over the emulator's GCS."""
    from harness.clients import BUCKET

    monkeypatch.setattr(ui_data, "pointer", REAL_POINTER)
    monkeypatch.setattr(ui_data, "storage", lambda: gcs_client)
    ui_data.examples.cache_clear()
    prefix = f"gs://{BUCKET}/ui-untrusted/{uuid.uuid4().hex[:8]}"

    def put(name: str, body: bytes) -> str:
        gcs_client.bucket(BUCKET).blob(f"{prefix[len(f'gs://{BUCKET}/'):]}/{name}").upload_from_string(body)
        return f"{prefix}/{name}"

    yield put
    ui_data.examples.cache_clear()


def with_pointer(uri: str):
    rec = full_record("visible", "r1")
    rec.xcom[("evaluate", "return_value")]["champion_pointer_uri"] = uri
    rec.xcom[("promote", "return_value")]["pointer_uri"] = uri
    return rec


@pytest.mark.parametrize("body, why", [
    (b"{not json", "not JSON"),
    (json.dumps({"backend": "vertex", "tuned_model": MODEL, "metrics": 5, "previous": "x"}).encode(), "previous"),
    (json.dumps({"backend": "vertex", "tuned_model": MODEL, "pad": "x" * (2 << 20)}).encode(), "bytes"),
], ids=["not-json", "wrong-types", "too-large"])
def test_a_malformed_champion_pointer_shows_as_unreadable(ui, gcs, body, why):
    ui.records = [with_pointer(gcs("champion.json", body))]
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200
    (section,) = [s for s in page.text.split('<section class="pipeline"')[1:]]
    assert re.search(rf"Champion pointer unreadable: [^<]*{why}", section), section[:600]
    assert "No champion yet" not in section


def test_a_malformed_champion_pointer_from_the_view_side_is_unreadable_not_a_500(ui):
    ui.records = [full_record("visible", "r1")]
    ui.pointers = {POINTER: {"backend": "vertex", "tuned_model": MODEL, "metrics": 5, "previous": "x"}}
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200 and "Champion pointer unreadable: " in page.text


def test_an_unreadable_results_file_is_said_on_the_run_page(ui, gcs):
    rec = full_record("visible", "r1")
    rec.xcom[("evaluate", "return_value")]["results_uri"] = gcs("results.jsonl", b'{"prompt_id": 1}\n[1, 2]\n')
    ui.records = [rec]
    page = ui.client.get("/runs/visible/r1", headers=ui.auth)
    assert page.status_code == 200 and "Examples unreadable: " in page.text


# ------------------------------------------------------------------------------------------------ fuzz
KEYS = ("name", "ref", "backend", "url", "state", "sub_state", "progress_percent", "completed_steps", "total_steps",
        "tuned_model", "endpoint", "checkpoints", "checkpoint_id", "step", "epoch", "loss_history",
        "validation_history", "latest_loss", "error_message", "continued_from", "n_prompts", "models", "challenger",
        "champion", "summary", "metrics", "per_tag", "error_rate", "results_uri", "best_checkpoint", "scores",
        "score", "metric", "champion_pointer_uri", "pointer_uri", "decision", "rules", "verdict", "observed",
        "threshold", "reason", "details", "status", "model_deleted", "rolled_back", "report_uri", "previous",
        "promoted_at", "run_id", "dag_id", "at", "eta_seconds", "error", "rouge_l_f1", "normalized_match")
WORDS = ("50", "x", "", "promote", "delete", "no_decision", "vertex", "gemini_api", "JOB_STATE_SUCCEEDED",
         "JOB_STATE_RUNNING", "<script>alert(1)</script>", "projects/p/locations/us-central1/tuningJobs/1",
         "projects/p/locations/evil.com#/tuningJobs/1", "gs://bkt/pipeline/champion.json", "gs://bkt/report/x.html",
         "tunedModels/m/operations/o", "champion_margin", "threshold:rouge_l_f1", "rouge_l_f1", "\x00", "é" * 3)
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(), st.sampled_from(WORDS),
                 st.text(max_size=12))
JSON = st.recursive(LEAF, lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), kids, max_size=5), max_leaves=16)
XCOM_SLOTS = (("tune", "return_value"), ("tune", "gemini_tuning_job"), ("evaluate", "return_value"),
              ("gate", "gate"), ("promote", "return_value"), ("report", "return_value"))


def mutate(draw, value, depth: int = 0):
    """``value`` with one spot (anywhere in it, or all of it) replaced by random JSON."""
    if depth > 5 or draw(st.integers(0, 3)) == 0:
        return draw(JSON)
    if isinstance(value, dict):
        keys = sorted(value) + list(KEYS[:8])
        key = draw(st.sampled_from(keys))
        return {**value, key: mutate(draw, value.get(key), depth + 1)}
    if isinstance(value, list) and value:
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(draw, value[i], depth + 1), *value[i + 1:]]
    return draw(JSON)


@st.composite
def scenes(draw):
    """A good run and a mutated one (random XCom spots; maybe a wild pointer and live status)."""
    bad = full_record("visible", "fuzzed", "2026-12-01T11:00:00")
    if draw(st.booleans()):
        bad.state, bad.tasks["tune"]["state"] = "running", "deferred"
        del bad.xcom[("tune", "return_value")]
    for _ in range(draw(st.integers(1, 4))):
        slot = draw(st.sampled_from(XCOM_SLOTS))
        bad.xcom[slot] = mutate(draw, copy.deepcopy(bad.xcom.get(slot)))
    pointer = {"backend": "vertex", "tuned_model": MODEL, "promoted_at": "2026-12-01T10:00:00Z", "run_id": "good",
               "dag_id": "visible", "metrics": {"rouge_l_f1": 0.8}, "previous": {"tuned_model": "m0"}}
    pointer = mutate(draw, pointer) if draw(st.booleans()) else pointer
    live = draw(st.none() | JSON | st.builds(lambda s: {"at": 1.0, "status": s}, mutate_status()))
    return bad, pointer, live


@st.composite
def mutate_status(draw):
    return mutate(draw, {"name": "projects/p/locations/us-central1/tuningJobs/1", "state": "JOB_STATE_RUNNING",
                         "progress_percent": 40.0, "loss_history": [[1, 1, 2.0]], "checkpoints": []})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(scene=scenes())
def test_no_xcom_shape_makes_any_route_fail(ui, monkeypatch, scene):
    bad, pointer, live = scene
    good = full_record("visible", "good", "2026-12-01T09:00:00")
    ui.records, ui.pointers = [good, bad], {}
    for uri in ("gs://bkt/pipeline/champion.json", "gs://bkt/report/x.html"):
        ui.pointers[uri] = pointer
    monkeypatch.setattr(ui_data, "live_status", lambda rec: live if rec is bad else None)
    for path in ("/", "/api/overview", "/runs/visible/fuzzed", "/api/runs/visible/fuzzed", "/report/visible/fuzzed",
                 "/runs/visible/good"):
        r = ui.client.get(path, headers=ui.auth)
        assert r.status_code in (200, 404), (path, r.status_code, r.text[:500])
        assert "internal error" not in r.text, (path, r.text[:500])        # the views' last safety net never fires
        if path.startswith("/api/"):
            json.loads(r.text)
    page = ui.client.get("/", headers=ui.auth).text
    assert "unreadable" not in row_of(page, "good") and "0.812" in row_of(page, "good")   # its challenger score
