"""Who may see what on the "Gemini tuning" page, in-process (FastAPI TestClient over the plugin's own app) with
an auth manager that lets the user read DAG ``visible`` only. The real api-server's 401 for every route without a
session is checked in ``test_ui_browser.py``."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient


class User:
    def get_id(self):
        return "alice"

    def get_name(self):
        return "alice"


class AuthManager:
    """Reads DAG ``visible`` only."""

    async def get_user_from_token(self, token):
        from fastapi import HTTPException

        if token != "good":
            raise HTTPException(401, "Invalid JWT token")
        return User()

    def is_authorized_dag(self, *, method, access_entity=None, details=None, user=None):
        return method == "GET" and details is not None and details.id == "visible"

    def get_authorized_dag_ids(self, *, user, method="GET", session=None):
        return {"visible"}


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
        rec.xcom[("report", "return_value")] = {"report_uri": "gs://b/report/index.html"}
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
    for path in _paths("hidden"):
        if "/hidden/" in path:
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
