"""Gemini API surface (generativelanguage.googleapis.com): tunedModels, their operations, generateContent.

Auth as the API does it: ``x-goog-api-key`` header (or ``?key=``), or an OAuth bearer token with the
``x-goog-user-project`` header; neither gives Google's 401 envelope. With ``gemini_api_tuning_discontinued`` the
create call answers the way Google has since 2025, so the plugin's refusal handling can be tested. With
``gemini_api_tuning_not_found`` (default False) it answers as Google does today (reference §6): 404 NOT_FOUND, the
base model "is not found ... or is not supported for createTunedModel" (the exact text is unverified).
"""

from __future__ import annotations

import logging
import re

from . import learner, serving, wire
from .common import json_body, list_response, ok
from .errors import ApiError, not_found, rpc_status
from .jobs import ENDED, JobLifecycle, Timeline, TrainingInputs, hp_from_emu
from .store import new_slug_id

log = logging.getLogger("emulator.gemini_api")

TUNABLE_BASE_MODELS = {"models/gemini-1.5-flash-001-tuning", "models/gemini-1.0-pro-001"}
TUNED_ID = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
MAX_INPUT_CHARS, MAX_OUTPUT_CHARS = 40_000, 5_000
DISCONTINUED_MESSAGE = ("Model tuning is no longer supported in the Gemini API. "
                        "Use supervised fine-tuning on Vertex AI instead.")
TERMINAL = {"ACTIVE", "FAILED"}
V = r"/(?P<ver>v1|v1beta)"


def _check_auth(request) -> None:
    if request.headers.get("x-goog-api-key") or request.query.get("key"):
        return
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        if not request.headers.get("x-goog-user-project"):
            raise ApiError(403, "Your application is authenticating by using OAuth credentials without a quota "
                                "project. Set the x-goog-user-project header to a project that has the Generative "
                                "Language API enabled.", status="PERMISSION_DENIED")
        return
    raise ApiError(401, "Request is missing required authentication credential. Expected OAuth 2 access token, "
                        "login cookie or other valid authentication credential.", status="UNAUTHENTICATED")


class GeminiApiService:
    def __init__(self, emu):
        self.emu = emu
        self.store = emu.store
        self._models: dict[str, learner.TunedModel] = {}
        self.jobs = JobLifecycle(emu, "tunedModels", terminal=TERMINAL, inputs=self._training_inputs,
                                 advance=self._advance)
        r = emu.router
        r.add("POST", r"/v1beta/tunedModels", self.create)
        r.add("GET", r"/v1beta/tunedModels", self.list)
        r.add("GET", V + r"/tunedModels/(?P<id>[^/:]+)", self.get)
        r.add("PATCH", V + r"/tunedModels/(?P<id>[^/:]+)", self.patch)
        r.add("DELETE", V + r"/tunedModels/(?P<id>[^/:]+)", self.delete)
        r.add("POST", V + r"/tunedModels/(?P<id>[^/:]+):generateContent", self.generate)
        r.add("GET", V + r"/tunedModels/(?P<id>[^/:]+)/operations", self.list_operations)
        r.add("GET", V + r"/tunedModels/(?P<id>[^/:]+)/operations/(?P<op>[^/:]+)", self.get_operation)
        r.add("POST", V + r"/tunedModels/(?P<id>[^/:]+)/operations/(?P<op>[^/:]+):cancel", self.cancel_operation)
        r.add("POST", V + r"/models/(?P<model>[^/:]+):generateContent", self.base_generate)

    # ----------------------------------------------------------------------------------------------- create
    async def create(self, request):
        _check_auth(request)
        body = await json_body(request)
        if self.emu.config.gemini_api_tuning_discontinued:
            raise ApiError(400, DISCONTINUED_MESSAGE, status="FAILED_PRECONDITION")
        base = body.get("baseModel")
        if base and self.emu.config.gemini_api_tuning_not_found:
            # Google today (reference §6): no model supports createTunedModel any more. unverified: the exact answer
            # to tunedModels.create was not found; this is the documented generateContent 404 for such a model
            # (python-genai#969) with "createTunedModel" in place of "generateContent" [inferred].
            raise ApiError(404, f"{base} is not found for API version v1beta, or is not supported for "
                                "createTunedModel. Call ListModels to see the list of available models and their "
                                "supported methods.")
        if not base:
            if (body.get("tunedModelSource") or {}).get("tunedModel"):
                raise ApiError(400, "Tuning from a tuned model is not supported by the emulator.")
            raise ApiError(400, "* CreateTunedModelRequest.tuned_model.base_model: base_model is required")
        if base not in TUNABLE_BASE_MODELS:
            raise ApiError(400, f"Base model {base} does not support tuning. Tunable base models: "
                                f"{', '.join(sorted(TUNABLE_BASE_MODELS))}.")
        display = body.get("displayName") or ""
        if len(display) > 40:
            raise ApiError(400, "* CreateTunedModelRequest.tuned_model.display_name: must be at most 40 characters")
        task = body.get("tuningTask") or {}
        examples_in = (((task.get("trainingData") or {}).get("examples") or {}).get("examples")) or []
        if not examples_in:
            raise ApiError(400, "* CreateTunedModelRequest.tuned_model.tuning_task.training_data: "
                                "training data with at least one example is required")
        examples = []
        for i, ex in enumerate(examples_in):
            text_in = ex.get("textInput") if isinstance(ex, dict) else None
            out = ex.get("output") if isinstance(ex, dict) else None
            if not isinstance(text_in, str) or not isinstance(out, str) or not text_in or not out:
                raise ApiError(400, f"* training_data.examples[{i}]: text_input and output must be non-empty strings")
            if len(text_in) > MAX_INPUT_CHARS:
                raise ApiError(400, f"* training_data.examples[{i}].text_input: exceeds {MAX_INPUT_CHARS} characters")
            if len(out) > MAX_OUTPUT_CHARS:
                raise ApiError(400, f"* training_data.examples[{i}].output: exceeds {MAX_OUTPUT_CHARS} characters")
            examples.append({"textInput": text_in, "output": out})
        hp_in = task.get("hyperparameters") or {}
        n = len(examples)
        try:
            epochs = int(hp_in.get("epochCount", 5))
            batch = int(hp_in.get("batchSize") or learner.gemini_api_default_batch_size(n))
            if "learningRate" in hp_in and "learningRateMultiplier" in hp_in:
                raise ApiError(400, "* hyperparameters: set learning_rate or learning_rate_multiplier, not both")
            if "learningRateMultiplier" in hp_in:
                lr_used = {"learningRateMultiplier": float(hp_in["learningRateMultiplier"])}
                lr = learner.vertex_learning_rate(float(hp_in["learningRateMultiplier"]))
            else:
                rate = float(hp_in.get("learningRate", 0.001 if n < 100 else 0.0002))
                lr_used = {"learningRate": rate}
                lr = learner.gemini_api_learning_rate(rate)
        except (TypeError, ValueError):
            raise ApiError(400, "* tuning_task.hyperparameters: invalid value") from None
        if not 1 <= epochs <= 1000 or not 1 <= batch <= 64 or lr <= 0:
            raise ApiError(400, "* tuning_task.hyperparameters: epoch_count, batch_size or learning rate out of range")
        tuned_id = request.query.get("tunedModelId")
        if tuned_id is not None:
            if not TUNED_ID.match(tuned_id):
                raise ApiError(400, f"tunedModelId {tuned_id!r} must match [a-z]([a-z0-9-]{{0,38}}[a-z0-9])?")
            if self.store.get("tunedModels", f"tunedModels/{tuned_id}") is not None:
                raise ApiError(409, f"Tuned model tunedModels/{tuned_id} already exists.")
        else:
            slug = re.sub(r"[^a-z0-9]+", "-", display.lower()).strip("-")[:30] or "model"
            tuned_id = f"{slug}-{new_slug_id(5)}"
        name = f"tunedModels/{tuned_id}"
        now = self.emu.now()
        hp = learner.HyperParams(epochs=epochs, learning_rate=lr, batch_size=batch,
                                 adapter_rank=learner.ADAPTER_RANKS["ADAPTER_SIZE_FOUR"],
                                 seed=int.from_bytes(tuned_id.encode()[:8].ljust(8, b"\0"), "big") % (2**31))
        emu = self.jobs.new_state(hp=hp, display_name=display, now=now)
        op_name = f"{name}/operations/{new_slug_id(12)}"
        emu.update(kind="gemini_api", examples=examples, operation=op_name)
        resource = {"name": name, "baseModel": base, "state": "CREATING", "createTime": serving.rfc3339(now),
                    "updateTime": serving.rfc3339(now),
                    "tuningTask": {"hyperparameters": {"epochCount": epochs, "batchSize": batch, **lr_used}}}
        for key in ("displayName", "description", "temperature", "topP", "topK"):
            if body.get(key) is not None:
                resource[key] = body[key]
        self.jobs.create(name, resource, emu)
        log.info("created %s (%d examples, %d epochs, batch %d)", name, n, epochs, batch)
        return ok(self._op_view(name))

    @staticmethod
    def _training_inputs(name: str, emu: dict) -> TrainingInputs:
        return TrainingInputs(load=lambda: [learner.example_from_gemini_api(e) for e in emu["examples"]])

    @staticmethod
    def _advance(name: str, obj: dict, tl: Timeline, now: float) -> bool:
        """The job's timeline, as a tunedModel: CREATING until it ends, then ACTIVE or FAILED."""
        res = obj["resource"]
        changed = False
        if tl.start_time is not None and "startTime" not in res.get("tuningTask", {}):
            res["tuningTask"]["startTime"] = serving.rfc3339(tl.start_time)
            changed = True
        if tl.state not in ENDED:
            return changed
        res["state"] = "ACTIVE" if tl.state == "SUCCEEDED" else "FAILED"
        res["updateTime"] = serving.rfc3339(now)
        res["tuningTask"]["completeTime"] = serving.rfc3339(tl.end_time or now)
        obj["emu"]["final"] = {"state": tl.state, "error": tl.error, "completed_steps": tl.completed_steps}
        return True

    # ----------------------------------------------------------------------------------------------- views
    def _obj(self, name: str) -> dict:
        obj = self.store.get("tunedModels", name)
        if obj is None:
            raise not_found(name)
        return obj

    def _snapshots(self, e: dict, completed: int) -> list[dict]:
        losses = e.get("losses") or []
        step_s = e["step_s"]
        return [{"step": s, "epoch": ep, "meanLoss": loss, "computeTime": serving.rfc3339(
                    max(e["created"] + e["pending_s"], e.get("data_ready") or 0) + s * step_s)}
                for s, ep, loss in losses[:completed]]

    def _progress(self, obj: dict) -> Timeline:
        return self.jobs.timeline(obj["resource"]["name"], obj["emu"])

    def _resource_view(self, obj: dict) -> dict:
        res = {k: (dict(v) if isinstance(v, dict) else v) for k, v in obj["resource"].items()}
        tl = self._progress(obj)
        res["tuningTask"]["snapshots"] = self._snapshots(obj["emu"], tl.completed_steps)
        return res

    def _op_view(self, name: str) -> dict:
        self.jobs.tick(self.emu.now(), only=name)
        obj = self._obj(name)
        e = obj["emu"]
        tl = self._progress(obj)
        total = (tl.total_steps if tl.total_steps is not None
                 else learner.planned_steps(len(e["examples"]), hp_from_emu(e)))
        meta = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.CreateTunedModelMetadata",
                "tunedModel": name, "totalSteps": total, "completedSteps": tl.completed_steps,
                "completedPercent": round(100.0 * tl.completed_steps / total, 2) if total else 0.0,
                "snapshots": self._snapshots(e, tl.completed_steps)}
        view = {"name": e["operation"], "metadata": meta}
        if tl.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            view["done"] = True
            if tl.state == "SUCCEEDED":
                view["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.TunedModel",
                                    **self._resource_view(obj)}
            else:
                view["error"] = rpc_status(tl.error or {"code": 2, "message": "Tuning failed."})
        else:
            view["done"] = False
        return view

    # ----------------------------------------------------------------------------------------------- handlers
    async def get(self, request, ver, id):
        _check_auth(request)
        self.jobs.tick(self.emu.now(), only=f"tunedModels/{id}")
        return ok(self._resource_view(self._obj(f"tunedModels/{id}")))

    async def list(self, request):
        _check_auth(request)
        items = sorted(self.store.values("tunedModels"), key=lambda o: o["resource"]["createTime"])
        flt = (request.query.get("filter") or "").strip().lower()
        if flt and ":" not in flt:  # full-text over display name and description
            items = [o for o in items if flt in (o["resource"].get("displayName", "") + " " +
                                                 o["resource"].get("description", "")).lower()]
        return list_response(request, "tunedModels", items, default_size=10, view=self._resource_view)

    async def patch(self, request, ver, id):
        _check_auth(request)
        name = f"tunedModels/{id}"
        obj = self._obj(name)
        mask = request.query.get("updateMask")
        if not mask:
            raise ApiError(400, "* UpdateTunedModelRequest.update_mask: update_mask is required")
        body = await json_body(request)
        for field in [f.strip() for f in mask.split(",") if f.strip()]:
            key = wire.camel(field)   # mask paths are field paths: display_name and displayName alike
            if key not in ("displayName", "description", "temperature", "topP", "topK", "readerProjectNumbers"):
                raise ApiError(400, f"* UpdateTunedModelRequest.update_mask: field {field!r} cannot be updated")
            obj["resource"][key] = body.get(key)
        obj["resource"]["updateTime"] = serving.rfc3339(self.emu.now())
        self.store.put("tunedModels", name, obj)
        return ok(self._resource_view(obj))

    async def delete(self, request, ver, id):
        _check_auth(request)
        name = f"tunedModels/{id}"
        self._obj(name)
        self.store.delete("tunedModels", name)
        self.jobs.forget(name)
        self._models.pop(name, None)
        return ok({})

    async def get_operation(self, request, ver, id, op):
        _check_auth(request)
        view = self._op_view(f"tunedModels/{id}")
        if view["name"] != f"tunedModels/{id}/operations/{op}":
            raise not_found(f"tunedModels/{id}/operations/{op}")
        return ok(view)

    async def list_operations(self, request, ver, id):
        _check_auth(request)
        return ok({"operations": [self._op_view(f"tunedModels/{id}")]})

    async def cancel_operation(self, request, ver, id, op):
        _check_auth(request)
        name = f"tunedModels/{id}"
        obj = self._obj(name)
        if obj["emu"]["operation"] != f"{name}/operations/{op}":
            raise not_found(f"{name}/operations/{op}")
        if obj["resource"]["state"] == "CREATING":
            self.jobs.cancel(name, obj)
        return ok({})

    async def generate(self, request, ver, id):
        _check_auth(request)
        name = f"tunedModels/{id}"
        obj = self._obj(name)
        if obj["resource"]["state"] != "ACTIVE":
            raise ApiError(400, f"Tuned model {name} is not ready (state {obj['resource']['state']}).",
                           status="FAILED_PRECONDITION")
        body = await json_body(request)
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = learner.TunedModel.load(self.store.artifact_path(name))
        return ok(serving.generate(model, obj["resource"]["baseModel"], body, vertex=False, model_version=name))

    async def base_generate(self, request, ver, model):
        _check_auth(request)
        if not model.startswith("gemini-"):
            raise ApiError(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                                "generateContent.")
        body = await json_body(request)
        return ok(serving.generate(None, model, body, vertex=False, model_version=model))

