"""The "Gemini tuning" page: a FastAPI app the plugin mounts in the api-server under ``/gemini-tuning``.

Every route depends on Airflow's auth manager (the UI's JWT cookie or a bearer token; no session → 401): the
overview lists only runs of DAGs the caller may read, and shows what their XCom holds (model names, metrics,
decisions, run ids, champion pointers) only for DAGs whose XCom the caller may read (``DagAccessEntity.XCOM``, asked
per DAG); other rows show state and times only. The run, report and JSON routes of one run need read access to that
DAG's runs and XCom (403 otherwise). FastAPI's own /docs, /redoc and /openapi.json are off. Pages carry a
Content-Security-Policy without scripts and may only be framed by the Airflow UI itself (inline ``<style>``: one
stylesheet inlined by the templates, and inline SVG charts); the report (static HTML written by a task, read from
GCS) is served with the same policy plus ``sandbox``. Nothing secret is in any payload: job names, model
names, metrics and the gate's rules.

Data from XCom and GCS is untrusted (``ui.fields``, ``ui.views``): a malformed run or pointer shows as
"unreadable: <why>" in its row; the page itself always answers.
"""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from . import data, pages, views

PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
            "base-uri 'none'; form-action 'none'")
#: the report is static: ``sandbox`` (no token) also gives it an opaque origin, no scripts, forms, popups or plugins
REPORT_CSP = PAGE_CSP + "; sandbox"
MAX_POINTERS = 50     # champion pointers read for one overview (the pipelines with the newest runs)
HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}

app = FastAPI(title="Gemini tuning", description="Tuning progress, loss, gate decisions and champions",
              docs_url=None, redoc_url=None, openapi_url=None)     # no unauthenticated schema, no CDN Swagger
RunAccess = Depends(requires_access_dag("GET", DagAccessEntity.RUN))   # dag_id from the path
XComAccess = Depends(requires_access_dag("GET", DagAccessEntity.XCOM))  # the page shows what XCom holds


def readable_dags(user: GetUserDep) -> set[str]:
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


Readable = Annotated[set, Depends(readable_dags)]


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def xcom_readable(user, dag_ids: set[str]) -> set[str]:
    """The DAGs among ``dag_ids`` whose XCom ``user`` may read (the auth manager asked per DAG, with its team)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.models.dag import DagModel

    if not dag_ids:
        return set()
    teams = DagModel.get_dag_id_to_team_name_mapping(sorted(dag_ids))
    manager = get_auth_manager()
    return {d for d in dag_ids if manager.is_authorized_dag(method="GET", access_entity=DagAccessEntity.XCOM,
                                                            details=DagDetails(id=d, team_name=teams.get(d)),
                                                            user=user)}


def _pointer(uri: str):
    try:
        return data.pointer(uri)
    except Exception as exc:  # noqa: BLE001 - views.overview shows it as "champion pointer unreadable"
        return exc


def _overview(user, readable: set, limit: int) -> dict:
    recs = data.load_runs(readable=readable, limit=limit)
    xcom = xcom_readable(user, {r.dag_id for r in recs})
    run_views = [views.run_view(r, data.live_status(r)) if r.dag_id in xcom else views.restricted_view(r)
                 for r in recs]
    views.assign_pipelines(run_views)
    pointers = {uri: _pointer(uri) for uri in views.pointers_to_read(run_views, MAX_POINTERS)}
    for v in run_views:
        if not v["pipeline"].startswith("dag:") and v["pipeline"] not in pointers:
            pointers[v["pipeline"]] = views.Unreadable("", f"not read: more than {MAX_POINTERS} pipelines shown")
    return views.overview(run_views, pointers, xcom)


def _limit(limit: int | None) -> int:
    cap = int(data.setting("ui_max_runs", "200"))
    return max(1, min(cap, limit or cap))


@app.get("/", response_class=HTMLResponse)
def overview_page(user: GetUserDep, readable: Readable, limit: Annotated[int | None, Query(ge=1)] = None):
    """Every pipeline (champion pointer) with its champion, history and runs."""
    return _html(pages.overview_page(_overview(user, readable, _limit(limit)),
                                     dags_refresh_seconds=data.DAGS_REFRESH_SECONDS))


@app.get("/api/overview")
def overview_json(user: GetUserDep, readable: Readable, limit: Annotated[int | None, Query(ge=1)] = None):
    return JSONResponse(_overview(user, readable, _limit(limit)), headers={"Cache-Control": "no-store"})


def _run(dag_id: str, run_id: str) -> tuple[views.RunRecord, dict]:
    recs = data.load_runs(readable=None, limit=1, dag_id=dag_id, run_id=run_id)
    if not recs:
        raise HTTPException(404, f"no run {run_id!r} of {dag_id!r} with this package's operators")
    rec = recs[0]
    return rec, views.run_view(rec, data.live_status(rec))


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[RunAccess, XComAccess])
def run_page(dag_id: str, run_id: str):
    """One run: steps, live tuning progress and loss, metrics, the gate rule by rule, differing examples."""
    _, view = _run(dag_id, run_id)
    ev = view["evaluation"] or {}
    examples, error = data.examples(ev["results_uri"]) if ev.get("results_uri") else ((), None)
    return _html(pages.run_page(view, examples, error, status_ttl=data.status_ttl()))


@app.get("/api/runs/{dag_id}/{run_id}", dependencies=[RunAccess, XComAccess])
def run_json(dag_id: str, run_id: str):
    return JSONResponse(_run(dag_id, run_id)[1], headers={"Cache-Control": "no-store"})


@app.get("/report/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[RunAccess, XComAccess])
def report(dag_id: str, run_id: str):
    """The run's HTML report, read from GCS by the api-server (readers need no GCS access of their own)."""
    rec, _ = _run(dag_id, run_id)
    value = rec.value("report") or {}
    uri = value.get("report_uri") if isinstance(value, dict) else None
    if not uri or not isinstance(uri, str):
        raise HTTPException(404, "this run has no report (yet)")
    try:
        body = data.report_html(uri)
    except FileNotFoundError as exc:
        raise HTTPException(404, "the report object does not exist (any more)") from exc
    except ValueError as exc:     # not gs://…/report/*.html, or larger than data.MAX_REPORT_BYTES
        raise HTTPException(404, f"this run's report is unreadable: {str(exc)[:300]}") from exc
    except Exception as exc:  # GCS refused or failed: say so, not 500
        raise HTTPException(502, f"the report could not be read from GCS ({type(exc).__name__})") from exc
    return Response(body, media_type="text/html; charset=utf-8",
                    headers={**HEADERS, "Content-Security-Policy": REPORT_CSP})


@app.exception_handler(HTTPException)
async def _errors(request: Request, exc: HTTPException):
    if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/"):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return HTMLResponse(pages.error_page(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                        headers={**HEADERS, **(exc.headers or {})})
