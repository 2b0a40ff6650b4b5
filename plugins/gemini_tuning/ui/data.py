"""Where the UI page's data comes from: Airflow's metadata DB (runs, task instances, XCom), the objects the pipeline
writes under its GCS prefix (champion pointers, results, reports), and live job status through ``StatusCache``.

Runs inside the api-server. No database of its own; every query is bounded (the newest ``limit`` runs of DAGs that
use this package's operators and that the caller may read). Settings (``[gemini_tuning]`` in airflow.cfg or
``AIRFLOW__GEMINI_TUNING__*``): ``ui_gcp_conn_id`` (default ``google_cloud_default``), ``ui_cache_dir`` (default
``$AIRFLOW_HOME/gemini_tuning_ui_cache``), ``ui_status_ttl_seconds`` (30), ``ui_max_runs`` (200).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from functools import lru_cache

from .status_cache import StatusCache
from .views import ROLES, XCOM_KEYS, RunRecord, is_ours, live_job

#: the steps whose XCom the page reads (the prepare step's statistics are large and not shown)
XCOM_ROLES = frozenset({"tune", "evaluate", "gate", "promote", "delete", "rollback", "report"})
FINISHED = frozenset({"success", "failed"})
_SERDE_MARKERS = ("__classname__", "__type", "__var", "__data__")

log = logging.getLogger(__name__)
POINTER_TTL = 30.0
MAX_REPORT_BYTES = 32 * 1024 * 1024
MAX_EXAMPLES = 20


def setting(key: str, fallback: str) -> str:
    from airflow.configuration import conf

    return conf.get("gemini_tuning", key, fallback=fallback)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


# ------------------------------------------------------------------------------------------------ Airflow DB
_dags_lock = threading.Lock()
_dags: tuple[float, frozenset[str]] = (0.0, frozenset())


def dags_with_our_operators(session) -> frozenset[str]:
    """DAG ids that ran at least one of this package's operators (refreshed every 60 s per process)."""
    global _dags
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    with _dags_lock:
        at, ids = _dags
        if time.monotonic() - at < 60.0:
            return ids
        ids = frozenset(session.scalars(select(TaskInstance.dag_id).where(TaskInstance.operator.in_(tuple(ROLES)))
                                        .distinct()))
        _dags = (time.monotonic(), ids)
        return ids


def _value(row):
    """An XCom value as stored: plain JSON for this package's operators. Airflow's own decoder walks every nested
    dict through its serde (≈70 % of an overview's time with 200 runs), so it is used only for values that carry
    serde markers."""
    import json

    value = row.value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict) and any(k in value for k in _SERDE_MARKERS):
        from airflow.models.xcom import XComModel

        return XComModel.deserialize_value(row)
    return value


_finished: dict[tuple, RunRecord] = {}
_finished_lock = threading.Lock()
MAX_CACHED_RUNS = 5000


def load_runs(*, readable: set[str] | None, limit: int, dag_id: str | None = None,
              run_id: str | None = None) -> list[RunRecord]:
    """The newest ``limit`` runs (of one DAG/run when given) of DAGs using this package's operators, with their
    task instances and the XComs the page reads. ``readable``: the DAG ids the caller may read (None: all).

    A finished run's record is kept per process, keyed by its id, state and end date (a cleared run changes
    both), so an overview reads the task instances and XComs of active runs only."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dags = set(dags_with_our_operators(session)) if dag_id is None else {dag_id}
        if readable is not None:
            dags &= set(readable)
        if not dags:
            return []
        q = (select(DagRun.id, DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.end_date,
                    DagRun.run_after, DagRun.conf).where(DagRun.dag_id.in_(dags)))
        if run_id is not None:
            q = q.where(DagRun.run_id == run_id)
        runs = session.execute(q.order_by(DagRun.run_after.desc()).limit(limit)).all()
        if not runs:
            return []
        by_id, cached = {}, {}
        for r in runs:
            state = str(r.state) if r.state else None
            key = (r.id, state, _iso(r.end_date))
            with _finished_lock:
                hit = _finished.get(key) if state in FINISHED else None
            if hit is not None:
                cached[r.id] = hit
                continue
            by_id[r.id] = RunRecord(r.dag_id, r.run_id, state, _iso(r.start_date), _iso(r.end_date),
                                    _iso(r.run_after), dict(r.conf or {}))
        if not by_id:
            return [rec for rec in (cached[r.id] for r in runs) if is_ours(rec)]
        fresh = [r for r in runs if r.id in by_id]
        keys = {(r.dag_id, r.run_id): r.id for r in fresh}
        tis = session.execute(
            select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.operator,
                   TaskInstance.state, TaskInstance.try_number)
            .where(TaskInstance.dag_id.in_({r.dag_id for r in fresh}),
                   TaskInstance.run_id.in_({r.run_id for r in fresh}), TaskInstance.map_index == -1)).all()
        for ti in tis:
            rid = keys.get((ti.dag_id, ti.run_id))
            if rid is not None:
                by_id[rid].tasks[ti.task_id] = {"operator": ti.operator, "state": str(ti.state) if ti.state else None,
                                                "try_number": ti.try_number}
        ours = {rid: {t for t, info in rec.tasks.items() if ROLES.get(info["operator"]) in XCOM_ROLES}
                for rid, rec in by_id.items()}
        xcoms = session.execute(
            select(XComModel.dag_run_id, XComModel.task_id, XComModel.key, XComModel.value)
            .where(XComModel.dag_run_id.in_(list(by_id)), XComModel.key.in_(XCOM_KEYS),
                   XComModel.map_index == -1)).all()
        for x in xcoms:
            if x.task_id in ours.get(x.dag_run_id, ()):
                by_id[x.dag_run_id].xcom[(x.task_id, x.key)] = _value(x)
    with _finished_lock:
        if len(_finished) > MAX_CACHED_RUNS:
            _finished.clear()
        for rid, rec in by_id.items():
            if rec.state in FINISHED:
                _finished[(rid, rec.state, rec.end_date)] = rec
    out = [by_id.get(r.id) or cached[r.id] for r in runs]
    return [rec for rec in out if is_ours(rec)]


# ------------------------------------------------------------------------------------------------ Google side
@lru_cache(maxsize=1)
def hook():
    from ..hooks import GeminiTuningHook

    return GeminiTuningHook(gcp_conn_id=setting("ui_gcp_conn_id", "google_cloud_default"))


@lru_cache(maxsize=1)
def storage():
    return hook().storage()


_backends: dict = {}
_backends_lock = threading.Lock()


def fetch_status(backend: str, ref: str) -> dict:
    """One status request (and the loss curve from the metrics file) for a running job -> its summary."""
    if backend == "vertex":
        m = re.match(r"^projects/([^/]+)/locations/([^/]+)/", ref)
        if not m:
            raise ValueError(f"not a Vertex tuning job name: {ref!r}")
        key = ("vertex", m[1], m[2])
    else:
        key = (backend, None, None)
    with _backends_lock:
        b = _backends.get(key)
        if b is None:
            b = _backends[key] = hook().backend(backend, project_id=key[1], location=key[2] or "us-central1")
    return b.with_loss(b.get(ref)).summary()


@lru_cache(maxsize=1)
def status_cache() -> StatusCache:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return StatusCache(setting("ui_cache_dir", os.path.join(home, "gemini_tuning_ui_cache")), fetch_status,
                       ttl=float(setting("ui_status_ttl_seconds", "30")))


def live_status(rec: RunRecord) -> dict | None:
    job = live_job(rec)
    return status_cache().get(*job) if job else None


_pointers: dict[str, tuple[float, dict | None]] = {}
_pointers_lock = threading.Lock()


def pointer(uri: str) -> dict | None:
    """The champion pointer (cached ``POINTER_TTL`` s per process); None when absent or unreadable."""
    from ..services.champion import read_champion

    with _pointers_lock:
        hit = _pointers.get(uri)
        if hit and time.monotonic() - hit[0] < POINTER_TTL:
            return hit[1]
    try:
        value, _ = read_champion(storage(), uri)
    except Exception as exc:  # noqa: BLE001 - shown as "no champion"; logged
        log.warning("could not read the champion pointer %s: %s", uri, exc)
        value = None
    with _pointers_lock:
        _pointers[uri] = (time.monotonic(), value)
    return value


@lru_cache(maxsize=256)
def examples(results_uri: str) -> tuple:
    """The first prompts where challenger and champion differ (results files never change once written)."""
    from ..services.eval_results import differing_examples, read_rows

    try:
        return tuple(differing_examples(read_rows(storage(), results_uri))[:MAX_EXAMPLES])
    except Exception as exc:  # noqa: BLE001 - the page shows the rest
        log.warning("could not read %s: %s", results_uri, exc)
        return ()


def report_html(report_uri: str) -> bytes:
    """A run's report from GCS. Only ``gs://…/report/*.html``: the URI comes from XCom, which DAG code writes, and
    the api-server must never serve one of its own files."""
    from ..backends import gcs

    if not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/(.+/)?report/[^/]+\.html$", str(report_uri)):
        raise ValueError(f"not a report in GCS: {report_uri!r}")

    with gcs.open_source(report_uri, storage()) as f:
        data = f.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise ValueError(f"{report_uri} is larger than {MAX_REPORT_BYTES} bytes")
    return data
