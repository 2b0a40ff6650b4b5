"""The Model Registry: models, their versions, aliases and checkpoints; what a succeeded tuning job registers."""

from __future__ import annotations

import re

from .. import serving
from ..common import json_body, list_response, matches, ok, parse_filter
from ..errors import failed_precondition, invalid_argument, not_found
from ..store import new_numeric_id
from ..training import checkpoint_artifact
from .shared import check_labels, located

_ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")


class ModelRegistry:
    def _model(self, project, location, id) -> tuple[str, dict]:
        return located(self.store, "models", project, location, id)

    @staticmethod
    def _version_id(model: dict, version: str | None) -> str:
        if version in (None, "", "-"):
            version = "default"
        if version in model["versions"]:
            return version
        for vid, v in model["versions"].items():
            if version in v["versionAliases"]:
                return vid
        raise not_found(f"{model['name']}@{version}")

    @staticmethod
    def _model_view(model: dict, vid: str) -> dict:
        v = model["versions"][vid]
        return {"name": model["name"], "displayName": model["displayName"], "description": model.get("description", ""),
                "versionId": vid, "versionAliases": list(v["versionAliases"]),
                "versionCreateTime": v["versionCreateTime"], "versionUpdateTime": v["versionUpdateTime"],
                "versionDescription": v.get("versionDescription", ""), "labels": dict(v["labels"]),
                "deployedModels": [{k: d[k] for k in ("endpoint", "deployedModelId") if k in d}
                                   for d in v["deployedModels"]],   # DeployedModelRef
                "createTime": model["createTime"],
                "updateTime": model["updateTime"], "etag": model.get("etag", "1"),
                # Model.checkpoints[] are google.cloud.aiplatform.v1.Checkpoint: no endpoint (only the job's
                # tunedModel.checkpoints[] have one), no stored artifact
                "checkpoints": [{k: c[k] for k in ("checkpointId", "epoch", "step") if k in c}
                                for c in v.get("checkpoints", [])],
                "defaultCheckpointId": v.get("defaultCheckpointId", ""),
                "supportedExportFormats": [], "baseModelSource": {"genieSource": {"baseModelUri": v["baseModel"]}}}

    async def get_model(self, request, ver, project, location, id, version=None):
        _, model = self._model(project, location, id)
        return ok(self._model_view(model, self._version_id(model, version)))

    async def list_models(self, request, ver, project, location):
        parent = f"projects/{project}/locations/{location}/"
        terms = parse_filter(request.query.get("filter"))
        views = [self._model_view(m, self._version_id(m, None)) for m in self.store.values("models")
                 if m["name"].startswith(parent)]
        return list_response(request, "models", [v for v in views if matches(v, terms)], default_size=100)

    async def list_versions(self, request, ver, project, location, id):
        _, model = self._model(project, location, id)
        return ok({"models": [self._model_view(model, vid) for vid in sorted(model["versions"], key=int)]})

    async def update_model(self, request, ver, project, location, id, version=None):
        name, model = self._model(project, location, id)
        mask = request.query.get("updateMask")
        if not mask:
            raise invalid_argument("update_mask", "update_mask is required.")
        body = await json_body(request)
        version_level = version not in (None, "-")
        vid = self._version_id(model, version)
        now = serving.rfc3339(self.emu.now())
        for field in [f.strip() for f in mask.split(",") if f.strip()]:
            if field == "labels":
                model["versions"][vid]["labels"] = check_labels(body.get("labels") or {}, "model.labels")
            elif field in ("display_name", "displayName") and not version_level:
                model["displayName"] = str(body.get("displayName", ""))
            elif field == "description" and not version_level:
                model["description"] = str(body.get("description", ""))
            elif field in ("version_description", "versionDescription"):
                model["versions"][vid]["versionDescription"] = str(body.get("versionDescription", ""))
            elif field in ("default_checkpoint_id", "defaultCheckpointId"):
                # [unverified] on a name without @version the emulator patches the default version
                wanted = str(body.get("defaultCheckpointId") or "")
                known = [c["checkpointId"] for c in model["versions"][vid].get("checkpoints") or ()]
                if wanted not in known:
                    raise invalid_argument("model.default_checkpoint_id",
                                           f"Checkpoint {wanted!r} does not exist in {name}@{vid}; it has {known}.")
                model["versions"][vid]["defaultCheckpointId"] = wanted
            else:
                raise invalid_argument("update_mask", f"Field {field!r} cannot be updated"
                                                      f"{' on a model version' if version_level else ''}.")
        model["versions"][vid]["versionUpdateTime"] = now
        model["updateTime"] = now
        model["etag"] = str(int(model.get("etag", "1")) + 1)
        self.store.put("models", name, model)
        return ok(self._model_view(model, vid))

    async def merge_aliases(self, request, ver, project, location, id, version=None):
        name, model = self._model(project, location, id)
        if version in (None, "", "-"):
            raise invalid_argument("name", "A model version must be specified (models/M@VERSION).")
        vid = self._version_id(model, version)
        body = await json_body(request)
        aliases = body.get("versionAliases")
        if not isinstance(aliases, list) or not aliases:
            raise invalid_argument("version_aliases", "version_aliases must be a non-empty list.")
        for alias in aliases:
            bare = alias[1:] if alias.startswith("-") else alias
            if not _ALIAS.match(bare):
                raise invalid_argument("version_aliases",
                                       f"Invalid alias {alias!r}: must match [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9].")
            if bare.isdigit():
                raise invalid_argument("version_aliases", f"Alias {alias!r} cannot be a version id.")
            if alias == "-default":
                raise invalid_argument("version_aliases", "The default alias cannot be removed; move it instead.")
        own = model["versions"][vid]["versionAliases"]
        for alias in aliases:
            if alias.startswith("-"):
                if alias[1:] in own:
                    own.remove(alias[1:])
            else:
                for other in model["versions"].values():  # an alias lives on exactly one version
                    if alias in other["versionAliases"]:
                        other["versionAliases"].remove(alias)
                own.append(alias)
        now = serving.rfc3339(self.emu.now())
        model["versions"][vid]["versionUpdateTime"] = now
        self.store.put("models", name, model)
        return ok(self._model_view(model, vid))

    async def delete_model(self, request, ver, project, location, id):
        name, model = self._model(project, location, id)
        deployed = [d for v in model["versions"].values() for d in v["deployedModels"]]
        if deployed:
            raise failed_precondition(f"The model {name} is deployed to endpoint(s) "
                                      f"{', '.join(sorted({d['endpoint'] for d in deployed}))}; undeploy it first.")
        self.store.delete("models", name)
        return ok(self._operation(f"projects/{project}/locations/{location}", "DeleteOperationMetadata", None,
                                  ver))

    async def delete_version(self, request, ver, project, location, id, version):
        name, model = self._model(project, location, id)
        vid = self._version_id(model, version)
        if len(model["versions"]) == 1:
            raise failed_precondition(f"Cannot delete the only version of {name}; delete the model instead.")
        if model["versions"][vid]["deployedModels"]:
            raise failed_precondition(f"Version {vid} of {name} is deployed; undeploy it first.")
        if "default" in model["versions"][vid]["versionAliases"]:
            raise failed_precondition(f"Version {vid} of {name} holds the default alias; move it first.")
        del model["versions"][vid]
        self.store.put("models", name, model)
        return ok(self._operation(f"projects/{project}/locations/{location}", "DeleteOperationMetadata", None,
                                  ver))

    def _register_tuned_model(self, obj: dict, now: float) -> None:
        """A tuning job succeeded: register the tuned model and deploy every checkpoint to an endpoint of its own
        (the last checkpoint's endpoint is ``tunedModel.endpoint``).

        From a base model: a new Model, version 1 (``default``). Continuous tuning (``preTunedModel``): the next
        version of the pre-tuned model, unless the job names another display name (then a new Model, as the docs
        say). [unverified] whether Google moves the ``default`` alias to the new version: the emulator does not.
        """
        res, e = obj["resource"], obj["emu"]
        project, location = res["name"].split("/")[1], res["name"].split("/")[3]
        parent = f"projects/{project}/locations/{location}"
        base = res.get("baseModel") or res["preTunedModel"]["baseModel"]
        display = res.get("tunedModelDisplayName") or f"{base}-tuned-{res['name'].rsplit('/', 1)[1]}"
        ts = serving.rfc3339(now)
        model = self.store.get("models", e["parent_model"]) if e.get("parent_model") else None
        if model is not None and res.get("tunedModelDisplayName") not in (None, model["displayName"]):
            model = None
        if model is None:
            model_name = f"{parent}/models/{new_numeric_id()}"
            model = {"name": model_name, "displayName": display, "description": "", "createTime": ts,
                     "updateTime": ts, "versions": {}, "nextVersion": 1, "etag": "1"}
        model_name = model["name"]
        vid = str(model["nextVersion"])
        model["nextVersion"] += 1
        epochs = e["hp"]["epochs"]
        per_epoch = max(1, e["steps"] // epochs)
        ckpts = [{"checkpointId": str(k), "epoch": str(k), "step": str(per_epoch * k),
                  "artifact": checkpoint_artifact(res["name"], k)} for k in range(1, epochs + 1)]
        ckpts[-1]["artifact"] = res["name"]                     # the final weights (== the last epoch's)
        spec = res.get("supervisedTuningSpec") or res.get("preferenceOptimizationSpec") or {}
        if spec.get("exportLastCheckpointOnly"):
            ckpts = ckpts[-1:]
        deployed = []
        for ckpt in ckpts:
            endpoint_name = f"{parent}/endpoints/{new_numeric_id()}"
            dm_id = new_numeric_id()[:19]
            ckpt.update(endpoint=endpoint_name, deployedModelId=dm_id)
            deployed.append({"endpoint": endpoint_name, "deployedModelId": dm_id})
            self.store.put("endpoints", endpoint_name, {
                "name": endpoint_name, "displayName": display, "createTime": ts, "updateTime": ts,
                "deployedModels": [{"id": dm_id, "model": model_name, "modelVersionId": vid, "displayName": display,
                                    "createTime": ts, "checkpointId": ckpt["checkpointId"]}],
                "trafficSplit": {dm_id: 100}, "tuningJob": res["name"]})
        model["versions"][vid] = {
            "versionId": vid, "versionAliases": [] if model["versions"] else ["default"], "versionCreateTime": ts,
            "versionUpdateTime": ts, "labels": {}, "deployedModels": deployed, "artifact": res["name"],
            "baseModel": base, "checkpoints": ckpts, "defaultCheckpointId": ckpts[-1]["checkpointId"]}
        model["updateTime"] = ts
        self.store.put("models", model_name, model)
        res["tunedModel"] = {"model": f"{model_name}@{vid}", "endpoint": ckpts[-1]["endpoint"],
                             "checkpoints": [{k: c[k] for k in ("checkpointId", "epoch", "step", "endpoint")}
                                             for c in ckpts]}
