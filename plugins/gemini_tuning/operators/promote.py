"""Promote the tuned model to champion (after a human's approval, optionally), or delete it.

Every step here acts on a candidate only with the gate's verdict record (``core.verdict``) in hand, checked where
it acts: promote needs a ``promote`` verdict about exactly this candidate, champion generation and policy (and an
approval bound to it); the deletes need a ``delete`` verdict or a rejection bound to a ``promote`` verdict.
"""

from __future__ import annotations

import json
from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from .base import GeminiBaseOperator, optional

CHAMPION_ASSET = Asset(name="gemini_tuning_champion")


def read_verdict(storage, uri: str | None):
    """The verdict record at ``uri`` (None when absent or no URI)."""
    from ..backends import gcs

    if not optional(uri):
        return None
    obj, _ = gcs.read_json(storage, uri)
    return obj


class GeminiPromoteOperator(GeminiBaseOperator):
    """Makes the tuned model the champion: the GCS pointer first (compare-and-swap on the generation the evaluation
    saw), then the Vertex alias and labels (``services.champion.promote``). Emits an event on the Asset
    ``gemini_tuning_champion``. If another run promoted since the evaluation, fails without touching the registry.

    Refuses (``AirflowFailException``: no retry, nothing written) unless the verdict record at ``verdict_uri``
    exists, is this run's, says ``promote``, names exactly the candidate (model version and checkpoint) and the
    champion pointer generation this task is about to swap, was judged under ``gate_config``, and (with
    ``approval_task_id``) was approved by that task for that very verdict (``core.verdict.check_promotion``).

    :param candidate: the tuning task's result (``backend``, ``tuned_model``, ``endpoint``) (templated).
    :param evaluation: the evaluation task's manifest: the pointer generation it compared against, the
        challenger's metrics kept in the pointer, and the checkpoint it chose (``best_checkpoint``; promoted as the
        version's ``defaultCheckpointId``) (templated).
    :param pointer_uri: ``gs://`` URI of the champion pointer (templated).
    :param verdict_uri: ``gs://`` URI of the gate's verdict record (templated). Required.
    :param gate_config: the gate configuration the verdict must have been judged under (the same mapping the gate
        was given; templated). Empty: the verdict's own policy is not compared.
    :param approval_task_id: the approval task whose result must approve this verdict; None: no approval step.
    :param alias: the Model Registry version alias of the champion.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("candidate", "evaluation", "pointer_uri", "verdict_uri", "gate_config", "project_id",
                       "location")

    def __init__(self, *, candidate, evaluation, pointer_uri: str, verdict_uri: str, gate_config: dict | None = None,
                 approval_task_id: str | None = None, alias: str = "champion", **kwargs):
        kwargs.setdefault("outlets", [CHAMPION_ASSET])
        super().__init__(**kwargs)
        self.candidate = candidate
        self.evaluation = evaluation
        self.pointer_uri = pointer_uri
        self.verdict_uri = verdict_uri
        self.gate_config = gate_config
        self.approval_task_id = approval_task_id
        self.alias = alias

    def check_verdict(self, context, storage) -> tuple[dict, dict]:
        """The candidate to promote and the verdict that allows it; ``AirflowFailException`` otherwise."""
        from ..core.gate import GateConfig
        from ..core.verdict import VerdictRefused, check_promotion, promotion_candidate

        ti = context["ti"]
        evaluation = self.evaluation if isinstance(self.evaluation, dict) else {}
        try:
            cand = promotion_candidate(self.candidate, evaluation)
            policy = GateConfig.from_dict(self.gate_config).to_dict() if self.gate_config else None
            verdict = check_promotion(
                read_verdict(storage, self.verdict_uri), candidate=cand,
                champion_generation=int(evaluation.get("champion_generation") or 0), policy=policy,
                dag_id=ti.dag_id, run_id=ti.run_id, where=str(self.verdict_uri),
                approval=ti.xcom_pull(task_ids=self.approval_task_id) if self.approval_task_id else None,
                approval_required=bool(self.approval_task_id))
        except (VerdictRefused, ValueError) as exc:
            raise AirflowFailException(f"not promoting: {exc}") from exc
        return cand, verdict

    def execute(self, context):
        from ..services.champion import ChampionChanged, promote

        storage = self.hook.storage()
        cand, verdict = self.check_verdict(context, storage)
        self.log.info("verdict %s (%s, policy %s) allows promoting %s%s", verdict["verdict_id"],
                      verdict["decided_at"], verdict["policy_hash"], cand["tuned_model"],
                      f" checkpoint {cand['checkpoint_id']}" if cand.get("checkpoint_id") else "")
        registry = self.hook.registry(optional(self.project_id), self.location) \
            if cand["backend"] == "vertex" else None
        ev = self.evaluation if isinstance(self.evaluation, dict) else {}
        metrics = (ev.get("summary") or {}).get("challenger", {}).get("metrics")
        run = {"dag_id": context["ti"].dag_id, "run_id": context["ti"].run_id, "metrics": metrics,
               "verdict_id": verdict["verdict_id"], "policy_hash": verdict["policy_hash"]}
        try:
            pointer = promote(storage, self.pointer_uri, cand,
                              # the generation the verdict was judged against (checked equal to the evaluation's)
                              expected_generation=verdict["champion"]["generation"],
                              registry=registry, run=run, alias=self.alias)
        except ChampionChanged as exc:
            # the candidate passed the gate (and maybe a human): it is kept (the deletes need a delete verdict or
            # a rejection) for a re-evaluation against the new champion
            raise AirflowFailException(f"{exc} The candidate is kept (not deleted).") from exc
        self.log.info("promoted %s to champion (pointer %s)", cand["tuned_model"], self.pointer_uri)
        context["outlet_events"][CHAMPION_ASSET].extra = {"tuned_model": cand["tuned_model"],
                                                          "endpoint": cand.get("endpoint"),
                                                          "checkpoint_id": cand.get("checkpoint_id"),
                                                          "pointer_uri": self.pointer_uri,
                                                          "verdict_id": verdict["verdict_id"]}
        return pointer


class GeminiDeleteTunedModelOperator(GeminiBaseOperator):
    """Deletes the tuned model (Vertex: undeploy, delete its endpoint and the model; Gemini API:
    ``tunedModels.delete``; ``services.champion.delete_candidate``). Idempotent; refuses the current champion and
    the pointer's previous champion (the rollback target). With no candidate (tuning never produced one) it skips.

    With ``verdict_uri`` it deletes only a doomed candidate (``core.verdict.check_deletion``): a ``delete`` verdict
    about it (``"delete"`` in ``delete_on``), or a ``promote`` verdict about it that the approval step rejected,
    bound to that verdict (``"reject"`` in ``delete_on``). Any other case (no verdict, no decision, a promote
    verdict) **skips and keeps the model**, saying why.

    :param candidate: the tuning task's result (templated).
    :param pointer_uri: ``gs://`` URI of the champion pointer, checked so the champion is never deleted (templated).
    :param verdict_uri: ``gs://`` URI of the gate's verdict record (templated); None: no verdict check (the
        operator used on its own).
    :param delete_on: which doom this task acts on: ``("delete",)``, ``("reject",)`` or both.
    :param approval_task_id: the approval task whose rejection counts (``"reject"`` in ``delete_on``).
    :param skip_if_done_by: skip when one of these tasks already deleted the candidate (its result says so).

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("candidate", "pointer_uri", "verdict_uri", "project_id", "location")

    def __init__(self, *, candidate, pointer_uri: str | None = None, verdict_uri: str | None = None,
                 delete_on=("delete",), approval_task_id: str | None = None, skip_if_done_by=(), **kwargs):
        super().__init__(**kwargs)
        self.candidate = candidate
        self.pointer_uri = pointer_uri
        self.verdict_uri = verdict_uri
        self.delete_on = tuple(delete_on)
        self.approval_task_id = approval_task_id
        self.skip_if_done_by = tuple(skip_if_done_by)

    def execute(self, context):
        from ..core.verdict import VerdictRefused, check_deletion
        from ..services.champion import delete_candidate

        cand = self.candidate
        if not isinstance(cand, dict) or not cand.get("tuned_model"):
            raise AirflowSkipException("no tuned model to delete")
        ti = context["ti"]
        for task_id in self.skip_if_done_by:
            done = ti.xcom_pull(task_ids=task_id)
            if isinstance(done, dict) and done.get("tuned_model") == cand["tuned_model"] \
                    and (done.get("model_deleted") or done.get("already_gone")):
                raise AirflowSkipException(f"{cand['tuned_model']} was already deleted by {task_id}")
        storage = self.hook.storage()
        if optional(self.verdict_uri):
            try:
                why = check_deletion(read_verdict(storage, self.verdict_uri), candidate=cand, dag_id=ti.dag_id,
                                     run_id=ti.run_id, where=self.verdict_uri, allowed=self.delete_on,
                                     approval=ti.xcom_pull(task_ids=self.approval_task_id)
                                     if self.approval_task_id else None)
            except VerdictRefused as exc:
                msg = str(exc) if str(exc).startswith("keeping") else f"keeping {cand['tuned_model']}: {exc}"
                raise AirflowSkipException(msg) from exc
            self.log.info("deleting %s: %s", cand["tuned_model"],
                          "the gate's verdict is DELETE" if why == "delete" else "the approval rejected it")
        vertex = cand["backend"] == "vertex"
        result = delete_candidate(
            cand, storage_client=storage, pointer_uri=self.pointer_uri,
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
    """The Markdown the reviewer sees: the gate's decision and its rules one by one, the candidate, the verdict and
    policy it is bound to, the links. ``gate``: the verdict record (or the gate's XCom)."""
    gate = gate or {}
    lines = [f"**Gate: {_cell(str(gate.get('decision', '?')).upper())}** — {_cell(gate.get('summary') or '')}", "",
             "| Rule | Verdict | Observed | Threshold | Reason |", "|---|---|---|---|---|"]
    for rule in gate.get("rules") or ():
        lines.append(f"| {_cell(rule.get('name'))} | {_cell(str(rule.get('verdict', '')).upper())} | "
                     f"{_cell(rule.get('observed'))} | {_cell(rule.get('threshold'))} | {_cell(rule.get('reason'))} |")
    lines.append("")
    judged = gate.get("candidate") or {}
    name = judged.get("tuned_model") or (candidate or {}).get("tuned_model")
    if name:
        ckpt = judged.get("checkpoint_id")
        lines.append(f"Candidate: `{_cell(name)}`" + (f", checkpoint `{_cell(ckpt)}`" if ckpt else ""))
        lines.append("")
    if gate.get("verdict_id"):
        champ = gate.get("champion") or {}
        lines.append(f"Verdict `{_cell(gate['verdict_id'])}` (policy `{_cell(gate.get('policy_hash'))}`), against "
                     f"champion `{_cell(champ.get('tuned_model') or 'none')}` (pointer generation "
                     f"{_cell(champ.get('generation'))}). Your answer applies to this verdict only.")
        lines.append("")
    links = [f"[report]({report_url})" if report_url else None, f"[run page]({run_url})" if run_url else None]
    if any(links):
        lines += [" · ".join(x for x in links if x), ""]
    wait = f" or no answer within {timeout_hours:g} h" if timeout_hours else ""
    lines.append(f"**Approve** promotes the candidate to champion; **Reject**{wait} deletes it.")
    return "\n".join(lines)


class GeminiApprovalOperator(ApprovalOperator):
    """A human approves (or rejects) the promotion the gate decided: the standard provider's ``ApprovalOperator``
    between the gate's promote branch and the promote task. Its body shows the gate's rules one by one, the verdict
    and policy it is bound to, and links to the run's report (and run page) through the api-server.

    It acts only on a **promote verdict** (``core.verdict``, read from ``verdict_uri``): without one (no record, a
    delete or no-decision verdict, another run's record) it fails (``AirflowFailException``) and never approves,
    not even automatically. The answer is **bound to the verdict** it was asked about (``verdict_id`` in the
    result): if the verdict changed while it waited (the gate ran again), the answer is refused and the task fails;
    clear it to ask again. Promote and the rejection's delete check that binding too.

    A branch of its own: **Approve** follows ``promote_task_id`` and skips ``reject_task_id``; **Reject** (and a
    timeout: the default answer is Reject) follows ``reject_task_id`` (a delete task) and skips the promotion.
    With ``required`` false it does not wait at all: it answers Approve itself (for a promote verdict only), so the
    DAG's shape stays the same whether approval is required or not. Returns (XCom) ``{"approved", "required",
    "chosen", "responded_by", "responded_at", "timed_out", "verdict_id"}``.

    On Airflow 3.3 the task waits in the ``awaiting_input`` state (no worker slot, no triggerer); approve with
    ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails``
    ``{"chosen_options": ["Approve"]}`` or from the UI's "Required actions".

    :param verdict_uri: ``gs://`` URI of the gate's verdict record (templated). Required.
    :param gate: the gate's decision (XCom key ``gate``) (templated; optional: the body is built from the verdict).
    :param required: whether a human must answer (templated: a DAG Param).
    :param candidate: the tuning task's result, to name the model in the body (templated; optional).
    :param timeout_hours: how long to wait for an answer (templated; empty: no limit). Sets ``response_timeout``.
    :param promote_task_id: followed on Approve.
    :param reject_task_id: followed on Reject or timeout.
    :param report_path: the report's path on the api-server (templated); made absolute with ``[api] base_url``.
    :param run_path: the run page's path on the api-server (templated).
    :param gcp_conn_id: the Google Cloud connection that reads the verdict record.
    :param impersonation_chain: a service account, or a chain of them, to impersonate for that read.
    """

    template_fields = (*ApprovalOperator.template_fields, "verdict_uri", "gate", "required", "candidate",
                       "timeout_hours", "report_path", "run_path")
    ASKED_XCOM = "gemini_tuning_verdict_asked"

    def __init__(self, *, verdict_uri: str, gate=None, required=True, candidate=None, timeout_hours=None,
                 promote_task_id: str = "promote", reject_task_id: str = "delete_rejected",
                 report_path: str = "/gemini-tuning/report/{{ dag.dag_id | urlencode }}/{{ run_id | urlencode }}",
                 run_path: str = "/gemini-tuning/runs/{{ dag.dag_id | urlencode }}/{{ run_id | urlencode }}",
                 subject: str = "Promote the tuned model of {{ run_id }}?",
                 gcp_conn_id: str = "google_cloud_default", impersonation_chain=None, **kwargs):
        kwargs.setdefault("defaults", ApprovalOperator.REJECT)   # a timeout answers Reject: no promotion, deleted
        super().__init__(subject=subject, **kwargs)
        self.verdict_uri = verdict_uri
        self.gate = gate
        self.required = required
        self.candidate = candidate
        self.timeout_hours = timeout_hours
        self.promote_task_id = promote_task_id
        self.reject_task_id = reject_task_id
        self.report_path = report_path
        self.run_path = run_path
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain

    @staticmethod
    def _absolute(path: str | None) -> str | None:
        from airflow.configuration import conf

        if not path:
            return None
        base = (conf.get("api", "base_url", fallback=None) or "").rstrip("/")
        return f"{base}{path}" if base and path.startswith("/") else path

    def _verdict(self, context) -> dict:
        """This run's promote verdict, or ``AirflowFailException``."""
        from ..core.verdict import VerdictRefused, check_promote_verdict
        from ..hooks import GeminiTuningHook

        storage = GeminiTuningHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain).storage()
        ti = context["ti"]
        try:
            return check_promote_verdict(read_verdict(storage, self.verdict_uri), dag_id=ti.dag_id,
                                         run_id=ti.run_id, where=str(self.verdict_uri))
        except VerdictRefused as exc:
            raise AirflowFailException(f"no approval without a promote verdict: {exc}") from exc

    def execute(self, context):
        ti = context["ti"]
        verdict = self._verdict(context)
        if not _truthy(self.required):
            self.log.info("approval not required: verdict %s says promote; following %s", verdict["verdict_id"],
                          self.promote_task_id)
            ti.xcom_push(key="return_value", value={"approved": True, "required": False, "chosen": self.APPROVE,
                                                    "responded_by": None, "responded_at": None, "timed_out": False,
                                                    "verdict_id": verdict["verdict_id"]})
            self.skip_all_except(ti, self.promote_task_id)
            return None
        hours = optional(self.timeout_hours, float)
        self.response_timeout = timedelta(hours=hours) if hours else None
        self.body = approval_body(verdict, candidate=self.candidate, report_url=self._absolute(self.report_path),
                                  run_url=self._absolute(self.run_path), timeout_hours=hours)
        ti.xcom_push(key=self.ASKED_XCOM, value=verdict["verdict_id"])
        self.log.info("asking for approval of verdict %s (policy %s)", verdict["verdict_id"], verdict["policy_hash"])
        return super().execute(context)

    def execute_complete(self, context, event):
        ret = HITLOperator.execute_complete(self, context=context, event=event)   # not Approval's skip-all
        chosen = ret["chosen_options"][0]
        approved = chosen == self.APPROVE
        ti = context["ti"]
        asked = ti.xcom_pull(task_ids=self.task_id, key=self.ASKED_XCOM)
        verdict = self._verdict(context) if approved else None
        if approved and verdict["verdict_id"] != asked:
            raise AirflowFailException(
                f"the approval was given for verdict {asked}, but the verdict is now {verdict['verdict_id']} "
                f"({verdict['decided_at']}; candidate {verdict['candidate'].get('tuned_model')}, policy "
                f"{verdict['policy_hash']}): not promoting on an answer to another question. Clear this task to ask "
                "again")
        self.hitl_summary_extra["approved"] = approved
        at = ret.get("responded_at")
        result = {"approved": approved, "required": True, "chosen": chosen,
                  "responded_by": ret.get("responded_by_user"),
                  "responded_at": at.isoformat() if hasattr(at, "isoformat") else at,
                  "timed_out": bool(event.get("timedout")), "verdict_id": asked}
        self.log.info("%s%s for verdict %s: following %s", chosen,
                      " (the default, on timeout)" if result["timed_out"] else "", asked,
                      self.promote_task_id if approved else self.reject_task_id)
        ti.xcom_push(key="return_value", value=result)
        self.skip_all_except(ti, self.promote_task_id if approved else self.reject_task_id)
        return result
