"""The overview page's view: the runs' views (:mod:`.run_views`) grouped into pipelines, one per champion pointer,
each with its champion, its history and a line per run (:func:`overview`). Pure: no Airflow, no I/O; a pointer is
checked like any XCom (:func:`champion_view`). Re-exported by :mod:`.views`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone

from ..core.tuning import BACKENDS
from . import fields as F
from .fields import Unreadable

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _table(path: str | None):
    from ..core import lifecycle

    return lifecycle.load_table(path or None)


def base_model_view(model: str | None, today: date | None = None) -> dict | None:
    """The champion's base model and its retirement (``core.lifecycle``; ``[gemini_tuning] model_lifecycle_table``,
    else the shipped table): ``{"model", "state", "retirement", "days_left", "message"}``; None without a model.
    A table that cannot be read leaves the date out (logged), never the page."""
    if not model:
        return None
    from ..core import lifecycle
    from .data import setting

    try:
        status = lifecycle.base_status(model, today or datetime.now(timezone.utc).date(),
                                       _table(setting("model_lifecycle_table", "") or None))
    except (OSError, ValueError) as exc:
        log.warning("model lifecycle table not readable: %s", exc)
        return {"model": model, "state": "unknown", "retirement": None, "days_left": None,
                "message": "the model lifecycle table could not be read"}
    return {"model": model, "state": status.state, "days_left": status.days_left, "message": status.message,
            "retirement": status.retirement.isoformat() if status.retirement else None}

RESTRICTED = "only state and times: you may not read this DAG's XCom"


def run_summary(view: Mapping) -> dict:
    """The overview's line for one run (no curves)."""
    if view.get("restricted"):
        keys = ("run_id", "steps", "tuning_state", "progress_percent", "tuned_model", "decision", "decision_label",
                "gate_summary", "action", "primary_metric", "challenger", "champion", "unreadable", "status_note")
        return {"dag_id": view["dag_id"], "state": view["state"], "run_after": view["run_after"],
                "start_date": view["start_date"], "end_date": view["end_date"], "restricted": RESTRICTED,
                **dict.fromkeys(keys)}
    t, ev, gate = view["tuning"], view["evaluation"] or {}, view["gate"] or {}
    pm = view["primary_metric"]
    return {"dag_id": view["dag_id"], "run_id": view["run_id"], "state": view["state"],
            "run_after": view["run_after"], "start_date": view["start_date"], "end_date": view["end_date"],
            "restricted": None, "steps": {s["task_id"]: s["state"] for s in view["steps"]},
            "tuning_state": t["state"], "progress_percent": t["progress_percent"], "tuned_model": t["tuned_model"],
            "decision": gate.get("decision"), "decision_label": gate.get("label"),
            "gate_summary": gate.get("summary") if gate.get("decision") == "no_decision" else None,
            "action": (view["decision"] or {}).get("action"),
            "primary_metric": pm, "challenger": (ev.get("challenger") or {}).get(pm),
            "champion": (ev.get("champion") or {}).get(pm) if ev.get("champion") else None,
            "unreadable": view.get("unreadable"), "status_note": t.get("status_note")}


def history(views: Iterable[Mapping]) -> list[dict]:
    """Promotions, deletions and rollbacks of one pipeline, newest first (from the promote/delete/rollback results
    of its runs). A rollback's ``model`` is the restored champion, ``rolled_back`` the champion it replaced."""
    events = []
    for v in views:
        d = v.get("decision")
        if not d or v.get("restricted"):
            continue
        event = {"when": v.get("end_date") or v.get("run_after"), "run_id": v["run_id"], "dag_id": v["dag_id"],
                 "action": d["action"], "model": d.get("model"), "status": d.get("status")}
        if d["action"] == "rolled back":
            event["rolled_back"] = d.get("rolled_back")
        events.append(event)
    return sorted(events, key=lambda e: e["when"] or "", reverse=True)


def champion_view(pointer: Mapping | None, xcom_dags: set | frozenset | None = None) -> dict | None:
    """The champion a pointer names, checked (:class:`Unreadable` otherwise). The run that promoted it is shown
    only when the caller may read its DAG's XCom (``xcom_dags``; None: any)."""
    if pointer is None:
        return None
    w = "pointer"
    p = F.obj(pointer, w, required=True)
    model = F.name(p, "tuned_model", w) or ""
    backend = F.name(p, "backend", w, choices=BACKENDS)
    if not model or not backend:
        raise Unreadable(w, "names no backend or no tuned_model: not a champion pointer")
    dag_id, run_id = F.name(p, "dag_id", w), F.name(p, "run_id", w)
    visible = xcom_dags is None or dag_id in xcom_dags
    previous = F.obj(p.get("previous"), f"{w}.previous")
    return {"model": model, "version": model.rsplit("@", 1)[1] if "@" in model else None,
            "checkpoint_id": F.ident(p, "checkpoint_id", w), "endpoint": F.name(p, "endpoint", w),
            "since": F.name(p, "promoted_at", w), "run_id": run_id if visible else None,
            "dag_id": dag_id if visible else None, "backend": backend,
            "metrics": F.numbers(p.get("metrics"), f"{w}.metrics"),
            "previous": F.name(previous, "tuned_model", f"{w}.previous"),
            "base": base_model_view(F.name(p, "base_model", w))}


def assign_pipelines(views: list[dict]) -> None:
    """A run that has not reached its evaluation yet (running, or failed before it) names no pointer: it joins the
    pipeline its DAG's other runs name (the newest), else the pointer its conf's ``gcs_prefix`` implies."""
    by_dag: dict[str, str] = {}
    for v in sorted(views, key=lambda v: v["run_after"] or ""):
        if not v["pipeline"].startswith("dag:"):
            by_dag[v["dag_id"]] = v["pipeline"]
    for v in views:
        if v["pipeline"].startswith("dag:") and not v.get("restricted"):
            prefix = v.get("gcs_prefix")
            v["pipeline"] = by_dag.get(v["dag_id"]) or (f"{prefix.rstrip('/')}/champion.json" if prefix
                                                           else v["pipeline"])


def pointers_to_read(views: list[dict], limit: int) -> list[str]:
    """The champion pointers of the pipelines shown, those with the newest runs first, at most ``limit``."""
    latest: dict[str, str] = {}
    for v in views:
        if not v["pipeline"].startswith("dag:"):
            latest[v["pipeline"]] = max(latest.get(v["pipeline"], ""), v["run_after"] or "")
    return sorted(latest, key=lambda k: latest[k], reverse=True)[:limit]


def overview(views: list[dict], pointers: Mapping[str, Mapping | Exception | None],
             xcom_dags: set | frozenset | None = None) -> dict:
    """Pipelines (one per champion pointer) with their champion, history and runs, newest first. A pointer that
    could not be read (an exception in ``pointers``) or does not check out is ``champion_unreadable``."""
    groups: dict[str, list[dict]] = {}
    for v in views:
        groups.setdefault(v["pipeline"], []).append(v)
    pipelines = []
    for key, vs in groups.items():
        vs.sort(key=lambda v: v["run_after"] or "", reverse=True)
        champion, unreadable = None, None
        if not key.startswith("dag:"):
            pointer = pointers.get(key)
            try:
                if isinstance(pointer, Exception):
                    raise pointer
                champion = champion_view(pointer, xcom_dags)
            except Unreadable as exc:
                unreadable = str(exc)[:F.MAX_TEXT]
            except Exception as exc:  # noqa: BLE001 - one pipeline's pointer never takes the page down
                unreadable = f"{type(exc).__name__}: {exc}"[:F.MAX_TEXT]
        pipelines.append({"key": key, "pointer_uri": None if key.startswith("dag:") else key,
                          "dag_ids": sorted({v["dag_id"] for v in vs}), "champion": champion,
                          "champion_unreadable": unreadable, "history": history(vs),
                          "runs": [run_summary(v) for v in vs], "latest": vs[0]["run_after"] if vs else None})
    pipelines.sort(key=lambda p: p["latest"] or "", reverse=True)
    return {"pipelines": pipelines, "n_runs": len(views)}
