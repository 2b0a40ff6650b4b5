"""The safe delete sequence for a tuned model on Vertex AI (reference §D.1, §D.2), as a part of
:class:`~.vertex_registry.VertexRegistry` (:class:`TunedModelDeletion`):

1. ``models.get`` → the version's ``deployedModels[]`` (plus the tuning job's own endpoint's deployed models of
   this model, in case the registry does not list them);
2. ``endpoints:undeployModel`` for each (an LRO); 400/403/404 are tolerated and reported (Google-managed shared
   endpoints may refuse, and an already undeployed model answers 400/404);
3. ``DELETE endpoint`` when it is the tuning job's own endpoint and nothing else is deployed on it (an LRO);
4. ``DELETE model`` (an LRO) - or ``:deleteVersion`` when the model has other versions, so a tuned *version* of a
   parent model (continuous tuning) never takes its siblings with it. ``FAILED_PRECONDITION`` here means "still
   deployed" and is raised with the endpoints named.

Every step treats "not found" as already done, so the sequence can be re-run after a crash or a timeout.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..core.names import validate_resource_name
from .errors import NotFoundError, TuningApiError
from .vertex_resources import split_version

if TYPE_CHECKING:
    from .vertex_resources import ModelVersion

log = logging.getLogger(__name__)

# Undeploy on a Google-managed (shared) endpoint may be refused; an already undeployed model answers 400/404.
TOLERATED_UNDEPLOY = frozenset({400, 403, 404})


class TunedModelDeletion:
    """A base class of :class:`~.vertex_registry.VertexRegistry`: the delete sequence (undeploy, delete the tuning
    job's endpoints, delete the model or version). Uses the registry's clients (``models``, ``endpoints``), its
    plumbing (``_call``, ``_await``, ``_check_location``) and its reads (``get_model``, ``list_versions``)."""

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
