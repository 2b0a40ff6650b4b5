"""Promote the tuned model to champion (after a human's approval, optionally: ``operators.approval``), or delete it.

Every step here acts on a candidate only with the gate's verdict record (``core.verdict``) in hand, checked where
it acts: promote needs a ``promote`` verdict about exactly this candidate, champion generation and policy (and an
approval bound to it); the deletes need a ``delete`` verdict or a rejection bound to a ``promote`` verdict.
"""

from __future__ import annotations

from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ..services.evaluation import read_verdict
from .base import GeminiBaseOperator, optional

CHAMPION_ASSET = Asset(name="gemini_tuning_champion")


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
    :param pipeline: the reviewed pipeline file this DAG was built from (``id``, ``revision``, ``policy_hash``);
        the verdict must name the same (set by the pipeline factory). None: not compared.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("candidate", "evaluation", "pointer_uri", "verdict_uri", "gate_config", "project_id",
                       "location")

    def __init__(self, *, candidate, evaluation, pointer_uri: str, verdict_uri: str, gate_config: dict | None = None,
                 approval_task_id: str | None = None, alias: str = "champion", pipeline: dict | None = None,
                 **kwargs):
        kwargs.setdefault("outlets", [CHAMPION_ASSET])
        super().__init__(**kwargs)
        self.candidate = candidate
        self.evaluation = evaluation
        self.pointer_uri = pointer_uri
        self.verdict_uri = verdict_uri
        self.gate_config = gate_config
        self.approval_task_id = approval_task_id
        self.alias = alias
        self.pipeline = pipeline

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
                approval_required=bool(self.approval_task_id), pipeline=self.pipeline)
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
        metrics = ((ev.get("summary") or {}).get("challenger") or {}).get("metrics")
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


def __getattr__(name: str):
    """The approval operator's old home: ``from gemini_tuning.operators.promote import GeminiApprovalOperator``
    still works (imported on first use, so a promote task does not load the HITL operator)."""
    if name == "GeminiApprovalOperator":
        from .approval import GeminiApprovalOperator

        return GeminiApprovalOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
