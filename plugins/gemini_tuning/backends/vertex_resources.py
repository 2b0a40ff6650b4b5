"""The values and names the Vertex AI Model Registry calls (:mod:`.vertex_registry`) and the delete sequence
(:mod:`.vertex_delete`) share: model versions as the registry returns them, model and endpoint names, and GAPIC
errors as :mod:`.errors` types.

Names: tuned models come as ``projects/P/locations/L/models/M@1``; ``@`` selects a version (or an alias). The
server returns ``name`` without the version, so version-level writes build ``M@<versionId>`` themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.names import InvalidName, validate_resource_name
from .errors import AlreadyExistsError, NotFoundError, TuningApiError, retry_after_of

_MODEL_RE = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/models/(?P<id>[^/@]+)"
                       r"(?:@(?P<version>[^/@]+))?$")
_ENDPOINT_RE = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints/(?P<id>[^/]+)$")


class OperationTimeoutError(TimeoutError):
    """A long-running operation did not finish within the time budget. It may still finish on its own; the
    sequence that started it is idempotent, so running it again is safe."""


@dataclass(frozen=True)
class DeployedModelRef:
    """Where a model version is deployed: one deployment on one endpoint.

    :param endpoint: the endpoint's resource name, ``projects/P/locations/L/endpoints/E``.
    :param deployed_model_id: the deployment's id on that endpoint (what an undeploy names).
    """

    endpoint: str
    deployed_model_id: str


@dataclass(frozen=True)
class ModelVersion:
    """One version of a Model Registry model (what the registry calls a Model with a ``versionId``).

    :param name: the model's resource name without the version, ``projects/P/locations/L/models/M``.
    :param version_id: the registry's version id (``"1"``, ``"2"``, …); :attr:`resource` appends it.
    :param display_name: the model's display name ("" when none).
    :param version_aliases: the aliases on this version (``default``, a champion alias, …).
    :param labels: the version's labels (key -> value).
    :param deployed_models: the endpoints this version is deployed to.
    :param checkpoint_ids: a tuned Gemini model's checkpoints (one per epoch); empty for other models.
    :param default_checkpoint_id: the checkpoint that serves the version by default; None when not reported.
    """

    name: str  # projects/P/locations/L/models/M (no version)
    version_id: str
    display_name: str = ""
    version_aliases: tuple[str, ...] = ()
    labels: dict = field(default_factory=dict)
    deployed_models: tuple[DeployedModelRef, ...] = ()
    checkpoint_ids: tuple[str, ...] = ()       # a tuned Gemini model's checkpoints (one per epoch)
    default_checkpoint_id: str | None = None   # the checkpoint that serves the version by default

    @property
    def resource(self) -> str:
        """``projects/P/locations/L/models/M@<versionId>``: addresses exactly this version."""
        return f"{self.name}@{self.version_id}"


def split_version(name: str) -> tuple[str, str | None]:
    """``.../models/M@1`` -> (``.../models/M``, ``"1"``); no ``@`` -> (name, None). Validates the form
    (``core.names.validate_resource_name``: an :class:`~gemini_tuning.core.names.InvalidName`, a ValueError)."""
    try:
        validate_resource_name(name, "model")
    except InvalidName as exc:
        raise InvalidName(exc.field, name, exc.rule, message=f"not a Vertex AI model name: {name!r} (expected "
                                                             f"projects/P/locations/L/models/M[@version]; "
                                                             f"{exc.rule})") from None
    m = _MODEL_RE.match(name)
    return name.split("@", 1)[0], m["version"]


def _location_of(name: str) -> str | None:
    m = _MODEL_RE.match(name) or _ENDPOINT_RE.match(name)
    return m["location"] if m else None


def api_error(exc: BaseException) -> BaseException:
    """google.api_core exceptions -> :mod:`.errors` types; anything else is returned unchanged."""
    from google.api_core import exceptions as gexc

    if not isinstance(exc, gexc.GoogleAPICallError):
        return exc
    code = int(exc.code) if exc.code is not None else 500
    grpc_code = getattr(exc, "grpc_status_code", None)
    status = getattr(grpc_code, "name", None) or _envelope_status(exc)
    cls = {404: NotFoundError, 409: AlreadyExistsError}.get(code, TuningApiError)
    if cls is AlreadyExistsError and not isinstance(exc, gexc.AlreadyExists):
        cls = TuningApiError  # 409 is also ABORTED (a concurrent modification)
    err = cls(code, exc.message or str(exc), status=status, retry_after=retry_after_of(exc))
    err.__cause__ = exc
    return err


def _envelope_status(exc) -> str | None:
    """The canonical status (``FAILED_PRECONDITION``...) from a REST error envelope; GAPIC REST does not keep it."""
    try:
        return exc.response.json()["error"]["status"]
    except Exception:  # noqa: BLE001 - no response, not JSON, no envelope
        return None


def _model_version(m) -> ModelVersion:
    return ModelVersion(
        name=m.name.split("@", 1)[0], version_id=str(m.version_id), display_name=m.display_name or "",
        version_aliases=tuple(m.version_aliases), labels=dict(m.labels),
        deployed_models=tuple(DeployedModelRef(d.endpoint, str(d.deployed_model_id)) for d in m.deployed_models),
        checkpoint_ids=tuple(str(c.checkpoint_id) for c in m.checkpoints),
        default_checkpoint_id=m.default_checkpoint_id or None)

