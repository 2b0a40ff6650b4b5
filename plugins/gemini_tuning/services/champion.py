"""Champion bookkeeping: which tuned model is in production, promotion of a challenger, deletion of a loser.

Backend-agnostic (Vertex AI or Gemini API), no Airflow import. The backends do the remote work: GCS for the
pointer (:mod:`.backends.gcs`), the Model Registry for aliases and labels (:mod:`.backends.vertex_registry`),
``GeminiApiTuningBackend.delete`` for Gemini API models.

The pointer
-----------
One small JSON object in GCS per pipeline (``pointer_uri``) is the **source of truth** for "who is champion"::

    {"backend": "vertex"|"gemini_api", "tuned_model": "projects/.../models/M@1"|"tunedModels/x",
     "endpoint": ".../endpoints/E"|null, "checkpoint_id": "2"|null, "display_name": ...,
     "promoted_at": "2026-11-03T10:00:00Z",
     "run_id": ..., "dag_id": ..., "metrics": {...}, "previous": {<the previous pointer without its "previous">}|null}

It is only ever replaced with a generation precondition (``ifGenerationMatch``), so of two writers that read the
same generation exactly one wins. On Vertex the registry carries a *projection* of it: the version alias
``champion`` and the labels ``gemini-tuning-role=champion|retired``, ``gemini-tuning-run=<run>`` and
``gemini-tuning-pointer=<hash of pointer_uri>`` (several pipelines can share a project; the hash keeps their
champions apart).

Order of operations in :func:`promote`, and why
-----------------------------------------------
1. Validate the candidate; on Vertex, check its model exists (nothing is written yet, so failing here is clean).
2. **Compare-and-swap the pointer** from ``expected_generation`` (the generation the *evaluation* read) to the new
   pointer. A failed swap raises :class:`ChampionChanged` before anything in the registry is touched, so a losing
   run's model never gets the alias or the champion label.
3. Only then bring the registry in line with the pointer (:func:`reconcile`): alias + ``role=champion``, the
   model's ``default`` alias (a champion that is one version of a multi-version model also serves the model's
   unversioned name), and the evaluated checkpoint as ``defaultCheckpointId`` (when the pointer names one) on the
   pointer's model first,
   then ``role=retired`` and alias removal on the previous champion and on any other model of this pipeline still
   labelled champion. Adding before retiring means the old ``M@champion`` keeps
   resolving until the new one does (never zero champions); the cost is a short window with two.
4. Re-read the pointer; if its generation moved while we were writing labels (a newer promotion raced our
   registry writes), converge again to the newer pointer. So whichever promoter finishes last leaves the
   registry matching the latest pointer, even if registry writes of two runs interleave.

Crash windows (all repaired by re-running the task: :func:`promote` recognises a pointer written by an earlier try
of the *same* run and model and then only redoes step 3; :func:`reconcile` can also be run on its own):

* after 2, before 3: the pointer names the new champion, the registry still shows the old one;
* inside 3: both models carry the alias / champion label (new added, old not yet retired);
* a stale promoter that wrote old labels and crashed before step 4: the registry is wrong until the next
  promotion or reconcile, whose stray sweep (models of this pipeline labelled champion that the pointer does not
  name) fixes it. The sweep sees each model's default version only.

Doing registry writes *before* the swap would be worse: a loser would have moved the alias to its model and
would have to undo it (and a crash in between would leave two champions with nothing to say which is right).

A champion change between evaluation and promotion
-------------------------------------------------
``expected_generation`` is the pointer generation the evaluation compared against. If another run promoted in
between, this challenger was measured against a model that is no longer champion. :func:`promote` then **fails**
with :class:`ChampionChanged` rather than promoting on a stale comparison; re-running the evaluation (clear the
run from the evaluate task) compares it with the new champion. Re-evaluating inside ``promote`` would hide that
decision from the run's history.

Rolling back
------------
:func:`rollback` restores the pointer's ``previous`` champion, in the same order as :func:`promote`: check the
restored model exists (nothing written yet), **compare-and-swap** the pointer (from the generation it read, or
``expected_generation``) to a pointer naming the restored model, marked ``"via": "rollback"`` (``run_id`` /
``dag_id`` / ``promoted_at``: the rollback run; ``restored``: the run that originally promoted it), whose
``previous`` is the rolled-back champion; then :func:`reconcile`. The rolled-back model is never deleted: the
registry keeps it, labelled ``retired`` (rolling back again restores it: a rollback of a rollback is a roll-forward).
Idempotent: a retry that finds the pointer written by this run's earlier try (or that pointer as the ``previous``
of a newer one) only reconciles. A rollback racing a promotion is decided by the compare-and-swap like two
promotions: the loser raises :class:`ChampionChanged` (:class:`RollbackConflict` for the rollback) and writes
nothing to the registry. ``to`` names the model the caller expects to restore: when the pointer's ``previous`` is
another model (someone promoted since the caller looked), the rollback refuses before writing. The pointer keeps one
level of history, so older champions are restored by promoting them, not by rollback.

Deleting
--------
:func:`delete_candidate` (in :mod:`.champion_delete`, re-exported here) refuses the champion and the rollback
target, then deletes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING

from ..backends.errors import NotFoundError
from ..backends.gcs import GenerationMismatch, write_json
from .champion_delete import ChampionDeletionRefused, delete_candidate  # noqa: F401 - re-exported
from .champion_pointer import (  # noqa: F401 - re-exported
    MAX_POINTER_BYTES,
    POINTER_FIELDS,
    VIA_ROLLBACK,
    _strip,
    build_pointer,
    build_rollback_pointer,
    check_pointer_size,
    normalize_candidate,
    read_champion,
    same_model,
    validate_pointer,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .backends.gemini_api import GeminiApiTuningBackend
    from .backends.vertex_registry import VertexRegistry


CHAMPION_ALIAS = "champion"
ROLE_LABEL = "gemini-tuning-role"
RUN_LABEL = "gemini-tuning-run"
POINTER_LABEL = "gemini-tuning-pointer"
ROLE_CHAMPION = "champion"
ROLE_RETIRED = "retired"
RECONCILE_ROUNDS = 5


# ----------------------------------------------------------------------------------------------- errors
class ChampionChanged(Exception):
    """The pointer moved since the evaluation read it: this run's model was not promoted.

    :param pointer_uri: the ``gs://`` champion pointer.
    :param candidate: this run's candidate (``tuned_model``, …), which was not promoted.
    :param current: the pointer as it is now (the other run's champion); None: it was removed.
    :param expected_generation: the pointer generation the evaluation read (0: there was no pointer).
    :param actual_generation: the pointer's generation now.
    """

    def __init__(self, pointer_uri: str, candidate: dict, current: dict | None, expected_generation: int,
                 actual_generation: int):
        self.pointer_uri = pointer_uri
        self.candidate = candidate
        self.current = current
        self.expected_generation = expected_generation
        self.actual_generation = actual_generation
        mine = candidate.get("tuned_model")
        if current is None:
            what = f"the champion pointer {pointer_uri} was removed since the evaluation read it"
        else:
            by = f"run {current.get('run_id')!r}" + (f" of DAG {current.get('dag_id')!r}" if current.get("dag_id")
                                                     else "")
            verb = "rolled the champion back to" if current.get("via") == "rollback" else "promoted"
            what = f"another run {verb} {current.get('tuned_model')} at {current.get('promoted_at')} ({by})"
        super().__init__(
            f"{what}; this run's model {mine} was not promoted. The evaluation compared it against pointer "
            f"generation {expected_generation}, which is now {actual_generation}: re-run the evaluation to compare "
            "it with the current champion.")


class RollbackConflict(ChampionChanged):
    """The pointer moved since the rollback read it (or since ``expected_generation``): nothing was rolled back.

    :param pointer_uri: the ``gs://`` champion pointer.
    :param target: the champion the rollback would have restored (kept as :attr:`candidate`); None: unknown.
    :param current: the pointer as it is now; None: it was removed.
    :param expected_generation: the pointer generation the rollback read, or the caller's ``expected_generation``.
    :param actual_generation: the pointer's generation now.
    """

    def __init__(self, pointer_uri: str, target: dict | None, current: dict | None, expected_generation: int,
                 actual_generation: int):
        super().__init__(pointer_uri, target or {}, current, expected_generation, actual_generation)
        now = "removed" if current is None else \
            f"{current.get('tuned_model')} (promoted at {current.get('promoted_at')} by run {current.get('run_id')!r})"
        self.args = (f"the champion pointer {pointer_uri} moved from generation {expected_generation} to "
                     f"{actual_generation} (now: {now}); nothing was rolled back to "
                     f"{(target or {}).get('tuned_model')}. Look at the new champion and run the rollback again "
                     "if it is still wanted.",)




# ----------------------------------------------------------------------------------------------- helpers
def label_value(value: str) -> str:
    """A string as a GCP label value: lowercase ``[a-z0-9_-]``, at most 63 characters (hash-suffixed if cut)."""
    raw = str(value)
    clean = re.sub(r"[^a-z0-9_-]", "-", raw.lower())
    if len(clean) > 63:
        clean = clean[:54] + "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return clean


def pointer_label(pointer_uri: str) -> str:
    """Which pipeline a champion belongs to, as a label value: a short hash of its pointer URI."""
    return "p" + hashlib.sha256(pointer_uri.encode()).hexdigest()[:16]










def _is_ours(entry: dict | None, candidate: dict, run: dict) -> bool:
    return bool(entry) and same_model(entry, candidate) and entry.get("run_id") == run.get("run_id") \
        and entry.get("dag_id") == run.get("dag_id")






# ----------------------------------------------------------------------------------------------- read


# ----------------------------------------------------------------------------------------------- promote
def promote(storage_client, pointer_uri: str, candidate: dict, *, expected_generation: int,
            registry: VertexRegistry | None, run: dict, alias: str = CHAMPION_ALIAS, now: str | None = None) -> dict:
    """Make ``candidate`` the champion (see the module docstring for the order of operations and crash windows).

    ``run``: ``{"run_id", "dag_id", "metrics": {...}}`` (metrics optional; else ``candidate["metrics"]``).
    ``registry`` is required for a Vertex candidate; with a Gemini API candidate it is used (if given) to retire a
    previous Vertex champion. Raises :class:`ChampionChanged` when the pointer is no longer at
    ``expected_generation``. Returns ``{"status", "pointer_uri", "generation", "champion", "previous_champion",
    "registry"}`` with status ``promoted``, ``already_promoted`` (an earlier try of this run did it),
    ``superseded`` (an earlier try did it and a later run has replaced it since) or ``already_champion``.
    """
    cand = normalize_candidate(candidate)
    if not isinstance(run, dict) or not run.get("run_id"):
        raise ValueError("promote needs run={'run_id': ..., 'dag_id': ...}")
    if expected_generation is None or int(expected_generation) < 0:
        raise ValueError(f"expected_generation must be >= 0 (0: no champion yet), got {expected_generation!r}")
    expected_generation = int(expected_generation)
    if cand["backend"] == "vertex":
        if registry is None:
            raise ValueError(f"promoting the Vertex AI model {cand['tuned_model']} needs a VertexRegistry")
        try:
            registry.get_model(cand["tuned_model"])  # exists, right location: checked before anything is written
        except NotFoundError as exc:
            raise NotFoundError(exc.code, f"cannot promote {cand['tuned_model']}: it does not exist in the Model "
                                          f"Registry ({exc.message})", status=exc.status) from exc

    current, generation = read_champion(storage_client, pointer_uri)
    pointer = current
    if _is_ours(current, cand, run):
        status = "already_promoted"
    elif current and _is_ours(current.get("previous"), cand, run):
        status = "superseded"
    elif generation != expected_generation:
        raise ChampionChanged(pointer_uri, cand, current, expected_generation, generation)
    elif current and same_model(current, cand):
        status = "already_champion"
    else:
        pointer = build_pointer(cand, run, current, now=now)
        try:
            check_pointer_size(pointer_uri, pointer)
            generation = write_json(storage_client, pointer_uri, pointer, if_generation_match=expected_generation)
        except GenerationMismatch as exc:
            latest, latest_gen = read_champion(storage_client, pointer_uri)
            raise ChampionChanged(pointer_uri, cand, latest, expected_generation, latest_gen) from exc
        status = "promoted"
        log.info("%s is now the champion (pointer %s generation %s; previous: %s)", cand["tuned_model"],
                 pointer_uri, generation, (current or {}).get("tuned_model"))

    if registry is not None:
        reg = reconcile(storage_client, pointer_uri, registry, alias=alias)
    else:
        reg = {"skipped": "no Model Registry (Gemini API backend)"}
    out = {"status": status, "pointer_uri": pointer_uri, "generation": generation,
           "champion": {k: v for k, v in pointer.items() if k != "previous"},
           "previous_champion": (pointer.get("previous") or {}).get("tuned_model"), "registry": reg}
    if status == "superseded":  # the pointer is the later run's; ours is its "previous"
        out["champion"], out["previous_champion"] = {k: v for k, v in pointer["previous"].items()}, None
        out["superseded_by"] = pointer["tuned_model"]
    return out


def reconcile(storage_client, pointer_uri: str, registry: VertexRegistry, *, alias: str = CHAMPION_ALIAS) -> dict:
    """Bring the Model Registry in line with the pointer (alias and labels), until the pointer stops moving.

    Idempotent; the repair step after a crash between the pointer swap and the registry writes.
    """
    scope = pointer_label(pointer_uri)
    for round_ in range(1, RECONCILE_ROUNDS + 1):
        pointer, generation = read_champion(storage_client, pointer_uri)
        actions = _apply(pointer, registry, scope, alias)
        _, after = read_champion(storage_client, pointer_uri)
        if after == generation:
            return {"generation": generation, "rounds": round_, **actions}
        log.info("champion pointer moved (generation %s -> %s) while updating the registry; converging again",
                 generation, after)
    raise RuntimeError(f"{pointer_uri} kept changing during {RECONCILE_ROUNDS} registry updates; run reconcile again")


def _apply(pointer: dict | None, registry: VertexRegistry, scope: str, alias: str) -> dict:
    out = {"champion": None, "retired": [], "missing": []}
    champ = pointer if pointer and pointer.get("backend") == "vertex" else None
    if champ:
        labels = {ROLE_LABEL: ROLE_CHAMPION, POINTER_LABEL: scope}
        if champ.get("run_id"):
            labels[RUN_LABEL] = label_value(champ["run_id"])
        try:
            registry.set_alias(champ["tuned_model"], alias)
            if "@" in champ["tuned_model"]:   # the model's unversioned name serves the champion too
                registry.set_default_version(champ["tuned_model"])
            registry.set_labels(champ["tuned_model"], labels)
            if champ.get("checkpoint_id"):  # the evaluated checkpoint serves the version by default
                registry.set_default_checkpoint(champ["tuned_model"], champ["checkpoint_id"])
            out["champion"] = champ["tuned_model"]
        except NotFoundError:
            log.warning("the champion %s named by the pointer is not in the Model Registry", champ["tuned_model"])
            out["missing"].append(champ["tuned_model"])
    # retire: the previous champion, and any other model of this pipeline still labelled champion
    to_retire: dict[str, dict] = {}
    prev = (pointer or {}).get("previous")
    if prev and prev.get("backend") == "vertex":
        to_retire[prev["tuned_model"]] = prev
    for mv in registry.find_models({ROLE_LABEL: ROLE_CHAMPION, POINTER_LABEL: scope}):
        to_retire.setdefault(mv.resource, {"backend": "vertex", "tuned_model": mv.resource})
    for name, entry in to_retire.items():
        if same_model(entry, champ):  # the champion itself (or a name that may resolve to it): never retire
            continue
        try:
            registry.remove_alias(name, alias)
            registry.set_labels(name, {ROLE_LABEL: ROLE_RETIRED, POINTER_LABEL: scope})
            out["retired"].append(name)
        except NotFoundError:
            out["missing"].append(name)
    return out


# ----------------------------------------------------------------------------------------------- rollback




def _rolled_back_by(entry: dict | None, run: dict) -> bool:
    """Whether ``entry`` is the pointer a rollback by ``run`` wrote."""
    return bool(entry) and entry.get("via") == VIA_ROLLBACK and entry.get("run_id") == run.get("run_id") \
        and entry.get("dag_id") == run.get("dag_id")


def _as_entry(to) -> dict | None:
    """``to`` (a model name, or an entry with ``tuned_model``) as a pointer-like entry for :func:`same_model`."""
    if to in (None, "", "None"):
        return None
    if isinstance(to, dict):
        return normalize_candidate(to)
    name = str(to).strip()
    backend = "gemini_api" if name.startswith("tunedModels/") else "vertex"
    return normalize_candidate({"backend": backend, "tuned_model": name})


def _check_restorable(target: dict, registry: VertexRegistry | None,
                      gemini_api: GeminiApiTuningBackend | None) -> None:
    """The rollback target still exists (checked before anything is written): NotFoundError if not, ValueError
    without the backend to ask."""
    vertex = target["backend"] == "vertex"
    backend, what = (registry, "VertexRegistry") if vertex else (gemini_api, "GeminiApiTuningBackend")
    if backend is None:
        raise ValueError(f"rolling back to the {'Vertex AI' if vertex else 'Gemini API'} model "
                         f"{target['tuned_model']} needs a {what} (to check that it still exists)")
    try:
        registry.get_model(target["tuned_model"]) if vertex else gemini_api.get(target["tuned_model"])
    except NotFoundError as exc:
        where = "it is not in the Model Registry any more" if vertex else \
            "the Gemini API has no such tuned model any more"
        raise NotFoundError(exc.code, f"cannot roll back to {target['tuned_model']}: {where} ({exc.message})",
                            status=exc.status) from exc




#: What a refused rollback raises (a moved pointer, a request that does not fit the pointer, a restored model that
#: no longer exists): no retry helps, the caller fails for good (``operators.rollback``).
ROLLBACK_REFUSED: tuple[type[Exception], ...] = (ChampionChanged, ValueError, NotFoundError)


def rollback(storage_client, pointer_uri: str, *, registry: VertexRegistry | None, run: dict, to=None,
             expected_generation: int | None = None, alias: str = CHAMPION_ALIAS, now: str | None = None,
             gemini_api: GeminiApiTuningBackend | None = None) -> dict:
    """Restore the previous champion (the pointer's ``previous``); see "Rolling back" in the module docstring.

    ``run``: ``{"run_id", "dag_id"}`` of the rollback. ``to``: the model the caller expects to restore (a name, or
    an entry with ``tuned_model``); refused with ``ValueError`` before anything is written when the pointer's
    previous champion is another model. ``expected_generation``: the pointer generation the caller looked at
    (None: the one read here); a pointer at another generation raises :class:`RollbackConflict`, and so does a
    compare-and-swap lost to a concurrent promotion. ``registry`` is required when the restored model is on
    Vertex AI, ``gemini_api`` when it is a Gemini API tuned model (its existence is checked before anything is
    written, like a Vertex target's). The rolled-back model is kept (labelled retired), never deleted.

    Returns ``{"status", "pointer_uri", "generation", "champion", "rolled_back", "registry"}`` with status
    ``rolled_back``, ``already_rolled_back`` (an earlier try of this run did it), ``superseded`` (an earlier try
    did it and the pointer has moved on since) or ``already_champion`` (``to`` is the champion already).
    """
    if not isinstance(run, dict) or not run.get("run_id"):
        raise ValueError("rollback needs run={'run_id': ..., 'dag_id': ...}")
    if expected_generation is not None:
        expected_generation = int(expected_generation)
        if expected_generation < 1:
            raise ValueError(f"expected_generation must be >= 1 (a pointer must exist), got {expected_generation}")
    wanted = _as_entry(to)
    current, generation = read_champion(storage_client, pointer_uri)
    if current is None:
        raise ValueError(f"{pointer_uri} names no champion: there is nothing to roll back")
    pointer, rolled_back = current, None
    if _rolled_back_by(current, run):
        status = "already_rolled_back"
        rolled_back = (current.get("previous") or {}).get("tuned_model")
    elif _rolled_back_by(current.get("previous"), run):
        status = "superseded"
    elif expected_generation is not None and generation != expected_generation:
        raise RollbackConflict(pointer_uri, current.get("previous"), current, expected_generation, generation)
    else:
        previous = current.get("previous")
        if wanted is not None and not same_model(wanted, previous):
            if same_model(wanted, current):
                status = "already_champion"
            else:
                raise ValueError(
                    f"cannot roll back to {wanted['tuned_model']}: the champion pointer {pointer_uri} (generation "
                    f"{generation}) names {current.get('tuned_model')} with previous champion "
                    f"{(previous or {}).get('tuned_model')} (the pointer keeps one previous champion; promote an "
                    "older model through the pipeline instead)")
        elif not previous:
            raise ValueError(f"{pointer_uri} has no previous champion to roll back to (champion: "
                             f"{current.get('tuned_model')}, promoted at {current.get('promoted_at')})")
        else:
            _check_restorable(normalize_candidate(previous), registry, gemini_api)
            pointer = build_rollback_pointer(current, run, now=now)
            try:
                check_pointer_size(pointer_uri, pointer)
                generation = write_json(storage_client, pointer_uri, pointer, if_generation_match=generation)
            except GenerationMismatch as exc:
                latest, latest_gen = read_champion(storage_client, pointer_uri)
                raise RollbackConflict(pointer_uri, previous, latest, exc.expected, latest_gen) from exc
            status, rolled_back = "rolled_back", current["tuned_model"]
            log.info("rolled the champion back to %s (pointer %s generation %s; rolled back: %s, kept)",
                     pointer["tuned_model"], pointer_uri, generation, rolled_back)

    if registry is not None:
        reg = reconcile(storage_client, pointer_uri, registry, alias=alias)
    else:
        reg = {"skipped": "no Model Registry (Gemini API backend)"}
    out = {"status": status, "pointer_uri": pointer_uri, "generation": generation, "champion": _strip(pointer),
           "rolled_back": rolled_back, "registry": reg}
    if status == "superseded":   # ours is the pointer's previous; a later change replaced it
        out["champion"], out["superseded_by"] = dict(pointer["previous"]), pointer["tuned_model"]
        out["rolled_back"] = None
    return out


# ----------------------------------------------------------------------------------------------- delete
