"""What the UI page shows, from what Airflow and the pipeline already keep: pure functions, no Airflow, no I/O.

Inputs are :class:`RunRecord` s (a DAG run, its task instances with their operator class, and the XComs of this
package's operators), the champion pointers, and live job statuses (from ``ui.status_cache``). Tasks are recognised
by their operator class, not their task id, so any DAG built from this package's operators shows up.

Nothing read here is trusted (see :mod:`.fields`): every XCom field, live status and champion pointer is type
checked; a run whose values do not check out keeps its row, with ``unreadable: <why>`` for each section that could
not be read (its other sections are shown). Job and model names, projects and locations are checked with
:mod:`..core.names` before a status is asked for (:func:`live_job`). A run of a DAG whose XCom the caller may not
read is shown by :func:`restricted_view`: state and times only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..core.states import JobStatus
from ..core.tuning import BACKENDS
from ..core.vocabulary import DEFAULT_PRIMARY_METRIC
from . import fields as F
from .fields import Unreadable

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
#: the gate's decisions (``core.gate.DECISIONS``; a unit test checks they agree) and how the page says them
GATE_DECISIONS = ("promote", "delete", "no_decision")
DECISION_LABELS = {"promote": "promote", "delete": "delete", "no_decision": "no decision"}
#: where a "tuning job in the console" link may point (the backends' ``console_url``); any other URL is not linked
CONSOLE_PREFIXES = ("https://console.cloud.google.com/", "https://aistudio.google.com/")
ACTIVE_TASK_STATES = ("running", "deferred", "up_for_retry", "queued", "scheduled")
RESTRICTED = "only state and times: you may not read this DAG's XCom"
MAX_TAGS = 100
#: a champion pointer (or a prefix it is derived from) named by XCom or conf: gs://BUCKET/…/NAME.json
_POINTER_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/[^\s?#\x00-\x1f]{1,900}\.json$")
_PREFIX_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\s?#\x00-\x1f]{0,900})?$")

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------------------------ names
def _pointer_uri(value, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or ".." in value or not _POINTER_URI.match(value):
        raise Unreadable(where, f"is {F.kind(value)}, expected a gs://BUCKET/…/NAME.json champion pointer URI")
    return value


def pointer_uri_of(rec: RunRecord) -> str | None:
    """The champion pointer a run names (its evaluation's, promotion's or rollback's; a rollback run's conf).
    Raises :class:`Unreadable` for a value that is not a gs:// JSON object URI."""
    for role, key, where in (("evaluate", "champion_pointer_uri", "evaluation"),
                             ("promote", "pointer_uri", "promotion"), ("rollback", "pointer_uri", "rollback")):
        uri = _pointer_uri(F.obj(rec.value(role), where).get(key), f"{where}.{key}")
        if uri:
            return uri
    if rec.tasks_of("rollback") and isinstance(rec.conf.get("pointer_uri"), str):
        return _pointer_uri(rec.conf["pointer_uri"], "conf.pointer_uri")
    return None


def pipeline_key(rec: RunRecord) -> str:
    return pointer_uri_of(rec) or f"dag:{rec.dag_id}"


def job_ref(backend: str, ref: str) -> tuple[str, str | None, str | None]:
    """``(ref, project, location)`` of a job name to poll, checked with ``core.names`` (project and location only on
    Vertex AI; a Gemini API name has none: it is asked with the UI's own connection). :class:`Unreadable`
    otherwise: nothing of it may reach a URL or a host name."""
    from ..core.names import InvalidName, validate_location, validate_project, validate_resource_name

    try:
        if backend == "vertex":
            validate_resource_name(ref, "tuning_job", field="tuning job name")
            _, project, _, location = ref.split("/")[:4]
            return ref, validate_project(project, field="tuning job project"), \
                validate_location(location, field="tuning job location")
        if backend == "gemini_api":
            return validate_resource_name(ref, ("operation", "tuned_model"), field="tuning job name"), None, None
    except InvalidName as exc:
        raise Unreadable("tuning job.ref", str(exc)) from None
    raise Unreadable("tuning job.backend", f"is {F.kind(backend)}, expected one of {', '.join(BACKENDS)}")


def _job(rec: RunRecord) -> dict:
    """The tune task's ``gemini_tuning_job`` XCom (what the job is called and where it is polled)."""
    w = "tuning job"
    job = F.obj(rec.value("tune", JOB_XCOM), w)
    url = F.name(job, "url", w)
    return {"name": F.name(job, "name", w), "ref": F.name(job, "ref", w),
            "backend": F.name(job, "backend", w, choices=BACKENDS),
            "url": url if url and url.startswith(CONSOLE_PREFIXES) else None}


def live_job(rec: RunRecord) -> tuple[str, str] | None:
    """(backend, poll name) of a tuning job still running in this run (None once the tune task has finished), its
    name checked by :func:`job_ref`; :class:`Unreadable` when the job XCom or the name is malformed."""
    if rec.value("tune") is not None or rec.task_state("tune") not in ACTIVE_TASK_STATES:
        return None
    job = _job(rec)
    if not job["ref"]:
        return None
    backend = job["backend"] or "vertex"
    return backend, job_ref(backend, job["ref"])[0]


# ------------------------------------------------------------------------------------------------ tuning
def _when(ts) -> str | None:
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else None
    except (OverflowError, OSError, ValueError):
        raise Unreadable("live status.at", f"is {F.kind(ts)}, not a time") from None


def _history(value, where: str) -> tuple[list, list[tuple[float, float]]]:
    """A loss history ``[[step, epoch, loss], ...]``: (the rows as given, the (step, loss) points to draw)."""
    rows, points = [], []
    for i, row in enumerate(F.items(value, where)):
        w = f"{where}[{i}]"
        if not isinstance(row, (list, tuple)) or len(row) != 3:
            raise Unreadable(w, f"is {F.kind(row)}, expected [step, epoch, loss]")
        step, epoch, loss = (F.as_number(v, f"{w}[{k}]") for k, v in enumerate(row))
        if step is None or loss is None:
            raise Unreadable(w, "has no step or no loss")
        rows.append([step, epoch, loss])
        points.append((float(step), float(loss)))
    return rows, points


def job_summary(value, where: str) -> dict:
    """A ``JobStatus.summary()`` (the tune task's result, or a live status), every field the page reads checked."""
    s = F.obj(value, where)
    checkpoints = []
    for i, c in enumerate(F.items(s.get("checkpoints"), f"{where}.checkpoints")):
        w = f"{where}.checkpoints[{i}]"
        c = F.obj(c, w, required=True)
        checkpoints.append({"checkpoint_id": F.ident(c, "checkpoint_id", w), "epoch": F.integer(c, "epoch", w),
                            "step": F.number(c, "step", w), "endpoint": F.name(c, "endpoint", w)})
    loss_rows, loss = _history(s.get("loss_history"), f"{where}.loss_history")
    val_rows, validation = _history(s.get("validation_history"), f"{where}.validation_history")
    out = {k: F.name(s, k, where) for k in ("name", "backend", "state", "sub_state", "tuned_model", "endpoint",
                                          "continued_from")}
    out.update({k: F.integer(s, k, where) for k in ("completed_steps", "total_steps", "error_code")})
    out.update(progress_percent=F.number(s, "progress_percent", where),
               latest_loss=F.number(s, "latest_loss", where), error_message=F.text(s, "error_message", where),
               checkpoints=checkpoints, loss_history=loss_rows, validation_history=val_rows)
    return {"summary": out, "loss": loss, "validation": validation}


def _describe(summary: dict) -> str | None:
    """``JobStatus.describe()`` of a checked summary; None when it is not a full one (no name, backend or state:
    an older or foreign XCom)."""
    if not (summary["name"] and summary["backend"] and summary["state"]):
        return None
    try:
        return JobStatus.from_summary(summary).describe()
    except (TypeError, ValueError):
        return None


def tuning_view(rec: RunRecord, live: Mapping | None) -> dict:
    """The tuning job: the finished job's summary (the tune task's XCom), or the live status while it runs.
    :class:`Unreadable` when any of it is malformed."""
    final = rec.value("tune")
    job = _job(rec)
    live = F.obj(live, "live status")
    if live.get("unreadable"):
        raise Unreadable("", F.text(live, "unreadable", "live status") or "")
    source, parsed = "none", job_summary(None, "")
    if final is not None:
        source, parsed = "final", job_summary(final, "tune result")
    elif live.get("status") is not None:
        source, parsed = "live", job_summary(live["status"], "live status.status")
    summary = parsed["summary"]
    out = {"source": source, "job_name": summary["name"] or job["name"],
           "backend": job["backend"] or summary["backend"], "console_url": job["url"], "state": summary["state"],
           "sub_state": summary["sub_state"], "progress_percent": summary["progress_percent"],
           "completed_steps": summary["completed_steps"], "total_steps": summary["total_steps"],
           "tuned_model": summary["tuned_model"], "endpoint": summary["endpoint"],
           "continued_from": summary["continued_from"], "checkpoints": summary["checkpoints"],
           "loss": parsed["loss"], "validation": parsed["validation"], "latest_loss": summary["latest_loss"],
           "eta_seconds": F.number(live, "eta_seconds", "live status"),
           "checked_at": _when(F.number(live, "at", "live status")),
           "error": summary["error_message"] or F.text(live, "error", "live status"),
           "status_note": F.text(live, "not_fetched", "live status"),
           "describe": _describe(summary) if source != "none" else None}
    if source == "final" and out["state"] == "JOB_STATE_SUCCEEDED":
        out["progress_percent"] = 100.0
    return out


def _no_tuning(job: dict | None = None) -> dict:
    job = job or {}
    return {"source": "none", "job_name": job.get("name"), "backend": job.get("backend"), "console_url": None,
            "state": None, "sub_state": None, "progress_percent": None, "completed_steps": None, "total_steps": None,
            "tuned_model": None, "endpoint": None, "continued_from": None, "checkpoints": [], "loss": [],
            "validation": [], "latest_loss": None, "eta_seconds": None, "checked_at": None, "error": None,
            "status_note": None, "describe": None}


# ------------------------------------------------------------------------------------------------ evaluation
def _block(value, where: str) -> dict:
    """One model's summary: its metrics, per-tag metrics and error rate."""
    b = F.obj(value, where)
    per_tag = {}
    for tag, t in list(F.obj(b.get("per_tag"), f"{where}.per_tag").items())[:MAX_TAGS]:
        w = f"{where}.per_tag.{tag}"
        per_tag[str(tag)[:F.MAX_NAME]] = F.numbers(F.obj(t, w, required=True).get("metrics"), f"{w}.metrics")
    return {"metrics": F.numbers(b.get("metrics"), f"{where}.metrics"), "per_tag": per_tag,
            "error_rate": F.number(b, "error_rate", where)}


def _metric_block(block: Mapping | None) -> dict:
    m = (block or {}).get("metrics") or {}
    return {k: m.get(k) for k in SUMMARY_METRICS if m.get(k) is not None}


def _best_checkpoint(value, where: str) -> dict | None:
    if value is None:
        return None
    b = F.obj(value, where, required=True)
    scores = []
    for i, s in enumerate(F.items(b.get("scores"), f"{where}.scores")):
        w = f"{where}.scores[{i}]"
        s = F.obj(s, w, required=True)
        scores.append({"checkpoint_id": F.ident(s, "checkpoint_id", w), "score": F.number(s, "score", w)})
    return {"checkpoint_id": F.ident(b, "checkpoint_id", where), "metric": F.name(b, "metric", where) or "",
            "scores": scores}


def evaluation_view(rec: RunRecord) -> dict | None:
    value = rec.value("evaluate")
    if value is None:
        return None
    w = "evaluation"
    ev = F.obj(value, w, required=True)
    summary = F.obj(ev.get("summary"), f"{w}.summary")
    ch = _block(summary.get("challenger"), f"{w}.summary.challenger")
    cp = _block(summary["champion"], f"{w}.summary.champion") if summary.get("champion") is not None else None
    models = F.obj(ev.get("models"), f"{w}.models")
    models = {str(k): F.name(models, k, f"{w}.models") for k in list(models)[:10]}
    tags = sorted(set(ch["per_tag"]) | set((cp or {}).get("per_tag") or {}))[:MAX_TAGS]
    return {"n_prompts": F.integer(ev, "n_prompts", w), "models": models,
            "results_uri": F.name(ev, "results_uri", w),
            "challenger": _metric_block(ch), "champion": _metric_block(cp) if cp else None,
            "error_rate": {"challenger": ch["error_rate"], "champion": (cp or {}).get("error_rate")},
            "tags": tags,
            "per_tag": {t: {"challenger": ch["per_tag"].get(t) or {}, "champion": (cp or {"per_tag": {}})["per_tag"]
                            .get(t) or {}} for t in tags},
            "best_checkpoint": _best_checkpoint(ev.get("best_checkpoint"), f"{w}.best_checkpoint"),
            "champion_generation": F.integer(ev, "champion_generation", w)}


# ------------------------------------------------------------------------------------------------ gate, decision
def gate_view(rec: RunRecord) -> dict | None:
    """The gate's XCom: decision (one of :data:`GATE_DECISIONS`), summary and rules, checked."""
    value = rec.value("gate", "gate")
    if value is None:
        return None
    w = "gate"
    g = F.obj(value, w, required=True)
    decision = F.name(g, "decision", w, choices=GATE_DECISIONS)
    if decision is None:
        raise Unreadable(f"{w}.decision", "is missing")
    rules = []
    for i, r in enumerate(F.items(g.get("rules"), f"{w}.rules")):
        rw = f"{w}.rules[{i}]"
        r = F.obj(r, rw, required=True)
        details = F.plain(r.get("details"), f"{rw}.details")
        rules.append({"name": F.name(r, "name", rw) or "", "verdict": F.name(r, "verdict", rw),
                      "observed": F.plain(r.get("observed"), f"{rw}.observed"),
                      "threshold": F.plain(r.get("threshold"), f"{rw}.threshold"),
                      "reason": F.text(r, "reason", rw), "details": details})
    return {"decision": decision, "label": DECISION_LABELS[decision], "summary": F.text(g, "summary", w),
            "rules": rules, "policy_hash": F.name(g, "policy_hash", w), "verdict_id": F.name(g, "verdict_id", w)}


def primary_metric(gate: Mapping | None) -> str:
    for rule in (gate or {}).get("rules") or ():
        details = rule.get("details")
        if rule.get("name") == "champion_margin" and isinstance(details, dict):
            metric = details.get("metric")
            if metric and isinstance(metric, str):
                return metric
    for rule in (gate or {}).get("rules") or ():
        if str(rule.get("name", "")).startswith("threshold:"):
            return rule["name"].split(":", 1)[1]
    return DEFAULT_PRIMARY_METRIC


def decision_view(rec: RunRecord) -> dict | None:
    """What the run did about its candidate: promoted, deleted or rolled back (the first of them with an XCom)."""
    for role, action, where in (("promote", "promoted", "promotion"), ("delete", "deleted", "deletion"),
                                ("rollback", "rolled back", "rollback")):
        value = rec.value(role)
        if value is None:
            continue
        d = F.obj(value, where, required=True)
        if role == "delete":
            return {"action": action, "model": F.name(d, "tuned_model", where),
                    "model_deleted": F.flag(d, "model_deleted", where)}
        out = {"action": action, "status": F.name(d, "status", where),
               "model": F.name(F.obj(d.get("champion"), f"{where}.champion"), "tuned_model", f"{where}.champion")}
        if role == "rollback":
            out["rolled_back"] = F.name(d, "rolled_back", where)
        return out
    return None


def _params(rec: RunRecord) -> dict:
    return {k: F.plain(rec.conf.get(k), f"conf.{k}") for k in ("backend", "base_model", "epochs", "training_data",
                                                              "continue_from", "evaluate_checkpoints")
            if k in rec.conf}


def _gcs_prefix(rec: RunRecord) -> str | None:
    prefix = rec.conf.get("gcs_prefix")
    return prefix if isinstance(prefix, str) and ".." not in prefix and _PREFIX_URI.match(prefix) else None


# ------------------------------------------------------------------------------------------------ one run
def _steps(rec: RunRecord) -> list[dict]:
    steps = []
    for role in STEP_ORDER:
        for task_id in rec.tasks_of(role):
            info = rec.tasks[task_id]
            steps.append({"task_id": task_id, "role": role, "state": info.get("state"),
                          "try_number": info.get("try_number")})
    return steps


def run_view(rec: RunRecord, live: Mapping | None = None) -> dict:
    """Everything the run page shows (JSON-safe). Each section that cannot be read is empty and says why in
    ``unreadable``; nothing raises (an unexpected error is logged and shown as unreadable too)."""
    reasons: list[str] = []

    def section(fn, fallback):
        try:
            return fn()
        except Unreadable as exc:
            reasons.append(str(exc))
            return fallback

    try:
        job = section(lambda: _job(rec), {})
        gate = section(lambda: gate_view(rec), None)
        report = section(lambda: F.name(F.obj(rec.value("report"), "report"), "report_uri", "report"), None)
        view = {"dag_id": rec.dag_id, "run_id": rec.run_id, "state": rec.state, "start_date": rec.start_date,
                "end_date": rec.end_date, "run_after": rec.run_after,
                "pipeline": section(lambda: pipeline_key(rec), f"dag:{rec.dag_id}"), "gcs_prefix": _gcs_prefix(rec),
                "params": section(lambda: _params(rec), {}), "steps": _steps(rec),
                "tuning": section(lambda: tuning_view(rec, live), _no_tuning(job)),
                "evaluation": section(lambda: evaluation_view(rec), None),
                "gate": gate, "primary_metric": primary_metric(gate),
                "decision": section(lambda: decision_view(rec), None), "has_report": bool(report),
                "active": rec.state in ("running", "queued"), "restricted": False}
    except Exception as exc:  # a bug here must not take the page down for every run
        log.exception("could not build the view of run %s of %s", rec.run_id, rec.dag_id)
        view = restricted_view(rec)
        view.update(restricted=False, run_id=rec.run_id, steps=_steps(rec))
        reasons.append(f"internal error ({type(exc).__name__})")
    view["unreadable"] = "; ".join(dict.fromkeys(reasons))[:F.MAX_TEXT] or None
    return view


def restricted_view(rec: RunRecord) -> dict:
    """A run of a DAG whose XCom the caller may not read: its state and times (nothing XCom or conf holds)."""
    return {"dag_id": rec.dag_id, "run_id": None, "state": rec.state, "start_date": rec.start_date,
            "end_date": rec.end_date, "run_after": rec.run_after, "pipeline": f"dag:{rec.dag_id}", "gcs_prefix": None,
            "params": {}, "steps": None, "tuning": _no_tuning(), "evaluation": None, "gate": None,
            "primary_metric": DEFAULT_PRIMARY_METRIC, "decision": None, "has_report": False,
            "active": rec.state in ("running", "queued"), "restricted": True, "unreadable": None}


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
            "previous": F.name(previous, "tuned_model", f"{w}.previous")}


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
