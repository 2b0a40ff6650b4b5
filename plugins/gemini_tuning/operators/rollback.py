"""Restore the previous champion."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from .base import GeminiBaseOperator, optional
from .promote import CHAMPION_ASSET


class GeminiRollbackOperator(GeminiBaseOperator):
    """Makes the champion pointer's ``previous`` model the champion again (``services.champion.rollback``): the
    pointer first (compare-and-swap on its generation; the new pointer is marked ``"via": "rollback"`` and keeps the
    rolled-back champion as its ``previous``), then the Vertex alias and labels. The rolled-back model is kept,
    labelled retired. Emits an event on the Asset ``gemini_tuning_champion``. Idempotent on retry.

    Fails without retrying (``AirflowFailException``) when the pointer moved while it worked (a promotion won the
    race: look again before rolling back), when ``to`` is not the pointer's previous champion, or when there is
    nothing to roll back to.

    :param pointer_uri: ``gs://`` URI of the champion pointer (templated).
    :param to: the model expected to be restored (templated; optional). When given and the pointer's previous
        champion is another model, nothing is written.
    :param expected_generation: the pointer generation the decision was taken on (templated; optional).
    :param alias: the Model Registry version alias of the champion.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("pointer_uri", "to", "expected_generation", "project_id", "location")

    def __init__(self, *, pointer_uri: str, to: str | None = None, expected_generation: int | str | None = None,
                 alias: str = "champion", **kwargs):
        kwargs.setdefault("outlets", [CHAMPION_ASSET])
        super().__init__(**kwargs)
        self.pointer_uri = pointer_uri
        self.to = to
        self.expected_generation = expected_generation
        self.alias = alias

    def execute(self, context):
        from ..services.champion import ROLLBACK_REFUSED, read_champion, rollback

        storage = self.hook.storage()
        current, _ = read_champion(storage, self.pointer_uri)
        entries = [current or {}, (current or {}).get("previous") or {}]
        vertex = any(e.get("backend") == "vertex" for e in entries)
        registry = self.hook.registry(optional(self.project_id), self.location) if vertex else None
        gemini = any(e.get("backend") == "gemini_api" for e in entries)
        gemini_api = self.hook.gemini_api(optional(self.project_id)) if gemini else None
        ti = context["ti"]
        try:
            result = rollback(storage, self.pointer_uri, registry=registry, gemini_api=gemini_api,
                              run={"dag_id": ti.dag_id, "run_id": ti.run_id}, to=optional(self.to),
                              expected_generation=optional(self.expected_generation, int), alias=self.alias)
        except ROLLBACK_REFUSED as exc:
            raise AirflowFailException(str(exc)) from exc
        champ = result["champion"]
        self.log.info("%s: champion %s (rolled back: %s; pointer %s generation %s)", result["status"],
                      champ["tuned_model"], result["rolled_back"], self.pointer_uri, result["generation"])
        context["outlet_events"][CHAMPION_ASSET].extra = {"tuned_model": champ["tuned_model"],
                                                          "endpoint": champ.get("endpoint"),
                                                          "checkpoint_id": champ.get("checkpoint_id"),
                                                          "pointer_uri": self.pointer_uri, "via": "rollback"}
        return result
