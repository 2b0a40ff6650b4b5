"""Who may see what on the "Gemini tuning" page, in-process (FastAPI TestClient over the plugin's own app) with
an auth manager that lets the user read DAG ``visible`` only. The real api-server's 401 for every route without a
session is checked in ``test_ui_browser.py``."""

from __future__ import annotations

import json

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

pytestmark = pytest.mark.fast


class User:
    def get_id(self):
        return "alice"

    def get_name(self):
        return "alice"


class AuthManager:
    """Reads DAG ``visible`` only (and its XCom); ``dags``/``xcom``: other DAGs it may read / read the XCom of."""

    def __init__(self, dags=("visible",), xcom=("visible",)):
        self.dags, self.xcom = set(dags), set(xcom)

    async def get_user_from_token(self, token):
        from fastapi import HTTPException

        if token != "good":
            raise HTTPException(401, "Invalid JWT token")
        return User()

    def is_authorized_dag(self, *, method, access_entity=None, details=None, user=None):
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

        allowed = self.xcom if access_entity == DagAccessEntity.XCOM else self.dags
        return method == "GET" and details is not None and details.id in allowed

    def get_authorized_dag_ids(self, *, user, method="GET", session=None):
        return set(self.dags)


@pytest.fixture
def client(airflow_db, monkeypatch):
    from airflow.api_fastapi.core_api import security

    from gemini_tuning.ui import app as ui_app
    from gemini_tuning.ui import data, views

    manager = AuthManager()
    monkeypatch.setattr(security, "get_auth_manager", lambda: manager)
    monkeypatch.setattr(ui_app, "get_auth_manager", lambda: manager)
    seen = {}

    def load_runs(*, readable, limit, dag_id=None, run_id=None):
        seen.setdefault("readable", []).append(readable)
        rec = views.RunRecord(dag_id or "visible", run_id or "r1", "success")
        rec.tasks["report"] = {"operator": "GeminiTuningReportOperator", "state": "success"}
        rec.xcom[("report", "return_value")] = {"report_uri": "gs://bkt/report/index.html"}
        return [rec]

    monkeypatch.setattr(data, "load_runs", load_runs)
    monkeypatch.setattr(data, "live_status", lambda rec: None)
    monkeypatch.setattr(data, "report_html", lambda uri: b"<html><body>the report</body></html>")
    return TestClient(ui_app.app), seen


def _paths(dag_id: str):
    from gemini_tuning.ui.app import app

    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route.path.replace("{dag_id}", dag_id).replace("{run_id}", "r1")


def test_every_route_needs_a_session(client):
    c, _ = client
    paths = list(_paths("visible"))
    assert len(paths) >= 5
    for path in paths:
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers={"Authorization": "Bearer forged"}).status_code == 401, path
        assert c.get(path, cookies={"_token": "forged"}).status_code == 401, path


def test_a_dag_the_user_may_not_read_is_refused(client):
    c, _ = client
    dag_paths = [path for path in _paths("hidden") if "/hidden/" in path]
    assert len(dag_paths) >= 3, list(_paths("hidden"))          # the run page, its data and the report at least
    for path in dag_paths:
        assert c.get(path, headers={"Authorization": "Bearer good"}).status_code == 403, path


def test_the_overview_lists_only_readable_dags_and_the_report_is_served_with_a_strict_policy(client):
    c, seen = client
    ok = c.get("/api/overview", headers={"Authorization": "Bearer good"})
    assert ok.status_code == 200 and seen["readable"] == [{"visible"}]
    page = c.get("/", cookies={"_token": "good"})                       # the UI's own cookie
    assert page.status_code == 200 and "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    report = c.get("/report/visible/r1", headers={"Authorization": "Bearer good"})
    assert report.status_code == 200 and report.text == "<html><body>the report</body></html>"
    assert "frame-ancestors 'self'" in report.headers["content-security-policy"]


# ------------------------------------------------------------------------------------------------ findings
MODEL = "projects/p/locations/us-central1/models/9@1"
POINTER = "gs://bkt/pipeline/champion.json"


def full_record(dag_id: str, run_id: str, run_after: str = "2026-12-01T10:00:00"):
    """A finished run that tuned, evaluated and promoted (every kind of XCom the overview reads)."""
    from gemini_tuning.ui import views

    rec = views.RunRecord(dag_id, run_id, "success", start_date=run_after, end_date=run_after, run_after=run_after)
    ops = {"tune": "GeminiTuningOperator", "evaluate": "GeminiEvaluateOperator", "gate": "GeminiGateOperator",
           "promote": "GeminiPromoteOperator", "report": "GeminiTuningReportOperator"}
    rec.tasks.update({t: {"operator": op, "state": "success", "try_number": 1} for t, op in ops.items()})
    job = "projects/p/locations/us-central1/tuningJobs/1"
    rec.xcom[("tune", "gemini_tuning_job")] = {"name": job, "ref": job, "backend": "vertex",
                                               "url": "https://console.cloud.google.com/x"}
    rec.xcom[("tune", "return_value")] = {"name": job, "backend": "vertex", "state": "JOB_STATE_SUCCEEDED",
                                          "tuned_model": MODEL, "loss_history": [[1, 1, 2.0], [2, 1, 1.5]]}
    rec.xcom[("evaluate", "return_value")] = {
        "n_prompts": 120, "champion_pointer_uri": POINTER, "models": {"challenger": "e1", "champion": "e0"},
        "summary": {"challenger": {"metrics": {"rouge_l_f1": 0.8125}}, "champion": {"metrics": {"rouge_l_f1": 0.75}}}}
    rec.xcom[("gate", "gate")] = {"decision": "promote", "summary": "promote: all rules passed", "rules": [
        {"name": "champion_margin", "verdict": "pass", "observed": 0.0625, "threshold": 0.0, "reason": "ok",
         "details": {"metric": "rouge_l_f1"}}]}
    rec.xcom[("promote", "return_value")] = {"status": "promoted", "pointer_uri": POINTER,
                                             "champion": {"tuned_model": MODEL}}
    rec.xcom[("report", "return_value")] = {"report_uri": "gs://bkt/report/index.html"}
    return rec


@pytest.fixture
def ui(airflow_db, monkeypatch):
    return make_ui(monkeypatch)


def make_ui(monkeypatch):
    """The app over ``ui.records`` (what load_runs returns, filtered like it) for ``ui.manager``'s user; champion
    pointers come from ``ui.pointers``; no live status unless a test says so."""
    from types import SimpleNamespace

    from airflow.api_fastapi.core_api import security

    from gemini_tuning.ui import app as ui_app
    from gemini_tuning.ui import data

    state = SimpleNamespace(records=[], pointers={}, manager=AuthManager())
    monkeypatch.setattr(security, "get_auth_manager", lambda: state.manager)
    monkeypatch.setattr(ui_app, "get_auth_manager", lambda: state.manager)

    def load_runs(*, readable, limit, dag_id=None, run_id=None):
        return [r for r in state.records if (readable is None or r.dag_id in readable)
                and dag_id in (None, r.dag_id) and run_id in (None, r.run_id)][:limit]

    monkeypatch.setattr(data, "load_runs", load_runs)
    monkeypatch.setattr(data, "live_status", lambda rec: None)
    monkeypatch.setattr(data, "pointer", lambda uri: state.pointers.get(uri))
    monkeypatch.setattr(data, "report_html", lambda uri: b"<html><body>the report</body></html>")
    state.client = TestClient(ui_app.app, raise_server_exceptions=False)
    state.auth = {"Authorization": "Bearer good"}
    return state


def test_overview_rows_of_a_dag_whose_xcom_the_user_may_not_read_show_state_and_times_only(ui):
    """Finding: the overview checked DAG read, not XCom read, yet showed what XCom holds."""
    ui.manager = AuthManager(dags={"visible", "private"}, xcom={"visible"})
    ui.records = [full_record("visible", "seen_run", "2026-12-01T09:00:00"),
                  full_record("private", "secret_run", "2026-12-01T10:00:00")]
    ui.pointers = {POINTER: {"backend": "vertex", "tuned_model": MODEL, "promoted_at": "2026-12-01T10:00:00Z",
                             "run_id": "secret_run", "dag_id": "private", "metrics": {"rouge_l_f1": 0.8125}}}
    ui.records[0].xcom[("evaluate", "return_value")]["champion_pointer_uri"] = "gs://bkt/other/champion.json"
    ui.records[0].xcom[("promote", "return_value")]["pointer_uri"] = "gs://bkt/other/champion.json"
    out = ui.client.get("/api/overview", headers=ui.auth)
    assert out.status_code == 200
    private = [p for p in out.json()["pipelines"] if "private" in p["dag_ids"]]
    (p,) = private
    assert p["champion"] is None and p["history"] == [] and p["pointer_uri"] is None
    (row,) = p["runs"]
    assert row["state"] == "success" and row["run_after"] == "2026-12-01T10:00:00"
    for field in ("run_id", "tuned_model", "decision", "action", "challenger", "champion", "steps"):
        assert row.get(field) is None, field
    page = ui.client.get("/", headers=ui.auth)
    assert page.status_code == 200
    private_html, private_json = _private_part(page.text), json.dumps(p)
    for secret in ("secret_run", MODEL, "0.812", "promote", POINTER, "rouge"):
        assert secret not in private_html and secret not in private_json, secret
    assert "may not read" in private_html and "success" in private_html
    assert "seen_run" in page.text and "gs://bkt/other/champion.json" in page.text   # the readable DAG: all there


def _private_part(page: str) -> str:
    sections = [s for s in page.split('<section class="pipeline"') if "private" in s]
    assert len(sections) == 1, "one section for DAG private"
    return sections[0]


def test_the_fastapi_docs_and_schema_are_not_served(ui):
    """Finding: /docs, /redoc and /openapi.json answered without a session (/docs loading Swagger from a CDN)."""
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert ui.client.get(path).status_code == 404, path
        assert ui.client.get(path, headers=ui.auth).status_code == 404, path


def test_the_report_is_sandboxed(ui):
    """Finding: the report route's CSP had no ``sandbox`` (a report is static HTML, inline SVG/CSS and data: PNGs)."""
    ui.records = [full_record("visible", "r1")]
    report = ui.client.get("/report/visible/r1", headers=ui.auth)
    assert report.status_code == 200
    directives = {d.strip().split(" ")[0]: d.strip() for d in report.headers["content-security-policy"].split(";")}
    assert directives.get("sandbox") == "sandbox"                        # no allow-* token at all
    assert directives["default-src"] == "default-src 'none'" and "script-src" not in directives
    assert directives["img-src"] == "img-src data:" and directives["style-src"] == "style-src 'unsafe-inline'"
