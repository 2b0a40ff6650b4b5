"""Where the UI page's data comes from: Airflow's metadata DB (runs, task instances, XCom), the objects the pipeline
writes under its GCS prefix (champion pointers, results, reports), and live job status through ``StatusCache``.

Runs inside the api-server. No database of its own; every query is bounded (the newest ``limit`` runs of DAGs that
use this package's operators and that the caller may read). Settings (``[gemini_tuning]`` in airflow.cfg or
``AIRFLOW__GEMINI_TUNING__*``): ``ui_gcp_conn_id`` (default ``google_cloud_default``), ``ui_cache_dir`` (default
``$AIRFLOW_HOME/gemini_tuning_ui_cache``), ``ui_status_ttl_seconds`` (30; :func:`status_ttl`), ``ui_max_runs`` (200),
``ui_status_projects`` (see :func:`status_projects`).

Everything read from XCom, GCS and the status cache is untrusted (``ui.fields``): a job is only asked about when
its name checks out (``views.live_job``) and its project is one the deployment allows; every GCS read is bounded
(``MAX_POINTER_BYTES``, ``MAX_RESULTS_BYTES``, ``MAX_REPORT_BYTES``) and a malformed object is shown as unreadable.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from functools import lru_cache

from ..core.bounded_cache import byte_bounded_cache
from ..core.constants import MAX_POINTER_BYTES
from ..core.gcs_uri import gs_uri_matches
from .fields import Undecodable, Unreadable
from .status_cache import StatusCache
from .views import ROLES, XCOM_KEYS, RunRecord, is_ours, job_ref, live_job

#: the steps whose XCom the page reads (the prepare step's statistics are large and not shown)
XCOM_ROLES = frozenset({"tune", "evaluate", "gate", "promote", "delete", "rollback", "report"})
FINISHED = frozenset({"success", "failed"})
_SERDE_MARKERS = ("__classname__", "__type", "__var", "__data__")

log = logging.getLogger(__name__)
POINTER_TTL = 30.0
MAX_REPORT_BYTES = 32 * 1024 * 1024
MAX_RESULTS_BYTES = 64 * 1024 * 1024   # a results file the run page reads its examples from
MAX_EXAMPLES = 20
#: the object name of a report the UI serves: ``…/report/NAME.html`` (the bucket and the URI: ``core.gcs_uri``)
_REPORT_OBJECT = re.compile(r"(.+/)?report/[^/]+\.html")
MAX_BACKENDS = 32                      # status backends kept per process (one per allowed project and location)
#: the examples cache keeps at most this many bytes of examples (by their JSON size), and 256 results files
EXAMPLES_CACHE_BYTES = 32 * 1024 * 1024
#: the list of DAGs that use this package's operators is re-read this often per process (the overview says so)
DAGS_REFRESH_SECONDS = 60.0
#: ``ui_status_ttl_seconds`` when it is not set
STATUS_TTL_DEFAULT = 30.0


def setting(key: str, fallback: str) -> str:
    from airflow.configuration import conf

    return conf.get("gemini_tuning", key, fallback=fallback)


def status_ttl() -> float:
    """``[gemini_tuning] ui_status_ttl_seconds``: how long a live job status is cached before it is asked again
    (:data:`STATUS_TTL_DEFAULT` when unset, or when the value is not a positive number: logged). The status cache
    and the run page (which says it) both read it here."""
    raw = setting("ui_status_ttl_seconds", f"{STATUS_TTL_DEFAULT:g}")
    try:
        ttl = float(raw)
    except (TypeError, ValueError):
        ttl = math.nan
    if not (math.isfinite(ttl) and ttl > 0):
        log.warning("[gemini_tuning] ui_status_ttl_seconds = %r is not a positive number: %g s is used", raw,
                    STATUS_TTL_DEFAULT)
        return STATUS_TTL_DEFAULT
    return ttl


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


# ------------------------------------------------------------------------------------------------ Airflow DB
_dags_lock = threading.Lock()
_dags: tuple[float, frozenset[str]] = (0.0, frozenset())


def dags_with_our_operators(session) -> frozenset[str]:
    """DAG ids that ran at least one of this package's operators (re-read every :data:`DAGS_REFRESH_SECONDS` per
    process)."""
    global _dags
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    with _dags_lock:
        at, ids = _dags
        if time.monotonic() - at < DAGS_REFRESH_SECONDS:
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

        try:
            return XComModel.deserialize_value(row)
        except Exception as exc:  # noqa: BLE001 - one bad value must not fail the query for every run
            return Undecodable(f"{type(exc).__name__}: {exc}"[:200])
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
                                    _iso(r.run_after), dict(r.conf) if isinstance(r.conf, dict) else {})
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


def status_projects() -> frozenset[str]:
    """The projects whose tuning jobs the UI may ask about: ``[gemini_tuning] ui_status_projects``, comma-separated.

    Default (unset or empty): the project of the UI's own Google connection (``ui_gcp_conn_id``) and nothing
    more. Deliberately not added by default: the projects that run conf, DAG Params or XCom name (anyone who may
    trigger a run or write XCom chooses those: exactly what this setting bounds), and "every project the
    api-server's account can see". A deployment that tunes in other projects lists them all (a set value replaces
    the default: list the connection's project too if it is one). Gemini API jobs name no project; they are asked
    with the UI's own connection and its quota project, so this setting does not apply to them. Values that are not
    project ids are ignored (and logged)."""
    from ..core.names import InvalidName, validate_project

    raw = setting("ui_status_projects", "").strip()
    if raw:
        names = [p.strip() for p in raw.split(",") if p.strip()]
    else:
        try:
            names = [hook().project_id] if hook().project_id else []
        except Exception as exc:  # noqa: BLE001 - no connection: no project is allowed
            log.warning("the UI's Google connection has no usable project (%s): no job status is fetched", exc)
            names = []
    allowed = set()
    for name in names:
        try:
            allowed.add(validate_project(name, field="ui_status_projects entry"))
        except InvalidName as exc:
            log.warning("[gemini_tuning] ui_status_projects: %s (ignored)", exc)
    return frozenset(allowed)


def refusal(backend: str, ref: str) -> str | None:
    """Why the job named ``ref`` must not be asked about (None: it may). Checks the name (``views.job_ref``:
    ``core.names``; :class:`Unreadable` when it does not check out) and that its project is in
    :func:`status_projects`."""
    _, project, _ = job_ref(backend, ref)
    if project is None:
        return None
    allowed = status_projects()
    if project in allowed:
        return None
    return (f"status not fetched: project {project!r} is not in [gemini_tuning] ui_status_projects "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'})")


def fetch_status(backend: str, ref: str) -> dict:
    """One status request (and the loss curve from the metrics file) for a running job -> its summary. The name
    and its project are checked again here (:func:`refusal`), whoever calls."""
    why = refusal(backend, ref)
    if why:
        raise PermissionError(why)
    _, project, location = job_ref(backend, ref)
    key = (backend, project, location)
    with _backends_lock:
        b = _backends.get(key)
        if b is None:
            if len(_backends) >= MAX_BACKENDS:
                _backends.clear()
            b = _backends[key] = hook().backend(backend, project_id=project, location=location or "us-central1")
    return b.with_loss(b.get(ref)).summary()


@lru_cache(maxsize=1)
def status_cache() -> StatusCache:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return StatusCache(setting("ui_cache_dir", os.path.join(home, "gemini_tuning_ui_cache")), fetch_status,
                       ttl=status_ttl())


def live_status(rec: RunRecord) -> dict | None:
    """The cached live status of the run's running job; ``{"unreadable": why}`` when its name does not check out,
    ``{"not_fetched": why}`` when its project is not allowed or the cache fails. Never raises."""
    try:
        job = live_job(rec)
        if not job:
            return None
        why = refusal(*job)
        if why:
            return {"not_fetched": why}
    except Unreadable as exc:
        return {"unreadable": str(exc)}
    try:
        return status_cache().get(*job)
    except Exception as exc:  # noqa: BLE001 - the page shows the rest
        log.warning("no live status for %s: %s", job[1], exc)
        return {"not_fetched": f"status not fetched: {type(exc).__name__}: {exc}"[:500]}


_pointers: dict[str, tuple[float, dict | None, Unreadable | None]] = {}
_pointers_lock = threading.Lock()
MAX_CACHED_POINTERS = 1000


def pointer(uri: str) -> dict | None:
    """The champion pointer (cached ``POINTER_TTL`` s per process, failures too); None when there is none. Raises
    :class:`Unreadable` when it cannot be read: not JSON, larger than ``MAX_POINTER_BYTES``, not an object, or the
    read failed (its fields are checked by ``views.champion_view``)."""
    import json

    from ..backends import gcs

    with _pointers_lock:
        hit = _pointers.get(uri)
    if not (hit and time.monotonic() - hit[0] < POINTER_TTL):
        value, error = None, None
        try:
            value, _ = gcs.read_json(storage(), uri, max_bytes=MAX_POINTER_BYTES, what="a champion pointer")
        except json.JSONDecodeError as exc:
            error = Unreadable(uri, f"is not JSON ({exc})")
        except Exception as exc:  # noqa: BLE001 - shown on the page; logged
            log.warning("could not read the champion pointer %s: %s", uri, exc)
            error = Unreadable(uri, f"{type(exc).__name__}: {exc}"[:500])
        hit = (time.monotonic(), value, error)
        with _pointers_lock:
            if len(_pointers) >= MAX_CACHED_POINTERS:
                _pointers.clear()
            _pointers[uri] = hit
    if hit[2] is not None:
        raise hit[2]
    return hit[1]


@byte_bounded_cache(max_bytes=EXAMPLES_CACHE_BYTES, maxsize=256)
def examples(results_uri: str) -> tuple[tuple, str | None]:
    """``(examples, None)``: the first prompts where challenger and champion differ (results files never change
    once written); ``((), why)`` when the file cannot be read (at most ``MAX_RESULTS_BYTES``) or is malformed (the
    failure is cached too: a broken file is not downloaded again on every look)."""
    from ..backends import gcs
    from ..services.eval_results import differing_examples

    try:
        rows = gcs.read_jsonl(storage(), results_uri, max_bytes=MAX_RESULTS_BYTES, what="the UI's examples")
        found = differing_examples(rows)[:MAX_EXAMPLES]
        return tuple({k: x.get(k) for k in ("prompt", "reference", "challenger", "champion")} for x in found), None
    except Exception as exc:  # noqa: BLE001 - the page shows the rest, and why
        log.warning("could not read %s: %s", results_uri, exc)
        return (), f"{results_uri}: {type(exc).__name__}: {exc}"[:500]


def report_html(report_uri: str) -> bytes:
    """A run's report from GCS. Only ``gs://…/report/*.html``: the URI comes from XCom, which DAG code writes, and
    the api-server must never serve one of its own files."""
    from ..backends import gcs

    if not gs_uri_matches(report_uri, _REPORT_OBJECT):
        raise ValueError(f"not a report in GCS: {report_uri!r}")

    with gcs.open_source(report_uri, storage()) as f:
        data = f.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise ValueError(f"{report_uri} is larger than {MAX_REPORT_BYTES} bytes")
    return data
