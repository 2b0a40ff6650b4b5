"""Vertex AI Model Registry and endpoints through the aiplatform GAPIC clients (``aiplatform_v1``, REST transport).

What promotion and clean-up need, and nothing else: read a model version, move a version alias, set version
labels, find models by label, and the safe delete sequence for a tuned model (reference §D.1, §D.2):

1. ``models.get`` → the version's ``deployedModels[]`` (plus the tuning job's own endpoint's deployed models of
   this model, in case the registry does not list them);
2. ``endpoints:undeployModel`` for each (an LRO); 400/403/404 are tolerated and reported (Google-managed shared
   endpoints may refuse, and an already undeployed model answers 400/404);
3. ``DELETE endpoint`` when it is the tuning job's own endpoint and nothing else is deployed on it (an LRO);
4. ``DELETE model`` (an LRO) - or ``:deleteVersion`` when the model has other versions, so a tuned *version* of a
   parent model (continuous tuning) never takes its siblings with it. ``FAILED_PRECONDITION`` here means "still
   deployed" and is raised with the endpoints named.

Every step treats "not found" as already done, so the sequence can be re-run after a crash or a timeout.
Each RPC goes through the project's retry policy (429/5xx/resets, ``retry.call``); LRO polling retries its GET
the same way and is bounded by the caller's ``timeout`` for the whole sequence. GAPIC errors leave this module as
:mod:`.errors` types (``NotFoundError``, ``TuningApiError`` with the HTTP ``code``).

Names: tuned models come as ``projects/P/locations/L/models/M@1``; ``@`` selects a version (or an alias). The
server returns ``name`` without the version, so version-level writes build ``M@<versionId>`` themselves.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from dataclasses import dataclass, field
from functools import cached_property

from ..core.names import InvalidName, check_base_url, validate_location, validate_project, validate_resource_name
from . import retry
from .errors import AlreadyExistsError, NotFoundError, TuningApiError, is_transient, retry_after_of

log = logging.getLogger(__name__)

_MODEL_RE = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/models/(?P<id>[^/@]+)"
                       r"(?:@(?P<version>[^/@]+))?$")
_ENDPOINT_RE = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints/(?P<id>[^/]+)$")
# Undeploy on a Google-managed (shared) endpoint may be refused; an already undeployed model answers 400/404.
TOLERATED_UNDEPLOY = frozenset({400, 403, 404})


class OperationTimeoutError(TimeoutError):
    """A long-running operation did not finish within the time budget. It may still finish on its own; the
    sequence that started it is idempotent, so running it again is safe."""


@dataclass(frozen=True)
class DeployedModelRef:
    endpoint: str
    deployed_model_id: str


@dataclass(frozen=True)
class ModelVersion:
    """One version of a Model Registry model (what the registry calls a Model with a ``versionId``)."""

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


class VertexRegistry:
    """Model Registry + endpoints of one project/location.

    ``base_url`` (e.g. the emulator, ``http://127.0.0.1:8089``) replaces ``{location}-aiplatform.googleapis.com``;
    the REST transport uses a scheme given in it as written. ``credentials`` None is only accepted with a
    ``base_url`` (anonymous, for the emulator); real Google needs real credentials, passed in by the caller.
    ``project``, ``location`` and ``base_url`` are checked first (``core.names``: ``https://`` Google or loopback
    only), and every model or endpoint name before its RPC.
    """

    alias_re = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")

    def __init__(self, project: str, location: str, credentials, base_url: str | None = None, *,
                 retry_policy: retry.RetryPolicy | None = None, request_timeout: float = 60.0):
        self.project = validate_project(project)
        self.location = validate_location(location)
        self.base_url = check_base_url(base_url) if base_url else None
        if credentials is None and not base_url:
            raise ValueError("VertexRegistry needs credentials (anonymous access is only for a base_url/emulator)")
        self.credentials = credentials
        self.retry_policy = retry_policy or retry.RetryPolicy()
        self.request_timeout = request_timeout

    def __repr__(self) -> str:
        return (f"VertexRegistry(project={self.project!r}, location={self.location!r}, "
                f"api_endpoint={self.api_endpoint!r})")

    # ------------------------------------------------------------------ clients
    @property
    def api_endpoint(self) -> str:
        if self.base_url:
            return self.base_url
        host = "aiplatform.googleapis.com" if self.location == "global" else \
            f"{self.location}-aiplatform.googleapis.com"
        check_base_url(f"https://{host}", "location")
        return host

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def _client_kwargs(self) -> dict:
        from google.api_core.client_options import ClientOptions

        creds = self.credentials
        if creds is None:
            from google.auth.credentials import AnonymousCredentials

            creds = AnonymousCredentials()
        return {"credentials": creds, "transport": "rest",
                "client_options": ClientOptions(api_endpoint=self.api_endpoint)}

    @cached_property
    def models(self):
        from google.cloud import aiplatform_v1

        return aiplatform_v1.ModelServiceClient(**self._client_kwargs())

    @cached_property
    def endpoints(self):
        from google.cloud import aiplatform_v1

        return aiplatform_v1.EndpointServiceClient(**self._client_kwargs())

    # ------------------------------------------------------------------ plumbing
    def _call(self, fn, /, **kwargs):
        """One RPC: the project's retry policy on transient errors, a per-request timeout, our error types."""
        kwargs.setdefault("timeout", self.request_timeout)
        try:
            return retry.call(self.retry_policy, fn, **kwargs)
        except Exception as exc:  # mapped and re-raised
            mapped = api_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _poll_retry(self, timeout: float):
        from google.api_core import retry as gretry

        p = self.retry_policy
        return gretry.Retry(predicate=is_transient, initial=max(0.05, p.initial_delay), maximum=p.max_delay,
                            multiplier=2.0, timeout=max(1.0, timeout))

    def _await(self, op, deadline: float, what: str):
        """Wait for an LRO until ``deadline`` (monotonic); errors mapped, a timeout as OperationTimeoutError."""
        from google.api_core.future import polling as gpolling

        remaining = deadline - time.monotonic()
        name = getattr(getattr(op, "operation", None), "name", "?")
        if remaining <= 0:
            raise OperationTimeoutError(f"{what}: no time left to wait for operation {name}; it may still finish. "
                                        "Running the delete again is safe (it is idempotent).")
        polling = gpolling.DEFAULT_POLLING.with_delay(initial=0.25, maximum=10.0, multiplier=1.5)
        polling = polling.with_timeout(remaining)
        try:
            return op.result(timeout=remaining, retry=self._poll_retry(remaining), polling=polling)
        except concurrent.futures.TimeoutError as exc:
            raise OperationTimeoutError(f"{what}: operation {name} not done after {remaining:.0f}s; it may still "
                                        "finish. Running the delete again is safe (it is idempotent).") from exc
        except Exception as exc:  # mapped and re-raised
            mapped = api_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _check_location(self, name: str) -> None:
        validate_resource_name(name, ("model", "endpoint"))
        loc = _location_of(name)
        if loc is None:
            raise ValueError(f"not a Vertex AI model or endpoint name: {name!r}")
        if loc != self.location:
            raise ValueError(f"{name} is in location {loc!r} but this registry client serves {self.location!r} "
                             f"({self.api_endpoint}); use a VertexRegistry for {loc!r}")

    # ------------------------------------------------------------------ model registry
    def get_model(self, name: str) -> ModelVersion:
        """A model version (``M@1``, ``M@alias``) or the default version (``M``). NotFoundError when absent."""
        split_version(name)
        self._check_location(name)
        return _model_version(self._call(self.models.get_model, name=name))

    def list_versions(self, name: str) -> list[ModelVersion]:
        base, _ = split_version(name)
        self._check_location(base)
        return [_model_version(m) for m in self._call(lambda **kw: list(self.models.list_model_versions(**kw)),
                                                      name=base)]

    def find_models(self, labels: dict) -> list[ModelVersion]:
        """Models of this project/location whose (default version's) labels include all of ``labels``."""
        flt = " AND ".join(f'labels.{k}="{v}"' for k, v in sorted(labels.items()))
        return [_model_version(m) for m in self._call(lambda **kw: list(self.models.list_models(**kw)),
                                                      request={"parent": self.parent, "filter": flt})]

    def _version_name(self, name: str) -> tuple[str, ModelVersion]:
        """Resolve ``name`` to ``M@<versionId>`` (aliases and a bare ``M`` resolved by the server)."""
        mv = self.get_model(name)
        return mv.resource, mv

    def set_alias(self, model_version_name: str, alias: str) -> ModelVersion:
        """Put ``alias`` on this version (mergeVersionAliases). Within one model the server moves it off any
        other version; other *models* keep theirs (see :meth:`remove_alias`)."""
        self._check_alias(alias)
        split_version(model_version_name)
        self._check_location(model_version_name)
        return _model_version(self._call(self.models.merge_version_aliases, name=model_version_name,
                                         version_aliases=[alias]))

    def remove_alias(self, model_version_name: str, alias: str) -> ModelVersion:
        """Take ``alias`` off this version if it is there (a no-op otherwise; never sends ``-alias`` blindly)."""
        self._check_alias(alias)
        resource, mv = self._version_name(model_version_name)
        if alias not in mv.version_aliases:
            return mv
        return _model_version(self._call(self.models.merge_version_aliases, name=resource,
                                         version_aliases=[f"-{alias}"]))

    def _check_alias(self, alias: str) -> None:
        if alias == "default" or not self.alias_re.match(alias or "") or alias.isdigit():
            raise ValueError(f"invalid version alias {alias!r}: must match [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9], "
                             "not be a number, and not be 'default'")

    def set_labels(self, model_version_name: str, labels: dict, merge: bool = True) -> ModelVersion:
        """Set the labels of this version (``updateMask=labels``).

        ``merge``: read the current labels and apply ``labels`` on top (a value of None removes that key);
        otherwise ``labels`` replaces them all. The read-modify-write sends no etag (whether the service honours
        one on version-level patches is unverified), so a concurrent label edit by someone else can be lost.
        """
        from google.cloud import aiplatform_v1
        from google.protobuf import field_mask_pb2

        resource, mv = self._version_name(model_version_name)
        if merge:
            new = dict(mv.labels)
            for k, v in labels.items():
                if v is None:
                    new.pop(k, None)
                else:
                    new[k] = str(v)
        else:
            new = {k: str(v) for k, v in labels.items() if v is not None}
        if new == mv.labels:
            return mv
        model = aiplatform_v1.Model(name=resource, labels=new)
        return _model_version(self._call(self.models.update_model, model=model,
                                         update_mask=field_mask_pb2.FieldMask(paths=["labels"])))

    def set_default_version(self, model_version_name: str) -> ModelVersion:
        """Move the model's ``default`` alias to this version (``mergeVersionAliases ["default"]``; the service keeps
        exactly one default); a no-op when it has it."""
        resource, mv = self._version_name(model_version_name)
        if "default" in mv.version_aliases:
            return mv
        return _model_version(self._call(self.models.merge_version_aliases, name=resource,
                                         version_aliases=["default"]))

    def set_default_checkpoint(self, model_version_name: str, checkpoint_id: str) -> ModelVersion:
        """Make ``checkpoint_id`` the version's ``defaultCheckpointId`` (``updateMask=default_checkpoint_id``);
        a no-op when it already is. ValueError when the version has no such checkpoint."""
        from google.cloud import aiplatform_v1
        from google.protobuf import field_mask_pb2

        resource, mv = self._version_name(model_version_name)
        checkpoint_id = str(checkpoint_id)
        if mv.checkpoint_ids and checkpoint_id not in mv.checkpoint_ids:
            raise ValueError(f"{resource} has no checkpoint {checkpoint_id!r} (it has {list(mv.checkpoint_ids)})")
        if mv.default_checkpoint_id == checkpoint_id:
            return mv
        model = aiplatform_v1.Model(name=resource, default_checkpoint_id=checkpoint_id)
        return _model_version(self._call(self.models.update_model, model=model,
                                         update_mask=field_mask_pb2.FieldMask(paths=["default_checkpoint_id"])))

    # ------------------------------------------------------------------ endpoints
    def _get_endpoint(self, name: str):
        validate_resource_name(name, "endpoint")
        self._check_location(name)
        return self._call(self.endpoints.get_endpoint, name=name)

    # ------------------------------------------------------------------ delete
    def delete_tuned_model(self, model_version_name: str, endpoint: str | None = None, timeout: float = 600, *,
                           checkpoint_endpoints: tuple[str, ...] | list[str] = (),
                           default_heirs: tuple[str, ...] | list[str] = ()) -> dict:
        """The safe delete sequence (module docstring). Idempotent: what is already gone counts as done.

        ``endpoint`` is the tuning job's own endpoint; ``checkpoint_endpoints`` the endpoints of the job's other
        checkpoints (one per epoch): each is undeployed and deleted like ``endpoint``. ``default_heirs``: model
        versions (``M@v``, in order of preference, e.g. the champion's, then the rollback target's) that take the
        ``default`` alias when the deleted version holds it (the service refuses to delete the default version);
        none of them in this model: its newest other version.

        Returns ``{"model", "endpoint", "undeployed": [{endpoint, deployed_model_id}], "undeploy_refused":
        [{endpoint, deployed_model_id, code, message}], "endpoint_deleted" (the job's own), "endpoints_deleted"
        (every endpoint deleted, checkpoints' too), "endpoint_kept" (why, or None),
        "model_deleted", "version_only" (True: only this version was deleted, the model has others),
        "already_gone" (the model version did not exist)}``. ``timeout`` bounds the whole sequence (LRO waits).
        """
        deadline = time.monotonic() + float(timeout)
        base, _ = split_version(model_version_name)
        self._check_location(base)
        own = list(dict.fromkeys(e for e in (endpoint, *checkpoint_endpoints) if e))
        for ep_name in own:
            validate_resource_name(ep_name, "endpoint")
            self._check_location(ep_name)
        report = {"model": model_version_name, "endpoint": endpoint, "undeployed": [], "undeploy_refused": [],
                  "endpoint_deleted": False, "endpoints_deleted": [], "endpoint_kept": None, "model_deleted": False,
                  "version_only": False,
                  "already_gone": False}
        try:
            mv = self.get_model(model_version_name)
        except NotFoundError:
            mv = None
            report["already_gone"] = True

        # 1. where is it deployed: the registry's view, plus the tuning job's own endpoint's view
        targets: dict[tuple[str, str], None] = {}
        if mv is not None:
            for d in mv.deployed_models:
                targets[(d.endpoint, d.deployed_model_id)] = None
        for ep_name in own:
            try:
                ep = self._get_endpoint(ep_name)
            except NotFoundError:
                ep = None
            if ep is not None:
                for dm in ep.deployed_models:
                    if dm.model.split("@", 1)[0] == base and (mv is None or not dm.model_version_id
                                                              or str(dm.model_version_id) == mv.version_id):
                        targets[(ep_name, str(dm.id))] = None

        # 2. undeploy
        for ep_name, dm_id in targets:
            what = f"undeploy {model_version_name} ({dm_id}) from {ep_name}"
            validate_resource_name(ep_name, "endpoint")        # the registry's answer, too, before it is a URL
            try:
                op = self._call(self.endpoints.undeploy_model, endpoint=ep_name, deployed_model_id=dm_id)
                self._await(op, deadline, what)
                report["undeployed"].append({"endpoint": ep_name, "deployed_model_id": dm_id})
                log.info("undeployed %s (deployed model %s) from %s", model_version_name, dm_id, ep_name)
            except TuningApiError as exc:
                if exc.code not in TOLERATED_UNDEPLOY:
                    raise
                log.warning("%s refused (%s): %s; continuing", what, exc.code, exc.message)
                report["undeploy_refused"].append({"endpoint": ep_name, "deployed_model_id": dm_id,
                                                   "code": exc.code, "message": exc.message})

        # 3. the tuning job's own endpoints, if nothing else is served from them
        for ep_name in own:
            self._delete_endpoint(ep_name, deadline, report)

        # 4. the model (or only this version, when the model has siblings)
        if mv is not None:
            self._delete_model(mv, deadline, report, tuple(default_heirs))
        return report

    def _delete_endpoint(self, endpoint: str, deadline: float, report: dict) -> None:
        try:
            ep = self._get_endpoint(endpoint)
        except NotFoundError:
            return
        if ep.deployed_models:
            others = ", ".join(f"{d.model}@{d.model_version_id} ({d.id})" for d in ep.deployed_models)
            report["endpoint_kept"] = f"still serves: {others}"
            log.warning("not deleting endpoint %s: it still serves %s", endpoint, others)
            return
        try:
            self._await(self._call(self.endpoints.delete_endpoint, name=endpoint), deadline,
                        f"delete endpoint {endpoint}")
        except NotFoundError:
            return
        except TuningApiError as exc:
            if exc.code != 403:
                raise
            report["endpoint_kept"] = f"delete refused ({exc.code}): {exc.message}"
            log.warning("delete of endpoint %s refused (%s): %s; continuing", endpoint, exc.code, exc.message)
            return
        report["endpoints_deleted"].append(endpoint)
        report["endpoint_deleted"] = report["endpoint_deleted"] or endpoint == report["endpoint"]
        log.info("deleted endpoint %s", endpoint)

    def _delete_model(self, mv: ModelVersion, deadline: float, report: dict, heirs: tuple[str, ...] = ()) -> None:
        try:
            versions = self.list_versions(mv.name)
        except NotFoundError:
            report["already_gone"] = True
            return
        if not any(v.version_id == mv.version_id for v in versions):
            report["already_gone"] = True
            return
        version_only = len(versions) > 1
        what = f"delete {'version ' + mv.resource if version_only else 'model ' + mv.name}"
        try:
            if version_only:
                current = next(v for v in versions if v.version_id == mv.version_id)
                if "default" in current.version_aliases:  # the service refuses to delete the default version
                    others = [v for v in versions if v.version_id != mv.version_id]
                    # compared from "models/": the pointer may spell the project as a number or an id
                    preferred = [v for name in heirs for v in others
                                 if v.resource.split("/models/")[-1] == name.split("/models/")[-1]]
                    heir = preferred[0] if preferred else max(
                        others, key=lambda v: int(v.version_id) if v.version_id.isdigit() else -1)
                    log.info("moving the default alias of %s to version %s before deleting version %s",
                             mv.name, heir.version_id, mv.version_id)
                    self._call(self.models.merge_version_aliases, name=heir.resource, version_aliases=["default"])
                op = self._call(self.models.delete_model_version, name=mv.resource)
            else:
                op = self._call(self.models.delete_model, name=mv.name)
            self._await(op, deadline, what)
        except NotFoundError:
            report["already_gone"] = True
            return
        except TuningApiError as exc:
            if exc.code == 400 and (exc.status == "FAILED_PRECONDITION" or "deploy" in (exc.message or "").lower()):
                where = ", ".join(sorted({r["endpoint"] for r in report["undeploy_refused"]})) or "an endpoint"
                raise TuningApiError(exc.code, f"{what}: refused because it is still deployed ({exc.message}). "
                                               f"Undeploy from {where} was refused or incomplete: "
                                               f"{report['undeploy_refused'] or 'no refusal recorded'}",
                                     status=exc.status) from exc
            raise
        report["model_deleted"] = True
        report["version_only"] = version_only
        log.info("%s: done", what)
