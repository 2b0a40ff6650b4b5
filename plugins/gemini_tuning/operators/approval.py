"""The human approval between the gate's promote branch and the promotion, bound to the gate's verdict record."""

from __future__ import annotations

import json
from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.exceptions import AirflowFailException

from ..core.constants import UI_PREFIX
from ..core.templated import parse_bool
from ..services.evaluation import read_verdict
from .base import optional


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
    :param required: whether a human must answer (templated: a DAG Param; ``core.templated.parse_bool``'s words,
        empty means True, any other value fails the task).
    :param candidate: the tuning task's result, to name the model in the body (templated; optional).
    :param timeout_hours: how long to wait for an answer (templated; empty: no limit). Sets ``response_timeout``.
    :param promote_task_id: followed on Approve.
    :param reject_task_id: followed on Reject or timeout.
    :param report_path: the report's path on the api-server (templated); made absolute with ``[api] base_url``.
    :param run_path: the run page's path on the api-server (templated).
    :param subject: the question's title in the UI (templated, as ``ApprovalOperator``'s).
    :param gcp_conn_id: the Google Cloud connection that reads the verdict record.
    :param impersonation_chain: a service account, or a chain of them, to impersonate for that read.
    """

    template_fields = (*ApprovalOperator.template_fields, "verdict_uri", "gate", "required", "candidate",
                       "timeout_hours", "report_path", "run_path")
    ASKED_XCOM = "gemini_tuning_verdict_asked"

    def __init__(self, *, verdict_uri: str, gate=None, required=True, candidate=None, timeout_hours=None,
                 promote_task_id: str = "promote", reject_task_id: str = "delete_rejected",
                 report_path: str = UI_PREFIX + "/report/{{ dag.dag_id | urlencode }}/{{ run_id | urlencode }}",
                 run_path: str = UI_PREFIX + "/runs/{{ dag.dag_id | urlencode }}/{{ run_id | urlencode }}",
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
        try:   # core.templated's words; empty: required (ask a human); a typo fails, it never skips the human
            required = parse_bool(self.required, "required", default=True)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        if not required:
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
