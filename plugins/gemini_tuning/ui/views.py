"""What the UI page shows, from what Airflow and the pipeline already keep: pure functions, no Airflow, no I/O.

Inputs are :class:`RunRecord` s (a DAG run, its task instances with their operator class, and the XComs of this
package's operators), the champion pointers, and live job statuses (from ``ui.status_cache``). Tasks are recognised
by their operator class, not their task id, so any DAG built from this package's operators shows up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..core.states import JobStatus
from ..core.vocabulary import DEFAULT_PRIMARY_METRIC

#: operator class -> the pipeline step it is
ROLES = {
    "PrepareTuningDatasetOperator": "prepare",
    "GeminiTuningOperator": "tune",
    "GeminiTuningJobSensor": "tune",
    "GeminiEvaluateOperator": "evaluate",
    "GeminiGateOperator": "gate",
    "GeminiApprovalOperator": "approval",
    "GeminiPromoteOperator": "promote",
    "GeminiDeleteTunedModelOperator": "delete",
    "GeminiRollbackOperator": "rollback",
    "GeminiTuningReportOperator": "report",
}
STEP_ORDER = ("prepare", "tune", "evaluate", "gate", "approval", "promote", "delete", "rollback", "report")
JOB_XCOM = "gemini_tuning_job"
XCOM_KEYS = ("return_value", "gate", JOB_XCOM)
SUMMARY_METRICS = ("normalized_match", "exact_match", "rouge_l_f1", "label_accuracy", "macro_f1")


@dataclass
class RunRecord:
    dag_id: str
    run_id: str
    state: str | None
    start_date: str | None = None
    end_date: str | None = None
    run_after: str | None = None
    conf: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)      # task_id -> {"operator", "state", "try_number"}
    xcom: dict = field(default_factory=dict)       # (task_id, key) -> value

    def tasks_of(self, role: str) -> list[str]:
        return sorted(t for t, info in self.tasks.items() if ROLES.get(info.get("operator")) == role)

    def value(self, role: str, key: str = "return_value"):
        """The XCom of the first task of ``role`` that has one (e.g. ``delete`` vs ``cleanup_on_failure``)."""
        for task_id in self.tasks_of(role):
            v = self.xcom.get((task_id, key))
            if v is not None:
                return v
        return None

    def task_state(self, role: str) -> str | None:
        states = [self.tasks[t].get("state") for t in self.tasks_of(role)]
        for wanted in ("running", "deferred", "up_for_retry", "queued", "scheduled", "failed", "success"):
            if wanted in states:
                return wanted
        return states[0] if states else None


def is_ours(rec: RunRecord) -> bool:
    return any(info.get("operator") in ROLES for info in rec.tasks.values())


def pointer_uri_of(rec: RunRecord) -> str | None:
    ev = rec.value("evaluate") or {}
    promoted = rec.value("promote") or {}
    rolled = rec.value("rollback") or {}
    return (ev.get("champion_pointer_uri") if isinstance(ev, dict) else None) or \
        (promoted.get("pointer_uri") if isinstance(promoted, dict) else None) or \
        (rolled.get("pointer_uri") if isinstance(rolled, dict) else None) or \
        (rec.conf.get("pointer_uri") if rec.tasks_of("rollback") and isinstance(rec.conf.get("pointer_uri"), str)
         else None)


def pipeline_key(rec: RunRecord) -> str:
    return pointer_uri_of(rec) or f"dag:{rec.dag_id}"


def live_job(rec: RunRecord) -> tuple[str, str] | None:
    """(backend, poll name) of a tuning job still running in this run (None once the tune task has finished)."""
    if rec.value("tune") is not None or rec.task_state("tune") not in ("running", "deferred", "up_for_retry",
                                                                        "queued", "scheduled"):
        return None
    job = rec.value("tune", JOB_XCOM)
    if not isinstance(job, dict) or not job.get("ref"):
        return None
    return job.get("backend") or "vertex", job["ref"]


def _when(ts) -> str | None:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else None


def _points(rows) -> list[tuple[float, float]]:
    out = []
    for r in rows or ():
        try:
            out.append((float(r[0]), float(r[2])))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def tuning_view(rec: RunRecord, live: Mapping | None) -> dict:
    """The tuning job: the finished job's summary (the tune task's XCom), or the live status while it runs."""
    final = rec.value("tune")
    job = rec.value("tune", JOB_XCOM) or {}
    source, summary = "none", {}
    if isinstance(final, dict):
        source, summary = "final", final
    elif live and isinstance(live.get("status"), dict):
        source, summary = "live", live["status"]
    try:
        status = JobStatus.from_summary(summary)
    except (TypeError, ValueError):   # not a full summary (an older or foreign XCom): show what is there
        status = None
    out = {"source": source, "job_name": summary.get("name") or job.get("name"), "backend": job.get("backend")
           or summary.get("backend"), "console_url": job.get("url"), "state": summary.get("state"),
           "sub_state": summary.get("sub_state"), "progress_percent": summary.get("progress_percent"),
           "completed_steps": summary.get("completed_steps"), "total_steps": summary.get("total_steps"),
           "tuned_model": summary.get("tuned_model"), "endpoint": summary.get("endpoint"),
           "continued_from": summary.get("continued_from"), "checkpoints": summary.get("checkpoints") or [],
           "loss": _points(summary.get("loss_history")), "validation": _points(summary.get("validation_history")),
           "latest_loss": summary.get("latest_loss"), "eta_seconds": (live or {}).get("eta_seconds"),
           "checked_at": _when((live or {}).get("at")),
           "error": summary.get("error_message") or (live or {}).get("error"),
           "describe": status.describe() if status else None}
    if source == "final" and out["state"] == "JOB_STATE_SUCCEEDED":
        out["progress_percent"] = 100.0
    return out


def _metric_block(summary: Mapping | None) -> dict:
    m = (summary or {}).get("metrics") or {}
    return {k: m.get(k) for k in SUMMARY_METRICS if m.get(k) is not None}


def evaluation_view(rec: RunRecord) -> dict | None:
    ev = rec.value("evaluate")
    if not isinstance(ev, dict):
        return None
    summary = ev.get("summary") or {}
    ch, cp = summary.get("challenger") or {}, summary.get("champion")
    tags = sorted(set(ch.get("per_tag") or {}) | set((cp or {}).get("per_tag") or {}))
    return {"n_prompts": ev.get("n_prompts"), "models": ev.get("models") or {}, "results_uri": ev.get("results_uri"),
            "challenger": _metric_block(ch), "champion": _metric_block(cp) if cp else None,
            "error_rate": {"challenger": ch.get("error_rate"), "champion": (cp or {}).get("error_rate")},
            "tags": tags,
            "per_tag": {t: {"challenger": (((ch.get("per_tag") or {}).get(t) or {}).get("metrics") or {}),
                            "champion": ((((cp or {}).get("per_tag") or {}).get(t) or {}).get("metrics") or {})}
                        for t in tags},
            "best_checkpoint": ev.get("best_checkpoint"), "champion_generation": ev.get("champion_generation")}


def primary_metric(gate: Mapping | None) -> str:
    for rule in (gate or {}).get("rules") or ():
        if rule.get("name") == "champion_margin" and isinstance(rule.get("details"), dict):
            metric = rule["details"].get("metric")
            if metric:
                return metric
    for rule in (gate or {}).get("rules") or ():
        if str(rule.get("name", "")).startswith("threshold:"):
            return rule["name"].split(":", 1)[1]
    return DEFAULT_PRIMARY_METRIC


def run_view(rec: RunRecord, live: Mapping | None = None) -> dict:
    """Everything the run page shows (JSON-safe)."""
    steps = []
    for role in STEP_ORDER:
        for task_id in rec.tasks_of(role):
            info = rec.tasks[task_id]
            steps.append({"task_id": task_id, "role": role, "state": info.get("state"),
                          "try_number": info.get("try_number")})
    gate = rec.value("gate", "gate")
    decision = None
    promoted, deleted = rec.value("promote"), rec.value("delete")
    if isinstance(promoted, dict):
        decision = {"action": "promoted", "status": promoted.get("status"),
                    "model": (promoted.get("champion") or {}).get("tuned_model")}
    elif isinstance(deleted, dict):
        decision = {"action": "deleted", "model": deleted.get("tuned_model"),
                    "model_deleted": deleted.get("model_deleted")}
    elif isinstance(rolled := rec.value("rollback"), dict):
        decision = {"action": "rolled back", "status": rolled.get("status"),
                    "model": (rolled.get("champion") or {}).get("tuned_model"),
                    "rolled_back": rolled.get("rolled_back")}
    report = rec.value("report")
    return {"dag_id": rec.dag_id, "run_id": rec.run_id, "state": rec.state, "start_date": rec.start_date,
            "end_date": rec.end_date, "run_after": rec.run_after, "pipeline": pipeline_key(rec),
            "gcs_prefix": rec.conf.get("gcs_prefix") if isinstance(rec.conf.get("gcs_prefix"), str) else None,
            "params": {k: rec.conf.get(k) for k in ("backend", "base_model", "epochs", "training_data",
                                                    "continue_from", "evaluate_checkpoints") if k in rec.conf},
            "steps": steps, "tuning": tuning_view(rec, live), "evaluation": evaluation_view(rec),
            "gate": gate if isinstance(gate, dict) else None, "primary_metric": primary_metric(gate),
            "decision": decision, "has_report": isinstance(report, dict) and bool(report.get("report_uri")),
            "active": rec.state in ("running", "queued")}


def run_summary(view: Mapping) -> dict:
    """The overview's line for one run (no curves)."""
    t, ev, gate = view["tuning"], view["evaluation"] or {}, view["gate"] or {}
    pm = view["primary_metric"]
    return {"dag_id": view["dag_id"], "run_id": view["run_id"], "state": view["state"],
            "run_after": view["run_after"], "steps": {s["task_id"]: s["state"] for s in view["steps"]},
            "tuning_state": t["state"], "progress_percent": t["progress_percent"], "tuned_model": t["tuned_model"],
            "decision": gate.get("decision"), "action": (view["decision"] or {}).get("action"),
            "primary_metric": pm, "challenger": (ev.get("challenger") or {}).get(pm),
            "champion": (ev.get("champion") or {}).get(pm) if ev.get("champion") else None}


def history(views: Iterable[Mapping]) -> list[dict]:
    """Promotions, deletions and rollbacks of one pipeline, newest first (from the promote/delete/rollback results
    of its runs). A rollback's ``model`` is the restored champion, ``rolled_back`` the champion it replaced."""
    events = []
    for v in views:
        d = v.get("decision")
        if not d:
            continue
        event = {"when": v.get("end_date") or v.get("run_after"), "run_id": v["run_id"], "dag_id": v["dag_id"],
                 "action": d["action"], "model": d.get("model"), "status": d.get("status")}
        if d["action"] == "rolled back":
            event["rolled_back"] = d.get("rolled_back")
        events.append(event)
    return sorted(events, key=lambda e: e["when"] or "", reverse=True)


def champion_view(pointer: Mapping | None) -> dict | None:
    if not pointer:
        return None
    model = pointer.get("tuned_model") or ""
    return {"model": model, "version": model.rsplit("@", 1)[1] if "@" in model else None,
            "checkpoint_id": pointer.get("checkpoint_id"), "endpoint": pointer.get("endpoint"),
            "since": pointer.get("promoted_at"), "run_id": pointer.get("run_id"), "dag_id": pointer.get("dag_id"),
            "backend": pointer.get("backend"), "metrics": dict(pointer.get("metrics") or {}),
            "previous": (pointer.get("previous") or {}).get("tuned_model")}


def assign_pipelines(views: list[dict]) -> None:
    """A run that has not reached its evaluation yet (running, or failed before it) names no pointer: it joins the
    pipeline its DAG's other runs name (the newest), else the pointer its conf's ``gcs_prefix`` implies."""
    by_dag: dict[str, str] = {}
    for v in sorted(views, key=lambda v: v["run_after"] or ""):
        if not v["pipeline"].startswith("dag:"):
            by_dag[v["dag_id"]] = v["pipeline"]
    for v in views:
        if v["pipeline"].startswith("dag:"):
            prefix = v.get("gcs_prefix")
            v["pipeline"] = by_dag.get(v["dag_id"]) or (f"{prefix.rstrip('/')}/champion.json" if prefix
                                                           else v["pipeline"])


def overview(views: list[dict], pointers: Mapping[str, Mapping | None]) -> dict:
    """Pipelines (one per champion pointer) with their champion, history and runs, newest first."""
    groups: dict[str, list[dict]] = {}
    for v in views:
        groups.setdefault(v["pipeline"], []).append(v)
    pipelines = []
    for key, vs in groups.items():
        vs.sort(key=lambda v: v["run_after"] or "", reverse=True)
        pipelines.append({"key": key, "pointer_uri": None if key.startswith("dag:") else key,
                          "dag_ids": sorted({v["dag_id"] for v in vs}), "champion": champion_view(pointers.get(key)),
                          "history": history(vs), "runs": [run_summary(v) for v in vs],
                          "latest": vs[0]["run_after"] if vs else None})
    pipelines.sort(key=lambda p: p["latest"] or "", reverse=True)
    return {"pipelines": pipelines, "n_runs": len(views)}
