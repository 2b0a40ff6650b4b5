"""Endpoints and serving: ``endpoints.generateContent`` (a tuned model's checkpoint), the publisher models'
``generateContent``, ``endpoints.get``, ``undeployModel``, ``delete``."""

from __future__ import annotations

import asyncio

from .. import learner, serving
from ..common import json_body, ok
from ..errors import ApiError, failed_precondition, invalid_argument
from .shared import checkpoint_weights, located


class Endpoints:
    def _load_model(self, artifact: str) -> learner.TunedModel:
        model = self._models.get(artifact)
        if model is None:
            model = learner.TunedModel.load(self.store.artifact_path(artifact))
            self._models[artifact] = model
        return model

    async def endpoint_generate(self, request, ver, project, location, id):
        name, endpoint = self._endpoint(project, location, id)
        if not endpoint["deployedModels"]:
            raise failed_precondition(f"Endpoint {name} has no deployed model.")
        dm = endpoint["deployedModels"][0]
        model = self.store.get("models", dm["model"])
        version = (model or {}).get("versions", {}).get(dm["modelVersionId"])
        if version is None:
            raise failed_precondition(f"The model deployed on {name} no longer exists.")
        body = await json_body(request)
        artifact = checkpoint_weights(version, dm.get("checkpointId"))
        tuned = await asyncio.get_running_loop().run_in_executor(self.emu.executor, self._load_model, artifact)
        return ok(serving.generate(tuned, version["baseModel"], body, vertex=True,
                                   model_version=f"{dm['model']}@{dm['modelVersionId']}"))

    async def base_generate(self, request, ver, project, location, model):
        if not model.startswith("gemini-"):
            raise ApiError(404, f"Publisher Model `projects/{project}/locations/{location}/publishers/google/models/"
                                f"{model}` was not found or your project does not have access to it.")
        body = await json_body(request)
        return ok(serving.generate(None, model, body, vertex=True, model_version=model))

    def _endpoint(self, project, location, id) -> tuple[str, dict]:
        return located(self.store, "endpoints", project, location, id)

    async def get_endpoint(self, request, ver, project, location, id):
        _, endpoint = self._endpoint(project, location, id)
        return ok({k: v for k, v in endpoint.items() if k != "tuningJob"})

    async def undeploy_model(self, request, ver, project, location, id):
        name, endpoint = self._endpoint(project, location, id)
        body = await json_body(request)
        dm_id = str(body.get("deployedModelId") or "")
        dm = next((d for d in endpoint["deployedModels"] if d["id"] == dm_id), None)
        if dm is None:
            raise invalid_argument("deployed_model_id", f"Deployed model {dm_id!r} not found on {name}.")
        endpoint["deployedModels"].remove(dm)
        endpoint["trafficSplit"] = {k: v for k, v in (body.get("trafficSplit") or {}).items() if k != dm_id}
        if endpoint["deployedModels"] and not endpoint["trafficSplit"]:
            endpoint["trafficSplit"] = {endpoint["deployedModels"][0]["id"]: 100}
        self.store.put("endpoints", name, endpoint)
        model = self.store.get("models", dm["model"])
        if model and dm["modelVersionId"] in model["versions"]:
            v = model["versions"][dm["modelVersionId"]]
            v["deployedModels"] = [d for d in v["deployedModels"] if d["deployedModelId"] != dm_id]
            self.store.put("models", dm["model"], model)
        return ok(self._operation(f"projects/{project}/locations/{location}", "UndeployModelOperationMetadata",
                                  {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UndeployModelResponse"},
                                  ver))

    async def delete_endpoint(self, request, ver, project, location, id):
        name, endpoint = self._endpoint(project, location, id)
        if endpoint["deployedModels"]:
            raise failed_precondition(f"Endpoint {name} still has deployed models; undeploy them first.")
        self.store.delete("endpoints", name)
        return ok(self._operation(f"projects/{project}/locations/{location}", "DeleteOperationMetadata", None,
                                  ver))
