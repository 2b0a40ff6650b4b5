"""Promote the tuned model to champion (after a human's approval, optionally), or delete it."""

from __future__ import annotations

import json
from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from .base import GeminiBaseOperator, optional

CHAMPION_ASSET = Asset(name="gemini_tuning_champion")
#: XCom key with which promote tells the failure clean-up to keep the candidate (another run moved the champion)
KEEP_CANDIDATE = "gemini_tuning_keep_candidate"


class GeminiPromoteOperator(GeminiBaseOperator):
    """Makes the tuned model the champion: the GCS pointer first (compare-and-swap on the generation the evaluation
    saw), then the Vertex alias and labels (``services.champion.promote``). Emits an event on the Asset
    ``gemini_tuning_champion``. If another run promoted since the evaluation, fails without touching the registry.

    :param candidate: the tuning task's result (``backend``, ``tuned_model``, ``endpoint``) (templated).
    :param evaluation: the evaluation task's manifest: the pointer generation it compared against, the
        challenger's metrics kept in the pointer, and the checkpoint it chose (``best_checkpoint``; promoted as the
        version's ``defaultCheckpointId``) (templated).
    :param pointer_uri: ``gs://`` URI of the champion pointer (templated).
    :param alias: the Model Registry version alias of the champion.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("candidate", "evaluation", "pointer_uri", "project_id", "location")

    def __init__(self, *, candidate, evaluation, pointer_uri: str, alias: str = "champion", **kwargs):
        kwargs.setdefault("outlets", [CHAMPION_ASSET])
        super().__init__(**kwargs)
        self.candidate = candidate
        self.evaluation = evaluation
        self.pointer_uri = pointer_uri
        self.alias = alias

    def execute(self, context):
        from ..services.champion import ChampionChanged, promote

        cand = dict(self.candidate)
        best = (self.evaluation or {}).get("best_checkpoint")
        if best:  # the evaluated checkpoint is what gets promoted: it serves the champion, by default too
            cand.update(endpoint=best["endpoint"], checkpoint_id=best["checkpoint_id"])
            self.log.info("promoting checkpoint %s of %s (the best by %s)", best["checkpoint_id"],
                          cand["tuned_model"], best["metric"])
        registry = self.hook.registry(optional(self.project_id), self.location) \
            if cand["backend"] == "vertex" else None
        metrics = (self.evaluation.get("summary") or {}).get("challenger", {}).get("metrics")
        run = {"dag_id": context["ti"].dag_id, "run_id": context["ti"].run_id, "metrics": metrics}
        try:
            pointer = promote(self.hook.storage(), self.pointer_uri, cand,
                              expected_generation=int(self.evaluation.get("champion_generation") or 0),
                              registry=registry, run=run, alias=self.alias)
        except ChampionChanged as exc:
            # the candidate passed the gate (and maybe a human): keep it for a re-evaluation, do not let the
            # failure clean-up delete it
            context["ti"].xcom_push(key=KEEP_CANDIDATE, value=str(exc))
            raise AirflowException(f"{exc} The candidate is kept (not deleted).") from exc
        self.log.info("promoted %s to champion (pointer %s)", cand["tuned_model"], self.pointer_uri)
        context["outlet_events"][CHAMPION_ASSET].extra = {"tuned_model": cand["tuned_model"],
                                                          "endpoint": cand.get("endpoint"),
                                                          "checkpoint_id": cand.get("checkpoint_id"),
                                                          "pointer_uri": self.pointer_uri}
        return pointer


class GeminiDeleteTunedModelOperator(GeminiBaseOperator):
    """Deletes the tuned model (Vertex: undeploy, delete its endpoint and the model; Gemini API:
    ``tunedModels.delete``; ``services.champion.delete_candidate``). Idempotent; refuses the current champion.
    With no candidate (tuning never produced one) it skips.

    :param candidate: the tuning task's result (templated).
    :param pointer_uri: ``gs://`` URI of the champion pointer, checked so the champion is never deleted (templated).
    :param keep_if_task_ids: skip (keep the model) when one of these tasks left the ``gemini_tuning_keep_candidate``
        XCom: promote does when another run moved the champion after the gate (the failure clean-up passes
        ``["promote"]``).

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("candidate", "pointer_uri", "project_id", "location")

    def __init__(self, *, candidate, pointer_uri: str | None = None, keep_if_task_ids=(), **kwargs):
        super().__init__(**kwargs)
        self.candidate = candidate
        self.pointer_uri = pointer_uri
        self.keep_if_task_ids = tuple(keep_if_task_ids)

    def execute(self, context):
        from ..services.champion import delete_candidate

        cand = self.candidate
        if not cand or not cand.get("tuned_model"):
            raise AirflowSkipException("no tuned model to delete")
        for task_id in self.keep_if_task_ids:
            why = context["ti"].xcom_pull(task_ids=task_id, key=KEEP_CANDIDATE)
            if why:
                raise AirflowSkipException(f"keeping {cand['tuned_model']}: {task_id} asked to ({why})")
        vertex = cand["backend"] == "vertex"
        result = delete_candidate(
            cand, storage_client=self.hook.storage(), pointer_uri=self.pointer_uri,
            registry=self.hook.registry(optional(self.project_id), self.location) if vertex else None,
            gemini_api=self.hook.gemini_api(optional(self.project_id)) if not vertex else None)
        self.log.info("deleted %s: %s", cand["tuned_model"], result)
        return result


def _truthy(value) -> bool:
    """A templated boolean: ``True``/``"True"``/``"true"``/``1`` (Jinja renders a bool as text without native
    rendering)."""
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text if len(text) <= 160 else text[:157] + "..."
    return text.replace("|", "\\|").replace("\n", " ")


def approval_body(gate: dict | None, *, candidate: dict | None = None, report_url: str | None = None,
                  run_url: str | None = None, timeout_hours: float | None = None) -> str:
    """The Markdown the reviewer sees: the gate's decision and its rules one by one, the candidate, the links."""
    gate = gate or {}
    lines = [f"**Gate: {_cell(str(gate.get('decision', '?')).upper())}** — {_cell(gate.get('summary') or '')}", "",
             "| Rule | Verdict | Observed | Threshold | Reason |", "|---|---|---|---|---|"]
    for rule in gate.get("rules") or ():
        lines.append(f"| {_cell(rule.get('name'))} | {_cell(str(rule.get('verdict', '')).upper())} | "
                     f"{_cell(rule.get('observed'))} | {_cell(rule.get('threshold'))} | {_cell(rule.get('reason'))} |")
    lines.append("")
    if candidate and candidate.get("tuned_model"):
        lines.append(f"Candidate: `{candidate['tuned_model']}`")
        lines.append("")
    links = [f"[report]({report_url})" if report_url else None, f"[run page]({run_url})" if run_url else None]
    if any(links):
        lines += [" · ".join(x for x in links if x), ""]
    wait = f" or no answer within {timeout_hours:g} h" if timeout_hours else ""
    lines.append(f"**Approve** promotes the candidate to champion; **Reject**{wait} deletes it.")
    return "\n".join(lines)


class GeminiApprovalOperator(ApprovalOperator):
    """A human approves (or rejects) the promotion the gate decided: the standard provider's ``ApprovalOperator``
    between the gate's promote branch and the promote task. Its body shows the gate's rules one by one and links
    to the run's report (and run page) through the api-server.

    A branch of its own: **Approve** follows ``promote_task_id`` and skips ``reject_task_id``; **Reject** (and a
    timeout: the default answer is Reject) follows ``reject_task_id`` (a delete task) and skips the promotion.
    With ``required`` false it does not wait at all: it answers Approve itself, so the DAG's shape stays the same
    whether approval is required or not. Returns (XCom) ``{"approved", "required", "chosen", "responded_by",
    "responded_at", "timed_out"}``.

    On Airflow 3.3 the task waits in the ``awaiting_input`` state (no worker slot, no triggerer); approve with
    ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails``
    ``{"chosen_options": ["Approve"]}`` or from the UI's "Required actions".

    :param gate: the gate's decision (XCom key ``gate``) (templated).
    :param required: whether a human must answer (templated: a DAG Param).
    :param candidate: the tuning task's result, to name the model in the body (templated; optional).
    :param timeout_hours: how long to wait for an answer (templated; empty: no limit). Sets ``response_timeout``.
    :param promote_task_id: followed on Approve.
    :param reject_task_id: followed on Reject or timeout.
    :param report_path: the report's path on the api-server (templated); made absolute with ``[api] base_url``.
    :param run_path: the run page's path on the api-server (templated).
    """

    template_fields = (*ApprovalOperator.template_fields, "gate", "required", "candidate", "timeout_hours",
                       "report_path", "run_path")

    def __init__(self, *, gate, required=True, candidate=None, timeout_hours=None, promote_task_id: str = "promote",
                 reject_task_id: str = "delete_rejected",
                 report_path: str = "/gemini-tuning/report/{{ dag.dag_id | urlencode }}/{{ run_id | urlencode }}",
                 run_path: str = "/gemini-tuning/runs/{{ dag.dag_id | urlencode }}/{{ run_id | urlencode }}",
                 subject: str = "Promote the tuned model of {{ run_id }}?", **kwargs):
        kwargs.setdefault("defaults", ApprovalOperator.REJECT)   # a timeout answers Reject: no promotion, deleted
        super().__init__(subject=subject, **kwargs)
        self.gate = gate
        self.required = required
        self.candidate = candidate
        self.timeout_hours = timeout_hours
        self.promote_task_id = promote_task_id
        self.reject_task_id = reject_task_id
        self.report_path = report_path
        self.run_path = run_path

    @staticmethod
    def _absolute(path: str | None) -> str | None:
        from airflow.configuration import conf

        if not path:
            return None
        base = (conf.get("api", "base_url", fallback=None) or "").rstrip("/")
        return f"{base}{path}" if base and path.startswith("/") else path

    def execute(self, context):
        ti = context["ti"]
        if not _truthy(self.required):
            self.log.info("approval not required: following %s", self.promote_task_id)
            ti.xcom_push(key="return_value", value={"approved": True, "required": False, "chosen": self.APPROVE,
                                                    "responded_by": None, "responded_at": None, "timed_out": False})
            self.skip_all_except(ti, self.promote_task_id)
            return None
        hours = optional(self.timeout_hours, float)
        self.response_timeout = timedelta(hours=hours) if hours else None
        self.body = approval_body(self.gate, candidate=self.candidate, report_url=self._absolute(self.report_path),
                                  run_url=self._absolute(self.run_path), timeout_hours=hours)
        return super().execute(context)

    def execute_complete(self, context, event):
        ret = HITLOperator.execute_complete(self, context=context, event=event)   # not Approval's skip-all
        chosen = ret["chosen_options"][0]
        approved = chosen == self.APPROVE
        self.hitl_summary_extra["approved"] = approved
        at = ret.get("responded_at")
        result = {"approved": approved, "required": True, "chosen": chosen,
                  "responded_by": ret.get("responded_by_user"),
                  "responded_at": at.isoformat() if hasattr(at, "isoformat") else at,
                  "timed_out": bool(event.get("timedout"))}
        self.log.info("%s%s: following %s", chosen, " (the default, on timeout)" if result["timed_out"] else "",
                      self.promote_task_id if approved else self.reject_task_id)
        context["ti"].xcom_push(key="return_value", value=result)
        self.skip_all_except(context["ti"], self.promote_task_id if approved else self.reject_task_id)
        return result
