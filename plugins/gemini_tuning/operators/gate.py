"""Gate the evaluation: the promotion gate's decision, written as the verdict record, chooses the branch."""

from __future__ import annotations

from airflow.providers.standard.operators.branch import BaseBranchOperator

from ..core.constants import GATE_XCOM
from .base import GeminiBaseOperator, optional


class GeminiGateOperator(GeminiBaseOperator, BaseBranchOperator):
    """Applies the promotion gate (``core.gate.decide``) to the evaluation, writes the **verdict record**
    (``core.verdict``: the decision, the candidate model version and checkpoint, the champion pointer generation it
    was compared with, the policy and its hash) to ``verdict_uri``, and follows ``promote_task_ids`` or
    ``delete_task_id`` (``services.evaluation.gate_evaluation``). The decision with every rule's value and verdict
    also goes to XCom (key ``gate``, with ``verdict_id`` and ``verdict_uri``).

    **No decision** (too few scored prompts, or the generation service or the judge failed more often than
    ``max_error_rate``) is not a verdict on the model: the record says ``no_decision``, the task fails (no retry)
    and the candidate is kept, so the evaluation can be rerun (clear ``evaluate``) once the service is back.

    :param evaluation: the evaluation task's manifest (templated).
    :param candidate: the tuning task's result (templated): the verdict names its model version and checkpoint
        (the evaluation's chosen checkpoint, when it scored every checkpoint).
    :param gate_config: ``core.gate.GateConfig`` fields (templated; values may be templated strings). The
        resolved configuration is the *policy* the verdict records (and hashes).
    :param verdict_uri: ``gs://`` URI of the verdict record (templated); default ``verdict.json`` beside the
        results.
    :param promote_task_ids: the branch(es) to follow when the challenger wins.
    :param delete_task_id: the branch to follow when it loses.
    :param pipeline: the reviewed pipeline file this DAG was built from (``id``, ``file``, ``revision``,
        ``policy_hash``; set by the pipeline factory, ``dags/gemini_tuning_pipelines.py``): recorded in the verdict
        and the report.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("evaluation", "candidate", "gate_config", "verdict_uri")

    def __init__(self, *, evaluation, candidate=None, gate_config: dict | None = None, verdict_uri: str | None = None,
                 promote_task_ids: str | list[str] = "promote", delete_task_id: str = "delete",
                 pipeline: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.evaluation = evaluation
        self.candidate = candidate
        self.gate_config = gate_config or {}
        self.verdict_uri = verdict_uri
        self.promote_task_ids = [promote_task_ids] if isinstance(promote_task_ids, str) else list(promote_task_ids)
        self.delete_task_id = delete_task_id
        self.pipeline = pipeline

    def choose_branch(self, context):
        from airflow.sdk.exceptions import AirflowFailException

        from ..core.verdict import NO_DECISION
        from ..services.evaluation import gate_evaluation

        ev = self.evaluation
        if not isinstance(ev, dict) or not ev.get("results_uri"):
            raise AirflowFailException(f"no evaluation to gate (the evaluate step's result: {ev!r:.200})")
        ti = context["ti"]
        # without the tuning result (the operator used on its own) the verdict names the evaluated challenger
        gated = gate_evaluation(self.hook.storage(), ev, candidate=self.candidate, gate_config=self.gate_config,
                                verdict_uri=optional(self.verdict_uri), dag_id=ti.dag_id, run_id=ti.run_id,
                                pipeline=self.pipeline)
        ti.xcom_push(key=GATE_XCOM, value=gated.result)
        decision = gated.decision
        if decision.decision == NO_DECISION:
            raise AirflowFailException(f"{decision.summary}. Candidate {gated.verdict['candidate']['tuned_model']} "
                                       "is kept (not deleted, not promoted); clear the evaluate task to rerun the "
                                       "evaluation")
        return self.promote_task_ids if decision.promote else self.delete_task_id
