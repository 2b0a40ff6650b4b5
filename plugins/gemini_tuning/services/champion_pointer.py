"""The champion pointer as data: checking a candidate, building the pointer that promotes it (or that rolls back
to its ``previous``), comparing the models two entries name, and reading the pointer back from GCS.

The pointer's format, and why it is the source of truth, is in :mod:`.champion` ("The pointer"); writing it
(compare-and-swap) is :func:`.champion.promote` / :func:`.champion.rollback`'s job. No Airflow import.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..backends.gcs import ObjectTooLarge, json_size, read_json
from ..core.constants import MAX_POINTER_BYTES
from ..core.names import InvalidName, validate_resource_name
from ..core.tuning import BACKENDS

POINTER_FIELDS = ("backend", "tuned_model", "endpoint", "checkpoint_id", "display_name", "base_model", "promoted_at",
                  "run_id", "dag_id", "metrics", "verdict_id", "policy_hash", "previous")
# MAX_POINTER_BYTES (re-exported): core.constants', 64 KiB, the bound of every read and of the writes
# (services.champion.promote / rollback refuse a larger pointer); a pointer is a few KB
VIA_ROLLBACK = "rollback"


# ----------------------------------------------------------------------------------------------- build, compare
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def normalize_candidate(candidate: dict) -> dict:
    """Check a tuning result (``backend``, ``tuned_model``, ``endpoint``, ``display_name``) and return a copy."""
    if not isinstance(candidate, dict):
        raise TypeError(f"candidate must be a dict, got {type(candidate).__name__}")
    backend = candidate.get("backend")
    model = candidate.get("tuned_model")
    if backend not in BACKENDS:
        raise ValueError(f"candidate backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(model, str) or not model:
        raise ValueError(f"candidate has no tuned_model: {candidate!r}")
    try:   # one validation of names that become URLs (core.names); InvalidName is a ValueError
        validate_resource_name(model, "model" if backend == "vertex" else "tuned_model", field="tuned_model")
    except InvalidName as exc:
        expected = "projects/P/locations/L/models/M@1" if backend == "vertex" else "tunedModels/x"
        kind = "Vertex AI model" if backend == "vertex" else "Gemini API tuned model"
        raise InvalidName("tuned_model", model, f"not a {kind} name (expected {expected}): {exc.rule}") from exc
    endpoint = candidate.get("endpoint") or None
    if endpoint is not None and backend == "vertex":
        validate_resource_name(endpoint, "endpoint", field="endpoint")
    checkpoint = candidate.get("checkpoint_id")
    return {**candidate, "backend": backend, "tuned_model": model, "endpoint": endpoint,
            "checkpoint_id": str(checkpoint) if checkpoint not in (None, "") else None,
            "display_name": candidate.get("display_name") or None}


def _model_key(entry: dict) -> tuple[str, str, str | None]:
    """(backend, model without project, version or None). The project is left out: the same model can be named
    by project id or by project number."""
    backend, name = entry.get("backend"), entry.get("tuned_model") or ""
    if backend == "vertex":
        base, _, version = name.partition("@")
        return backend, base.split("/locations/", 1)[-1], version or None
    return str(backend), name, None


def same_model(a: dict | None, b: dict | None) -> bool:
    """Whether two pointer/candidate entries may name the same model. Conservative: ``M`` (no version) or a
    non-numeric version (an alias) matches every version of ``M``; ``M@1`` and ``M@2`` do not match."""
    if not a or not b:
        return False
    ba, na, va = _model_key(a)
    bb, nb, vb = _model_key(b)
    if ba != bb or na != nb:
        return False
    if va is None or vb is None or not va.isdigit() or not vb.isdigit():
        return True
    return va == vb


def build_pointer(candidate: dict, run: dict, previous: dict | None, *, now: str | None = None) -> dict:
    """The pointer that makes ``candidate`` champion; ``previous`` (the current pointer) is kept one level deep."""
    cand = normalize_candidate(candidate)
    metrics = run.get("metrics") if run.get("metrics") is not None else cand.get("metrics")
    return {
        "backend": cand["backend"],
        "tuned_model": cand["tuned_model"],
        "endpoint": cand["endpoint"],
        "checkpoint_id": cand["checkpoint_id"],
        "display_name": cand["display_name"],
        # the Google base model it was tuned from: a tuned model retires with it (core.lifecycle)
        "base_model": cand.get("base_model") or None,
        "promoted_at": now or _now(),
        "run_id": run.get("run_id"),
        "dag_id": run.get("dag_id"),
        "metrics": dict(metrics or {}),
        # the verdict (and the policy it was judged under) that allowed this promotion
        "verdict_id": run.get("verdict_id"),
        "policy_hash": run.get("policy_hash"),
        "previous": {k: v for k, v in previous.items() if k != "previous"} if previous else None,
    }


def validate_pointer(obj: dict, uri: str = "pointer") -> dict:
    if obj.get("backend") not in BACKENDS or not isinstance(obj.get("tuned_model"), str):
        raise ValueError(f"{uri} is not a champion pointer (needs backend in {BACKENDS} and tuned_model): "
                         f"{sorted(obj)}")
    return obj


def check_pointer_size(pointer_uri: str, pointer: dict) -> None:
    """Raise ``backends.gcs.ObjectTooLarge`` when ``pointer`` would be written larger than ``MAX_POINTER_BYTES``
    (``core.constants``): every reader (the services, the UI) refuses a larger one, so the writer refuses it first,
    before anything is written."""
    size = json_size(pointer)
    if size > MAX_POINTER_BYTES:
        raise ObjectTooLarge(pointer_uri, size, MAX_POINTER_BYTES, "a champion pointer")


# ----------------------------------------------------------------------------------------------- read
def read_champion(storage_client, pointer_uri: str, *, max_bytes: int = MAX_POINTER_BYTES) -> tuple[dict | None, int]:
    """The current champion pointer and its generation; ``(None, 0)`` when there is no champion yet.

    Pass the generation on to :func:`promote` as ``expected_generation``. A pointer object above ``max_bytes``
    raises ``backends.gcs.ObjectTooLarge`` before it is downloaded (a pointer is a few KB; this read also runs in
    the api-server, for the UI page).
    """
    obj, generation = read_json(storage_client, pointer_uri, max_bytes=max_bytes, what="a champion pointer")
    if obj is None:
        return None, 0
    return validate_pointer(obj, pointer_uri), generation


# ----------------------------------------------------------------------------------------------- rollback
def _strip(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "previous"}


def build_rollback_pointer(current: dict, run: dict, *, now: str | None = None) -> dict:
    """The pointer that restores ``current["previous"]``: the restored entry (its model, endpoint, checkpoint and
    the metrics it was promoted with), ``run_id``/``dag_id``/``promoted_at`` of the rollback, ``via: rollback``,
    ``restored`` (the run that originally promoted it) and, as ``previous``, the rolled-back champion."""
    target = current["previous"]
    restored = target.get("restored") if target.get("via") == VIA_ROLLBACK else None
    out = {k: target.get(k) for k in POINTER_FIELDS if k != "previous"}
    out.update(promoted_at=now or _now(), run_id=run["run_id"], dag_id=run.get("dag_id"),
               metrics=dict(target.get("metrics") or {}))
    out["via"] = VIA_ROLLBACK
    out["restored"] = restored or {"run_id": target.get("run_id"), "dag_id": target.get("dag_id"),
                                   "promoted_at": target.get("promoted_at")}
    out["previous"] = _strip(current)
    return out

