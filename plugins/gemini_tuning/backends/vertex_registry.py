"""Vertex AI Model Registry and endpoints through the aiplatform GAPIC clients (``aiplatform_v1``, REST transport).

What promotion and clean-up need, and nothing else: read a model version, move a version alias, set version
labels, find models by label, and the safe delete sequence for a tuned model (reference §D.1, §D.2;
:mod:`.vertex_delete`). The model versions, names and error mapping both use are in :mod:`.vertex_resources`;
everything is importable from here.

Each RPC goes through the project's retry policy (429/5xx/resets, ``retry.call``); LRO polling retries its GET
the same way and is bounded by the caller's ``timeout`` for the whole sequence. GAPIC errors leave this module as
:mod:`.errors` types (``NotFoundError``, ``TuningApiError`` with the HTTP ``code``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from functools import cached_property

from ..core.names import check_base_url, validate_location, validate_project, validate_resource_name
from . import retry
from .errors import is_transient
from .vertex_delete import TOLERATED_UNDEPLOY, TunedModelDeletion
from .vertex_resources import (
    DeployedModelRef,
    ModelVersion,
    OperationTimeoutError,
    _location_of,
    _model_version,
    api_error,
    split_version,
)

__all__ = ["TOLERATED_UNDEPLOY", "DeployedModelRef", "ModelVersion", "OperationTimeoutError", "VertexRegistry",
           "api_error", "split_version"]

log = logging.getLogger(__name__)


class VertexRegistry(TunedModelDeletion):
    """Model Registry + endpoints of one project/location.

    ``base_url`` (e.g. the emulator, ``http://127.0.0.1:8089``) replaces ``{location}-aiplatform.googleapis.com``;
    the REST transport uses a scheme given in it as written. ``credentials`` None is only accepted with a
    ``base_url`` (anonymous, for the emulator); real Google needs real credentials, passed in by the caller.
    ``project``, ``location`` and ``base_url`` are checked first (``core.names``: ``https://`` Google or loopback
    only), and every model or endpoint name before its RPC.

    :param project: the Google Cloud project id.
    :param location: the Vertex AI region (``global`` uses ``aiplatform.googleapis.com``).
    :param credentials: Google credentials for the GAPIC clients; None only with ``base_url`` (anonymous).
    :param base_url: the API endpoint instead of Google's (emulator); None: the location's Google endpoint.
    :param retry_policy: retries of each RPC on transient errors; None: the default :class:`~.retry.RetryPolicy`.
    :param request_timeout: the per-request timeout in seconds, passed to every RPC (default 60).
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
