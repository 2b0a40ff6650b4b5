"""What the UI knows about one DAG run (:class:`RunRecord`: its task instances with their operator class, and the
XComs of this package's operators), and the names a run carries, checked: the champion pointer it belongs to
(:func:`pointer_uri_of`, :func:`pipeline_key`) and the tuning job to ask a live status about (:func:`live_job`,
:func:`job_ref`). Pure: no Airflow, no I/O; nothing read is trusted (:mod:`.fields`). Re-exported by :mod:`.views`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.constants import GATE_XCOM, JOB_XCOM
from ..core.gcs_uri import gs_uri_matches
from ..core.tuning import BACKENDS
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
XCOM_KEYS = ("return_value", GATE_XCOM, JOB_XCOM)
#: where a "tuning job in the console" link may point (the backends' ``console_url``); any other URL is not linked
CONSOLE_PREFIXES = ("https://console.cloud.google.com/", "https://aistudio.google.com/")
ACTIVE_TASK_STATES = ("running", "deferred", "up_for_retry", "queued", "scheduled")
#: the object name of a champion pointer (or a prefix it is derived from) named by XCom or conf: gs://BUCKET/…/NAME.json
#: (the bucket and the URI itself: ``core.gcs_uri``)
_POINTER_OBJECT = re.compile(r"[^\s?#\x00-\x1f]{1,900}\.json")
_PREFIX_OBJECT = re.compile(r"[^\s?#\x00-\x1f]{0,900}")


@dataclass
class RunRecord:
    """One DAG run as the UI reads it (built by ``ui.data``); nothing in it is trusted (:mod:`.fields`).

    :param dag_id: the run's DAG.
    :param run_id: the run's id.
    :param state: the run's state (``running``, ``success``, …); None when not set.
    :param start_date: when the run started, ISO 8601; None: not started.
    :param end_date: when the run ended, ISO 8601; None: not ended.
    :param run_after: the run's ``run_after``, ISO 8601 (the runs are listed newest first by it).
    :param conf: the run's conf ({} when none, or not an object).
    :param tasks: task_id -> ``{"operator", "state", "try_number"}`` of its task instances.
    :param xcom: (task_id, key) -> value of this package's operators' XComs (:data:`XCOM_KEYS`).
    """

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
    if not isinstance(value, str) or ".." in value or not gs_uri_matches(value, _POINTER_OBJECT):
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

