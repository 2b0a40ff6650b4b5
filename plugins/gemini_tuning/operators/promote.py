"""Promote the tuned model to champion, or delete it."""

from __future__ import annotations

from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from .base import GeminiBaseOperator, optional

CHAMPION_ASSET = Asset(name="gemini_tuning_champion")


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
            raise AirflowException(str(exc)) from exc
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

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("candidate", "pointer_uri", "project_id", "location")

    def __init__(self, *, candidate, pointer_uri: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.candidate = candidate
        self.pointer_uri = pointer_uri

    def execute(self, context):
        from ..services.champion import delete_candidate

        cand = self.candidate
        if not cand or not cand.get("tuned_model"):
            raise AirflowSkipException("no tuned model to delete")
        vertex = cand["backend"] == "vertex"
        result = delete_candidate(
            cand, storage_client=self.hook.storage(), pointer_uri=self.pointer_uri,
            registry=self.hook.registry(optional(self.project_id), self.location) if vertex else None,
            gemini_api=self.hook.gemini_api(optional(self.project_id)) if not vertex else None)
        self.log.info("deleted %s: %s", cand["tuned_model"], result)
        return result
