"""Deleting a losing candidate, never the champion nor the rollback target.

:func:`delete_candidate` refuses the model the pointer names and the pointer's ``previous`` (the rollback target)
(:class:`ChampionDeletionRefused`), then deletes
(Vertex: undeploy, delete the tuning job's endpoints - one per checkpoint -, delete the model, each LRO awaited;
Gemini API: ``tunedModels.delete``). A losing *version* of the champion's model (continuous tuning makes the
challenger ``M@2`` of a champion ``M@1``) is deleted as that version only: the champion's version and its
endpoints are never touched; if the deleted version holds ``default`` (the service refuses to delete the default
version), ``default`` moves to the champion's version first (else the rollback target's, else the newest). Already
gone counts as done. The check and the delete are not atomic: a model promoted *between* them would be deleted.
The pipeline never promotes and deletes the same candidate (promote needs a promote verdict that no one rejected,
the deletes a delete verdict or a rejection bound to the promote verdict: ``core.verdict``), so this window is not
reachable from the DAG.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .champion_pointer import normalize_candidate, read_champion, same_model

if TYPE_CHECKING:
    from ..backends.gemini_api import GeminiApiTuningBackend
    from ..backends.vertex_registry import VertexRegistry

log = logging.getLogger(__name__)


class ChampionDeletionRefused(Exception):
    """The model to delete is the current champion."""


def delete_candidate(candidate: dict, *, storage_client, pointer_uri: str, registry: VertexRegistry | None = None,
                     gemini_api: GeminiApiTuningBackend | None = None, timeout: float = 600.0) -> dict:
    """Delete a tuned model that is not the champion. Idempotent: already gone is done.

    Raises :class:`ChampionDeletionRefused` when the pointer names this model (compared without the project, and
    conservatively: a bare ``M`` matches every version of ``M``). Returns what was done:
    ``{"backend", "tuned_model", "model_deleted", "already_gone", "champion", ...}`` plus, on Vertex, the
    registry's report (``undeployed``, ``endpoint_deleted``, ...).
    """
    cand = normalize_candidate(candidate)
    current, generation = read_champion(storage_client, pointer_uri)
    if current is not None and same_model(current, cand):
        raise ChampionDeletionRefused(
            f"refusing to delete {cand['tuned_model']}: it is the current champion (promoted at "
            f"{current.get('promoted_at')} by run {current.get('run_id')!r}; {pointer_uri} generation "
            f"{generation}). Promote another model first.")
    previous = (current or {}).get("previous")
    if previous and same_model(previous, cand):
        raise ChampionDeletionRefused(
            f"refusing to delete {cand['tuned_model']}: it is the previous champion, the rollback target of "
            f"{pointer_uri} (generation {generation}; champion now: {current.get('tuned_model')}). It stops being "
            "protected when the next promotion replaces it as previous.")
    if cand["backend"] == "vertex":
        if registry is None:
            raise ValueError(f"deleting the Vertex AI model {cand['tuned_model']} needs a VertexRegistry")
        others = tuple(c["endpoint"] for c in cand.get("checkpoints") or () if c.get("endpoint"))
        # a losing version of the champion's (or the rollback target's) model: if it holds the ``default`` alias,
        # the alias moves to the champion's version (else the previous champion's), never to a stray version
        heirs = tuple(e["tuned_model"] for e in (current, previous)
                      if e and e.get("backend") == "vertex" and "@" in str(e.get("tuned_model")))
        report = registry.delete_tuned_model(cand["tuned_model"], cand["endpoint"], timeout=timeout,
                                             checkpoint_endpoints=others, default_heirs=heirs)
    else:
        if gemini_api is None:
            raise ValueError(f"deleting the Gemini API model {cand['tuned_model']} needs a GeminiApiTuningBackend")
        deleted = gemini_api.delete(cand["tuned_model"])
        report = {"model_deleted": deleted, "already_gone": not deleted}
    log.info("delete %s: %s", cand["tuned_model"], report)
    return {"backend": cand["backend"], "tuned_model": cand["tuned_model"], "pointer_uri": pointer_uri,
            "champion": current.get("tuned_model") if current else None, **report}
