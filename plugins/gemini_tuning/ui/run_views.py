"""The run page's view: every section of one run (tuning job, evaluation, gate, decision, steps) from its
:class:`~.records.RunRecord` and live status, each checked on its own (:func:`run_view`), or state and times only
for a DAG whose XCom the caller may not read (:func:`restricted_view`). Pure: no Airflow, no I/O. Re-exported by
:mod:`.views`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..core.constants import GATE_XCOM
from ..core.gcs_uri import gs_uri_matches
from ..core.states import JobStatus
from ..core.vocabulary import DEFAULT_PRIMARY_METRIC, SUMMARY_METRIC_NAMES
from . import fields as F
from .fields import Unreadable
from .records import _PREFIX_OBJECT, STEP_ORDER, RunRecord, _job, pipeline_key

#: the metrics of the run page's chart: everything a summary may hold, in the report's order (the gate's primary
#: metric may be any of them, e.g. ``contains`` or ``item_metric``: the chart must show what the gate decided on)
SUMMARY_METRICS = SUMMARY_METRIC_NAMES
#: the gate's decisions (``core.gate.DECISIONS``; a unit test checks they agree) and how the page says them
GATE_DECISIONS = ("promote", "delete", "no_decision")
DECISION_LABELS = {"promote": "promote", "delete": "delete", "no_decision": "no decision"}
MAX_TAGS = 100

log = logging.getLogger(__name__)


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
    out["substates"] = _substates(final) if source == "final" else []
    stats = F.obj(final, "tune result") if source == "final" else {}
    out.update(billable_tokens=F.integer(stats, "billable_tokens", "tune result"),
               dropped_count=F.integer(stats, "dropped_count", "tune result"),
               example_count=F.integer(stats, "example_count", "tune result"))
    return out


def _substates(final) -> list[dict]:
    """The Vertex sub-state timeline of the tune task's result (``[{"state", "since", "seconds"}]``): quota and
    capacity waits, dataset processing, tuning, post-processing, each with how long it lasted."""
    where = "tune result.substates"
    out = []
    for i, row in enumerate(F.items(F.obj(final, "tune result").get("substates"), where)):
        w = f"{where}[{i}]"
        row = F.obj(row, w, required=True)
        state = F.name(row, "state", w)
        since = F.number(row, "since", w)
        out.append({"state": (state or "").removeprefix("TUNING_JOB_STATE_"), "since": _when(since),
                    "seconds": F.number(row, "seconds", w)})
    return out


def _no_tuning(job: dict | None = None) -> dict:
    job = job or {}
    return {"source": "none", "job_name": job.get("name"), "backend": job.get("backend"), "console_url": None,
            "state": None, "sub_state": None, "progress_percent": None, "completed_steps": None, "total_steps": None,
            "tuned_model": None, "endpoint": None, "continued_from": None, "checkpoints": [], "loss": [],
            "validation": [], "latest_loss": None, "eta_seconds": None, "checked_at": None, "error": None,
            "status_note": None, "describe": None, "substates": [], "billable_tokens": None, "dropped_count": None,
            "example_count": None}


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
    value = rec.value("gate", GATE_XCOM)
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
    pw = f"{w}.pipeline"
    pipe = F.obj(g.get("pipeline"), pw)     # the reviewed pipeline file the run was built from (None: the open DAG)
    provenance = [(label, value) for label, value in (
        ("Pipeline", F.name(pipe, "id", pw)), ("Pipeline file", F.text(pipe, "file", pw)),
        ("File revision", F.name(pipe, "revision", pw)), ("Pipeline policy", F.name(pipe, "policy_hash", pw)),
        ("Verdict", F.name(g, "verdict_id", w)), ("Gate policy", F.name(g, "policy_hash", w))) if value]
    return {"decision": decision, "label": DECISION_LABELS[decision], "summary": F.text(g, "summary", w),
            "rules": rules, "policy_hash": F.name(g, "policy_hash", w), "verdict_id": F.name(g, "verdict_id", w),
            "provenance": provenance}


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
    return prefix if isinstance(prefix, str) and ".." not in prefix and gs_uri_matches(prefix, _PREFIX_OBJECT) \
        else None


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

