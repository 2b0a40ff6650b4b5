"""Continuous tuning: what a new Vertex tuning job starts from, resolved before anything is paid for.

``continue_from`` on the tuning operator is one of

* ``None`` / ``""``: tune the base model (no continuation);
* ``"champion"``: the model version (and checkpoint) the champion pointer names *at run time*;
* a Model Registry name: ``projects/P/locations/L/models/M@<version>``, ``…/models/M@<alias>`` or ``…/models/M``
  (its default version).

Every form resolves to one exact model version ``M@<versionId>`` and one checkpoint id (the pointer's, else the
version's ``defaultCheckpointId``), so the job's fingerprint names what was really trained on: a moved alias or
a new champion is a different job, never a silent reattach to a job that started from something else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..backends.errors import NotFoundError
from ..backends.vertex_registry import split_version
from .champion import read_champion

CHAMPION = "champion"


class ContinuationError(ValueError):
    """``continue_from`` cannot be resolved (no champion, a missing model or checkpoint, the wrong backend)."""


@dataclass(frozen=True)
class Continuation:
    """What ``continue_from`` resolved to (:func:`resolve`): the exact starting point of a continuous tuning job.

    :param model_version: the exact model version, ``projects/P/locations/L/models/M@<versionId>``.
    :param checkpoint_id: its checkpoint to start from; None: the service's default (the version lists none).
    :param source: what the user asked for (``"champion"``, an alias name, …), for the logs.
    """

    model_version: str            # projects/P/locations/L/models/M@<versionId>
    checkpoint_id: str | None     # None: the service's default checkpoint (the version has none listed)
    source: str                   # what the user asked for ("champion", an alias name, ...), for the logs


def resolve(continue_from: str | None, *, backend: str, storage=None, pointer_uri: str | None = None,
            registry=None) -> Continuation | None:
    """``continue_from`` -> the exact model version and checkpoint (None: tune the base model).

    :param continue_from: see the module docstring.
    :param backend: the tuning backend; continuation is Vertex only.
    :param storage: a GCS client, to read the champion pointer (``"champion"`` only).
    :param pointer_uri: the champion pointer (``"champion"`` only).
    :param registry: a :class:`~gemini_tuning.backends.vertex_registry.VertexRegistry` of the job's location.
    """
    value = (continue_from or "").strip()
    if not value or value.lower() in ("none", "null"):
        return None
    if backend != "vertex":
        raise ContinuationError(f"continue_from={value!r}: continuous tuning is a Vertex AI feature; the "
                                f"{backend} backend tunes base models only")
    checkpoint = None
    if value == CHAMPION:
        if not pointer_uri:
            raise ContinuationError("continue_from='champion' needs the champion pointer URI (champion_pointer_uri)")
        pointer, _ = read_champion(storage, pointer_uri)
        if pointer is None:
            raise ContinuationError(f"continue_from='champion' but there is no champion yet ({pointer_uri} does not "
                                    "exist): run the pipeline once without continue_from, or name a model")
        if pointer.get("backend") != "vertex":
            raise ContinuationError(f"continue_from='champion': the champion {pointer.get('tuned_model')} is a "
                                    f"{pointer.get('backend')} model; continuous tuning starts from a Vertex model")
        name, checkpoint = pointer["tuned_model"], pointer.get("checkpoint_id")
    else:
        name = value
    try:
        split_version(name)
    except ValueError as exc:
        raise ContinuationError(f"continue_from={value!r}: {exc} or 'champion'") from None
    if registry is None:
        raise ContinuationError("resolving continue_from needs the Vertex Model Registry")
    try:
        mv = registry.get_model(name)
    except NotFoundError as exc:
        raise ContinuationError(f"continue_from={value!r}: {name} is not in the Model Registry ({exc.message})") \
            from exc
    if checkpoint is not None and mv.checkpoint_ids and str(checkpoint) not in mv.checkpoint_ids:
        raise ContinuationError(f"continue_from={value!r}: {mv.resource} has no checkpoint {checkpoint!r} "
                                f"(it has {list(mv.checkpoint_ids)})")
    return Continuation(mv.resource, str(checkpoint) if checkpoint is not None else mv.default_checkpoint_id,
                        value)
