"""The UI pages as a reader sees them: what they say about their own refresh and cache times, the step names on the
overview, and the loss chart's step axis (integer steps only). Pure (pages, views) and the app's route functions
called directly with ``ui.data`` stubbed (no DB, no auth manager)."""

from __future__ import annotations

import math
import re

import pytest
from test_ui_views import record

from gemini_tuning.ui import data, pages, views
from harness.page_text import texts, x_tick_labels

pytestmark = pytest.mark.fast

LIVE = {"at": 1_700_000_000.0, "eta_seconds": 42.0,
        "status": {"name": "projects/my-project/locations/us-central1/tuningJobs/1", "state": "JOB_STATE_RUNNING",
                   "progress_percent": 40.0, "completed_steps": 4, "total_steps": 10,
                   "loss_history": [[s, 1 + s // 15, 2.4 * 0.93 ** s + 0.15] for s in range(1, 46)]}}


def _running_run_page(monkeypatch, ttl: str | None) -> str:
    from gemini_tuning.ui import app as ui_app

    rec = record("r1", finished=False, evaluated=False, promoted=False, tune_state="deferred")
    monkeypatch.setattr(data, "load_runs", lambda **kw: [rec])
    monkeypatch.setattr(data, "live_status", lambda r: LIVE)
    monkeypatch.setattr(data, "examples", lambda uri: ((), None))
    if ttl is None:
        monkeypatch.delenv("AIRFLOW__GEMINI_TUNING__UI_STATUS_TTL_SECONDS", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__GEMINI_TUNING__UI_STATUS_TTL_SECONDS", ttl)
    return ui_app.run_page(rec.dag_id, rec.run_id).body.decode()


def test_the_run_page_says_the_status_cache_time_the_setting_gives(monkeypatch):
    """Defect: the page said "at most one request per job per 30 s" whatever ``ui_status_ttl_seconds`` said."""
    page = _running_run_page(monkeypatch, "90")
    assert "at most one request per job per 90 s" in page
    assert "per 30 s" not in page
    assert "at most one request per job per 30 s" in _running_run_page(monkeypatch, None)    # the default
    assert "per job per 30 s" in _running_run_page(monkeypatch, "soon")          # not a number: the default, logged
    monkeypatch.setenv("AIRFLOW__GEMINI_TUNING__UI_STATUS_TTL_SECONDS", "7.5")
    assert data.status_ttl() == 7.5                                   # what the status cache is built with, too


def test_the_dag_list_refresh_is_a_named_constant_and_the_overview_says_it(monkeypatch):
    """Defect: ``dags_with_our_operators`` re-read the DAG list every 60 s (a bare ``60.0``) and no page said so."""
    from gemini_tuning.ui import app as ui_app

    calls = []

    class Session:
        def scalars(self, query):
            calls.append(query)
            return ["d1", "d1", "d2"]

    monkeypatch.setattr(data, "_dags", (-math.inf, frozenset()))
    monkeypatch.setattr(data, "DAGS_REFRESH_SECONDS", 1e9)
    assert data.dags_with_our_operators(Session()) == {"d1", "d2"}
    assert data.dags_with_our_operators(Session()) == {"d1", "d2"} and len(calls) == 1   # within the interval
    monkeypatch.setattr(data, "DAGS_REFRESH_SECONDS", 0.0)
    data.dags_with_our_operators(Session())
    assert len(calls) == 2                                                                 # the constant is used

    monkeypatch.setattr(data, "DAGS_REFRESH_SECONDS", 15.0)
    overview = views.overview([views.run_view(record("r1"))], {})
    monkeypatch.setattr(ui_app, "_overview", lambda user, readable, limit: overview)
    page = ui_app.overview_page(user=None, readable=set(), limit=None).body.decode()
    assert re.search(r"within 15 s\b", page), page[:2000]


def test_the_overview_shows_each_steps_name_beside_its_state():
    """Defect: the overview's step pills carried the step names only in ``title`` attributes (hover; no JS)."""
    v = views.run_view(record("r1"))
    rec = record("r2", finished=False, evaluated=False, promoted=False, tune_state="deferred")
    page = pages.overview_page(views.overview([v, views.run_view(rec)], {}))
    row = next(r for r in page.split("<tr") if ">r2</a>" in r)
    shown = [text for _, text in texts("<tr" + row)]
    for task_id in ("prepare_dataset", "tune", "evaluate", "gate", "promote", "report"):
        assert task_id in shown, (task_id, shown)
    assert "deferred" in shown                     # and the state stays there, as text


def test_the_loss_charts_step_axis_has_integer_ticks_only():
    """Defect: the x-axis ticks were evenly spaced between the first and last step (1, 9.8, 18.6, ...)."""
    v = views.run_view(record("r1", finished=False, evaluated=False, promoted=False, tune_state="deferred"), LIVE)
    page = pages.run_page(v)
    ticks = x_tick_labels(page, "loss")
    assert len(ticks) >= 3, ticks
    assert all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    assert 1 <= int(ticks[0]) and int(ticks[-1]) <= 45


def test_the_policies_are_unchanged_and_the_report_keeps_its_sandbox(monkeypatch):
    """``REPORT_CSP`` is not dead code: the report route serves it (the page's policy plus ``sandbox``: no scripts,
    an opaque origin). Both policies are pinned here: the templates need inline styles and nothing else."""
    from gemini_tuning.ui import app as ui_app

    page_csp = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
                "base-uri 'none'; form-action 'none'")
    assert ui_app.PAGE_CSP == page_csp and ui_app.HEADERS["Content-Security-Policy"] == page_csp
    rec = record("r1")
    rec.xcom[("report", "return_value")] = {"report_uri": "gs://bkt/r/report/index.html"}
    monkeypatch.setattr(data, "load_runs", lambda **kw: [rec])
    monkeypatch.setattr(data, "live_status", lambda r: None)
    monkeypatch.setattr(data, "report_html", lambda uri: b"<html><body>report</body></html>")
    response = ui_app.report(rec.dag_id, rec.run_id)
    assert response.headers["content-security-policy"] == page_csp + "; sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"
    monkeypatch.setattr(data, "examples", lambda uri: ((), None))
    run = ui_app.run_page(rec.dag_id, rec.run_id)
    assert run.headers["content-security-policy"] == page_csp
    body = run.body.decode()
    assert body.count("<style>") == 1 and "<script" not in body and " style=" not in body
