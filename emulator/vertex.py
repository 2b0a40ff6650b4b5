"""Vertex AI surface: tuningJobs, Model Registry, endpoints, operations, batch prediction, generateContent.

Paths are served under both ``/v1`` and ``/v1beta1`` (google-genai uses v1beta1; the GAPIC clients v1); operations
also under ``/ui`` (the GAPIC REST operations client polls there). Requests may carry enums as strings or integers
and int64 values as strings or numbers; responses use enum strings, as Google's do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from urllib.parse import quote

import requests

from . import learner, serving, wire
from .common import json_body, matches, ok, page, parse_filter
from .errors import ApiError, failed_precondition, invalid_argument, not_found, rpc_status
from .store import new_numeric_id
from .training import DataError, Trainer, checkpoint_artifact, hp_from_emu, new_emu_state, read_gcs_jsonl, timeline

log = logging.getLogger("emulator.vertex")

P = r"/(?P<ver>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"

ADAPTER_BY_INT = {0: "ADAPTER_SIZE_UNSPECIFIED", 1: "ADAPTER_SIZE_ONE", 6: "ADAPTER_SIZE_TWO", 2: "ADAPTER_SIZE_FOUR",
                  3: "ADAPTER_SIZE_EIGHT", 4: "ADAPTER_SIZE_SIXTEEN", 5: "ADAPTER_SIZE_THIRTY_TWO"}
JOB_STATE_BY_INT = {0: "JOB_STATE_UNSPECIFIED", 1: "JOB_STATE_QUEUED", 2: "JOB_STATE_PENDING", 3: "JOB_STATE_RUNNING",
                    4: "JOB_STATE_SUCCEEDED", 5: "JOB_STATE_FAILED", 6: "JOB_STATE_CANCELLING",
                    7: "JOB_STATE_CANCELLED", 8: "JOB_STATE_PAUSED", 9: "JOB_STATE_EXPIRED", 10: "JOB_STATE_UPDATING",
                    11: "JOB_STATE_PARTIALLY_SUCCEEDED"}
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
_AIP_TYPE = re.compile(r"google\.cloud\.aiplatform\.v1(?:beta1)?\.")   # in an Any @type URL

# Gemini models that can be tuned (docs, Oct 2026) and the adapter sizes each accepts.
_TUNABLE = [
    (re.compile(r"^gemini-2\.5-pro(-\d{3}|-preview[\w.-]*)?$"), {1, 2, 4, 8}),
    (re.compile(r"^gemini-2\.0-flash(-lite)?-001$"), {1, 2, 4, 8}),
    (re.compile(r"^gemini-2\.5-flash(-lite)?(-\d{3}|-preview[\w.-]*)?$"), {1, 2, 4, 8, 16}),
    (re.compile(r"^gemini-3\.1-flash-lite(-preview[\w.-]*)?$"), {1, 2, 4, 8, 16}),
    (re.compile(r"^gemini-3\.5-flash(-preview[\w.-]*)?$"), {1, 2, 4, 8, 16}),
]
GEMINI3_LOCATIONS = {"us-central1", "europe-west4"}
DEFAULT_EPOCHS = 3
DEFAULT_ADAPTER = "ADAPTER_SIZE_FOUR"
VERTEX_BATCH_SIZE = 8
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")


def _enum(value, by_int: dict, field: str) -> str:
    if isinstance(value, bool):
        raise invalid_argument(field, f"Invalid value for enum field {field}: {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        if int(value) in by_int:
            return by_int[int(value)]
    elif isinstance(value, str) and value in by_int.values():
        return value
    raise invalid_argument(field, f"Invalid value for enum field {field}: {value!r}")


def _int64(value, field: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise invalid_argument(field, f"Invalid value for int64 field {field}: {value!r}") from None


def _gcs_jsonl_uri(uri, field: str) -> str:
    if (not isinstance(uri, str) or not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/.+", uri)
            or not uri.endswith(".jsonl")):
        raise invalid_argument(field, f"{field.rsplit('.', 1)[-1]} should be a GCS object of type JSONL.")
    return uri


def _check_labels(labels, field: str = "tuning_job.labels") -> dict:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or len(labels) > 64:
        raise invalid_argument(field, "labels must be a map of at most 64 entries.")
    for k, v in labels.items():
        if not _LABEL_KEY.match(str(k)) or not isinstance(v, str) or not _LABEL_VALUE.match(v):
            raise invalid_argument(field, f"Invalid label {k!r}={v!r}: keys and values may contain only lowercase "
                                          "letters, digits, '_' and '-', at most 63 characters; "
                                          "keys start with a letter.")
    return dict(labels)


def tunable_adapters(base_model: str) -> set[int] | None:
    for rx, adapters in _TUNABLE:
        if rx.match(base_model):
            return adapters
    return None


class VertexService:
    def __init__(self, emu):
        self.emu = emu
        self.store = emu.store
        self.trainer = Trainer(emu)
        self._models: dict[str, learner.TunedModel] = {}
        self._active: set[str] = set()
        self._batch_running: set[str] = set()
        self._metrics_written: dict[str, int] = {}
        emu.tickers.append(self.tick)
        emu.startup_hooks.append(self.resume)
        r = emu.router
        r.add("POST", P + r"/tuningJobs", self.create_tuning_job)
        r.add("GET", P + r"/tuningJobs", self.list_tuning_jobs)
        r.add("GET", P + r"/tuningJobs/(?P<id>[^/:]+)", self.get_tuning_job)
        r.add("POST", P + r"/tuningJobs/(?P<id>[^/:]+):cancel", self.cancel_tuning_job)
        r.add("GET", P + r"/metadataStores/default/contexts/(?P<id>[^/:]+)", self.get_context)
        r.add("POST", P + r"/endpoints/(?P<id>[^/:]+):generateContent", self.endpoint_generate)
        r.add("POST", P + r"/publishers/google/models/(?P<model>[^/:]+):generateContent", self.base_generate)
        r.add("GET", P + r"/models", self.list_models)
        r.add("GET", P + r"/models/(?P<id>[^/:@]+):listVersions", self.list_versions)
        r.add("POST", P + r"/models/(?P<id>[^/:@]+)(?:@(?P<version>[^/:]+))?:mergeVersionAliases", self.merge_aliases)
        r.add("DELETE", P + r"/models/(?P<id>[^/:@]+)@(?P<version>[^/:]+):deleteVersion", self.delete_version)
        r.add("GET", P + r"/models/(?P<id>[^/:@]+)(?:@(?P<version>[^/:]+))?", self.get_model)
        r.add("PATCH", P + r"/models/(?P<id>[^/:@]+)(?:@(?P<version>[^/:]+))?", self.update_model)
        r.add("DELETE", P + r"/models/(?P<id>[^/:@]+)", self.delete_model)
        r.add("GET", P + r"/endpoints/(?P<id>[^/:]+)", self.get_endpoint)
        r.add("POST", P + r"/endpoints/(?P<id>[^/:]+):undeployModel", self.undeploy_model)
        r.add("DELETE", P + r"/endpoints/(?P<id>[^/:]+)", self.delete_endpoint)
        r.add("GET", r"/(?P<ver>v1|v1beta1|ui)/(?P<name>projects/[^/]+/locations/[^/]+/(?:[^:]+/)?operations/[^/:]+)",
              self.get_operation)
        r.add("POST", P + r"/batchPredictionJobs", self.create_batch)
        r.add("GET", P + r"/batchPredictionJobs", self.list_batches)
        r.add("GET", P + r"/batchPredictionJobs/(?P<id>[^/:]+)", self.get_batch)
        r.add("POST", P + r"/batchPredictionJobs/(?P<id>[^/:]+):cancel", self.cancel_batch)
        r.add("DELETE", P + r"/batchPredictionJobs/(?P<id>[^/:]+)", self.delete_batch)

    # ================================================================= tuning jobs
    async def create_tuning_job(self, request, ver, project, location):
        body = await json_body(request)
        base = body.get("baseModel")
        pre = None
        if body.get("preTunedModel") is not None:
            if base:
                raise invalid_argument("tuning_job.base_model",
                                       "base_model and pre_tuned_model are mutually exclusive (oneof source_model).")
            pre = self._pre_tuned(body["preTunedModel"], project, location)
            base = pre["baseModel"]
        if not base:
            raise invalid_argument("tuning_job.base_model", "base_model is required.")
        base = str(base).removeprefix("publishers/google/models/")
        adapters = tunable_adapters(base)
        if adapters is None:
            raise invalid_argument("tuning_job.base_model",
                                   f"Base model {base} is not supported for supervised tuning.")
        if base.startswith("gemini-3") and location not in GEMINI3_LOCATIONS:
            raise invalid_argument("tuning_job.base_model",
                                   f"Tuning {base} is only supported in {', '.join(sorted(GEMINI3_LOCATIONS))}.")
        spec = body.get("supervisedTuningSpec")
        if not isinstance(spec, dict):
            raise invalid_argument("tuning_job.supervised_tuning_spec", "supervised_tuning_spec is required.")
        train_uri = _gcs_jsonl_uri(spec.get("trainingDatasetUri"),
                                   "tuning_job.supervised_tuning_spec.training_dataset_uri")
        val_uri = spec.get("validationDatasetUri")
        if val_uri:
            _gcs_jsonl_uri(val_uri, "tuning_job.supervised_tuning_spec.validation_dataset_uri")
        hp_in = spec.get("hyperParameters") or {}
        epochs = _int64(hp_in.get("epochCount", DEFAULT_EPOCHS),
                        "tuning_job.supervised_tuning_spec.hyper_parameters.epoch_count")
        if not 1 <= epochs <= 100:
            raise invalid_argument("tuning_job.supervised_tuning_spec.hyper_parameters.epoch_count",
                                   f"epoch_count must be between 1 and 100, got {epochs}.")
        lrm = hp_in.get("learningRateMultiplier", 1.0)
        try:
            lrm = float(lrm)
        except (TypeError, ValueError):
            lrm = -1.0
        if not 0 < lrm <= 100:
            raise invalid_argument("tuning_job.supervised_tuning_spec.hyper_parameters.learning_rate_multiplier",
                                   "learning_rate_multiplier must be in (0, 100].")
        adapter = _enum(hp_in.get("adapterSize", pre["adapter"] if pre else DEFAULT_ADAPTER), ADAPTER_BY_INT,
                        "tuning_job.supervised_tuning_spec.hyper_parameters.adapter_size")
        if adapter == "ADAPTER_SIZE_UNSPECIFIED":
            adapter = pre["adapter"] if pre else DEFAULT_ADAPTER
        if pre and adapter != pre["adapter"]:   # [unverified] Google's exact rule and message
            raise invalid_argument("tuning_job.supervised_tuning_spec.hyper_parameters.adapter_size",
                                   f"Continuous tuning keeps the pre-tuned model's adapter size {pre['adapter']}; "
                                   f"got {adapter}.")
        rank = learner.ADAPTER_RANKS[adapter]
        if rank not in adapters:
            raise invalid_argument("tuning_job.supervised_tuning_spec.hyper_parameters.adapter_size",
                                   f"Adapter size {adapter} is not supported for {base}; "
                                   f"supported: {sorted(adapters)}.")
        batch = hp_in.get("batchSize")
        batch = (_int64(batch, "tuning_job.supervised_tuning_spec.hyper_parameters.batch_size") if batch
                 else VERTEX_BATCH_SIZE)
        display = body.get("tunedModelDisplayName") or ""
        if len(display) > 128:
            raise invalid_argument("tuning_job.tuned_model_display_name",
                                   "tuned_model_display_name must be at most 128 characters.")
        labels = _check_labels(body.get("labels"))
        job_id = new_numeric_id()
        name = f"projects/{project}/locations/{location}/tuningJobs/{job_id}"
        now = self.emu.now()
        hp = learner.HyperParams(epochs=epochs, learning_rate=learner.vertex_learning_rate(lrm), batch_size=batch,
                                 adapter_rank=rank, seed=int(job_id) % (2**31))
        plan = self.emu.faults.take_job_failure(display)
        emu = new_emu_state(self.emu.config, hp=hp, fail_plan=plan.to_dict() if plan else None, now=now)
        emu.update(kind="vertex", train_uri=train_uri, val_uri=val_uri, ver=ver)
        if pre:
            emu.update(init_artifact=pre["artifact"], parent_model=pre["model"])
        hyper_out = {"epochCount": str(epochs), "learningRateMultiplier": lrm, "adapterSize": adapter}
        out_spec = {"trainingDatasetUri": train_uri, "hyperParameters": hyper_out}
        if val_uri:
            out_spec["validationDatasetUri"] = val_uri
        if spec.get("exportLastCheckpointOnly"):
            out_spec["exportLastCheckpointOnly"] = True
        source = ({"preTunedModel": {k: pre[k] for k in ("tunedModelName", "checkpointId", "baseModel")}} if pre
                  else {"baseModel": base})
        resource = {"name": name, **source, "supervisedTuningSpec": out_spec, "state": "JOB_STATE_PENDING",
                    "createTime": serving.rfc3339(now), "updateTime": serving.rfc3339(now),
                    "experiment": f"projects/{project}/locations/{location}/metadataStores/default/contexts/"
                                  f"tuning-experiment-{job_id}"}
        if display:
            resource["tunedModelDisplayName"] = display
        if body.get("description"):
            resource["description"] = str(body["description"])
        if labels:
            resource["labels"] = labels
        self.store.put("tuningJobs", name, {"resource": resource, "emu": emu})
        self._active.add(name)
        self._start_training(name)
        log.info("created %s (%s, %d epochs, lr x%s, %s)", name, base, epochs, lrm, adapter)
        return ok(self._view(name, ver))

    def _pre_tuned(self, pre, project: str, location: str) -> dict:
        """Validates ``preTunedModel`` (continuous tuning) and resolves what the job starts from: the model
        version, its checkpoint (default: the version's default checkpoint) and that checkpoint's weights.
        [unverified] Google's exact codes and messages; the emulator answers 404 for a missing model or version
        and 400 (BadRequest field violation) for a missing checkpoint or a model that is not a tuned Gemini model.
        """
        field = "tuning_job.pre_tuned_model"
        if not isinstance(pre, dict):
            raise invalid_argument(field, "pre_tuned_model must be an object.")
        ref = pre.get("tunedModelName")
        m = re.match(r"^projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/models/(?P<id>[^/@]+)(?:@(?P<v>[^/@]+))?$",
                     str(ref or ""))
        if not m:
            raise invalid_argument(f"{field}.tuned_model_name",
                                   "tuned_model_name must be projects/{project}/locations/{location}/models/{model}"
                                   "[@{version_id}|@{alias}].")
        if m["l"] != location:
            raise invalid_argument(f"{field}.tuned_model_name",
                                   f"The pre-tuned model is in {m['l']}; the tuning job must run in the same "
                                   f"location (got {location}).")
        model_name, model = self._model(m["p"], m["l"], m["id"])
        vid = self._version_id(model, m["v"])
        version = model["versions"][vid]
        if not version.get("artifact") or not version.get("checkpoints"):
            raise invalid_argument(f"{field}.tuned_model_name",
                                   f"{model_name}@{vid} is not a tuned Gemini model; continuous tuning starts from "
                                   "a model produced by a supervised tuning job.")
        ckpt_id = str(pre.get("checkpointId") or version.get("defaultCheckpointId") or "")
        ckpt = next((c for c in version["checkpoints"] if c["checkpointId"] == ckpt_id), None)
        if ckpt is None:
            raise invalid_argument(f"{field}.checkpoint_id",
                                   f"Checkpoint {ckpt_id!r} does not exist in {model_name}@{vid}; it has "
                                   f"{[c['checkpointId'] for c in version['checkpoints']]}.")
        job = self.store.get("tuningJobs", version["artifact"]) or {}
        rank = (job.get("emu") or {}).get("hp", {}).get("adapter_rank", learner.ADAPTER_RANKS[DEFAULT_ADAPTER])
        adapter = next(k for k, v in learner.ADAPTER_RANKS.items() if v == rank)
        return {"tunedModelName": str(ref), "checkpointId": ckpt_id, "baseModel": version["baseModel"],
                "model": model_name, "artifact": ckpt.get("artifact") or version["artifact"], "adapter": adapter}

    def _start_training(self, name: str) -> None:
        obj = self.store.get("tuningJobs", name)
        emu = obj["emu"]
        limit = self.emu.config.max_training_examples
        gcs = self.emu.config.gcs_url

        def read(uri: str, what: str) -> list[learner.Example]:
            examples = []
            for lineno, row in read_gcs_jsonl(gcs, uri, limit=limit, what=f"{what.capitalize()} data"):
                try:
                    examples.append(learner.example_from_vertex(row))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    raise DataError(f"Invalid {what} example at line {lineno} of {uri}: {exc}") from None
            return examples

        def load():
            return read(emu["train_uri"], "training")

        def load_validation():     # same parsing and limit as the training data; errors fail the job the same way
            return read(emu["val_uri"], "validation")

        def on_data(n: int) -> None:
            cur = self.store.get("tuningJobs", name)
            if cur is None:
                return
            e = cur["emu"]
            hp = hp_from_emu(e)
            e["n_examples"] = n
            e["steps"] = learner.planned_steps(n, hp)
            e["data_ready"] = self.emu.now()
            self.store.put("tuningJobs", name, cur)

        def on_done(records, exc, val_losses=None) -> None:
            cur = self.store.get("tuningJobs", name)
            if cur is None:
                return
            e = cur["emu"]
            if exc is not None:
                e["error"] = {"code": 3, "message": str(exc)}
                e["error_at"] = self.emu.now()
            else:
                e["trained"] = True
                e["trained_at"] = self.emu.now()
                e["losses"] = [[r.step, r.epoch, r.loss] for r in records]
                if val_losses is not None:      # one [step, epoch, loss] per epoch (validationDatasetUri given)
                    e["val_losses"] = [list(v) for v in val_losses]
            self.store.put("tuningJobs", name, cur)
            self.tick(self.emu.now(), only=name)

        self.trainer.start(name, load, hp_from_emu(emu), on_data, on_done, init_artifact=emu.get("init_artifact"),
                           checkpoints=True, validation=load_validation if emu.get("val_uri") else None)

    def resume(self) -> None:
        """After a restart: pick up every job that has not reached a terminal state."""
        for name, obj in self.store.items("tuningJobs"):
            if obj["resource"]["state"] in TERMINAL:
                continue
            self._active.add(name)
            e = obj["emu"]
            if not e.get("trained") and e.get("error") is None and e.get("cancelled_at") is None:
                self._start_training(name)
        for name, obj in self.store.items("batchPredictionJobs"):
            if obj["resource"]["state"] not in TERMINAL:
                self._start_batch(name)

    def tick(self, now: float, only: str | None = None) -> None:
        """Advances active jobs (every job from the ticker; ``only`` one when a request asks about it)."""
        for name in ([only] if only is not None else list(self._active)):
            if name not in self._active:
                continue
            obj = self.store.get("tuningJobs", name)
            if obj is None:
                self._active.discard(name)
                continue
            tl = timeline(obj["emu"], now, self.trainer.progress.get(name))
            self._maybe_write_metrics(name, obj, tl.completed_steps)
            state = "JOB_STATE_" + tl.state
            res = obj["resource"]
            if state == res["state"]:
                continue
            res["state"] = state
            res["updateTime"] = serving.rfc3339(now)
            if tl.start_time is not None:
                res["startTime"] = serving.rfc3339(tl.start_time)
            if state in TERMINAL:
                res["endTime"] = serving.rfc3339(tl.end_time or now)
                if tl.error:
                    res["error"] = tl.error
                if state == "JOB_STATE_SUCCEEDED":
                    self._finalize(obj, now)
                self._active.discard(name)
            self.store.put("tuningJobs", name, obj)

    @staticmethod
    def _metrics_uri(obj: dict) -> str:
        bucket = obj["emu"]["train_uri"][len("gs://"):].split("/", 1)[0]
        return f"gs://{bucket}/tuning-metrics/{obj['resource']['name'].rsplit('/', 1)[1]}/"

    def _maybe_write_metrics(self, name: str, obj: dict, completed: int) -> None:
        """Writes ``{gcsMetricsUri}metrics.jsonl`` (one row per step: step, epoch, train_total_loss; with a
        validation dataset also one row per epoch: step, epoch, eval_total_loss, after that epoch's last train row)
        as training progresses, at most every 5% of the steps and once at the end; only completed steps' rows.
        [unverified format: see README; Vertex names the metrics /train_total_loss and /eval_total_loss]"""
        e = obj["emu"]
        losses = e.get("losses")
        if not losses or not self.emu.config.gcs_url:
            return
        written = self._metrics_written.get(name, 0)
        completed = min(completed, len(losses))
        if completed <= written or (completed < len(losses) and completed - written < max(1, len(losses) // 20)):
            return
        self._metrics_written[name] = completed
        start = e.get("data_ready") or e["created"]
        evals = {}
        for st, ep, loss in e.get("val_losses") or ():
            evals.setdefault(st, []).append((ep, loss))
        out = []
        for st, ep, loss in losses[:completed]:
            wall = serving.rfc3339(start + st * e["step_s"])
            out.append({"step": st, "epoch": ep, "train_total_loss": loss, "wall_time": wall})
            out.extend({"step": st, "epoch": vep, "eval_total_loss": vloss, "wall_time": wall}
                       for vep, vloss in evals.get(st, ()))
        rows = "".join(json.dumps(r) + "\n" for r in out)
        uri = self._metrics_uri(obj) + "metrics.jsonl"
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.emu.executor, _gcs_write, self.emu.config.gcs_url, uri, rows.encode())
        fut.add_done_callback(lambda f: f.exception() and log.warning("metrics write failed: %s", f.exception()))

    def _finalize(self, obj: dict, now: float) -> None:
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
        if res["supervisedTuningSpec"].get("exportLastCheckpointOnly"):
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

    def _view(self, name: str, ver: str) -> dict:
        obj = self.store.get("tuningJobs", name)
        if obj is None:
            raise not_found(name)
        res, e = dict(obj["resource"]), obj["emu"]
        if res.get("error"):
            res["error"] = rpc_status(res["error"])
        if e.get("n_examples") is not None:
            res["tuningDataStats"] = {"supervisedTuningDataStats": self._data_stats(e)}
        tl = timeline(e, self.emu.now(), self.trainer.progress.get(name))
        if ver == "v1beta1" and e.get("steps"):
            per_epoch = max(1, e["steps"] // e["hp"]["epochs"])
            res["tuningJobMetadata"] = {"completedStepCount": str(tl.completed_steps),
                                        "completedEpochCount": str(tl.completed_steps // per_epoch)}
            res["gcsMetricsUri"] = self._metrics_uri(obj)
        if ver == "v1beta1" and res["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
            if res["state"] == "JOB_STATE_PENDING":
                res["tuningJobState"] = "TUNING_JOB_STATE_PROCESSING_DATASET"
            else:
                res["tuningJobState"] = ("TUNING_JOB_STATE_POST_PROCESSING" if tl.percent >= 95
                                         else "TUNING_JOB_STATE_TUNING")
        return res

    @staticmethod
    def _data_stats(e: dict) -> dict:
        n = e["n_examples"]
        return {"tuningDatasetExampleCount": str(n), "tuningStepCount": str(e["steps"]),
                "totalTruncatedExampleCount": "0", "droppedExampleReasons": []}

    def _job_name(self, project, location, id) -> str:
        return f"projects/{project}/locations/{location}/tuningJobs/{id}"

    async def get_tuning_job(self, request, ver, project, location, id):
        name = self._job_name(project, location, id)
        self.tick(self.emu.now(), only=name)
        return ok(self._view(name, ver))

    async def list_tuning_jobs(self, request, ver, project, location):
        parent = f"projects/{project}/locations/{location}/"
        terms = parse_filter(request.query.get("filter"))
        jobs = [o["resource"] for o in self.store.values("tuningJobs") if o["resource"]["name"].startswith(parent)]
        jobs = [j for j in jobs if matches(j, terms)]
        jobs.sort(key=lambda j: j["createTime"], reverse=True)
        chunk, nxt = page(jobs, request, default_size=100, max_size=1000)
        out = {"tuningJobs": [self._view(j["name"], ver) for j in chunk]}
        if nxt:
            out["nextPageToken"] = nxt
        return ok(out)

    async def cancel_tuning_job(self, request, ver, project, location, id):
        name = self._job_name(project, location, id)
        obj = self.store.get("tuningJobs", name)
        if obj is None:
            raise not_found(name)
        self.tick(self.emu.now(), only=name)
        state = obj["resource"]["state"]
        if state in TERMINAL:
            raise failed_precondition(f"Cannot cancel tuning job {name} in state {state}.")
        obj["emu"]["cancelled_at"] = self.emu.now()
        self.store.put("tuningJobs", name, obj)
        self.tick(self.emu.now(), only=name)
        log.info("cancelled %s", name)
        return ok({})

    async def get_context(self, request, ver, project, location, id):
        name = f"projects/{project}/locations/{location}/metadataStores/default/contexts/{id}"
        job_id = id.removeprefix("tuning-experiment-")
        if self.store.get("tuningJobs", self._job_name(project, location, job_id)) is None:
            raise not_found(name)
        return ok({"name": name, "displayName": id, "schemaTitle": "system.Experiment", "schemaVersion": "0.0.1",
                   "metadata": {"experiment_deleted": False}})

    # ================================================================= serving
    def _load_model(self, artifact: str) -> learner.TunedModel:
        model = self._models.get(artifact)
        if model is None:
            model = learner.TunedModel.load(self.store.artifact_path(artifact))
            self._models[artifact] = model
        return model

    async def endpoint_generate(self, request, ver, project, location, id):
        name = f"projects/{project}/locations/{location}/endpoints/{id}"
        endpoint = self.store.get("endpoints", name)
        if endpoint is None:
            raise not_found(name)
        if not endpoint["deployedModels"]:
            raise failed_precondition(f"Endpoint {name} has no deployed model.")
        dm = endpoint["deployedModels"][0]
        model = self.store.get("models", dm["model"])
        version = (model or {}).get("versions", {}).get(dm["modelVersionId"])
        if version is None:
            raise failed_precondition(f"The model deployed on {name} no longer exists.")
        body = await json_body(request)
        artifact = _checkpoint_weights(version, dm.get("checkpointId"))
        tuned = await asyncio.get_running_loop().run_in_executor(self.emu.executor, self._load_model, artifact)
        return ok(serving.generate(tuned, version["baseModel"], body, vertex=True,
                                   model_version=f"{dm['model']}@{dm['modelVersionId']}"))

    async def base_generate(self, request, ver, project, location, model):
        if not model.startswith("gemini-"):
            raise ApiError(404, f"Publisher Model `projects/{project}/locations/{location}/publishers/google/models/"
                                f"{model}` was not found or your project does not have access to it.")
        body = await json_body(request)
        return ok(serving.generate(None, model, body, vertex=True, model_version=model))

    # ================================================================= model registry
    def _model(self, project, location, id) -> tuple[str, dict]:
        name = f"projects/{project}/locations/{location}/models/{id}"
        model = self.store.get("models", name)
        if model is None:
            raise not_found(name)
        return name, model

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
        views = [v for v in views if matches(v, terms)]
        chunk, nxt = page(views, request, default_size=100, max_size=1000)
        out = {"models": chunk}
        if nxt:
            out["nextPageToken"] = nxt
        return ok(out)

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
                model["versions"][vid]["labels"] = _check_labels(body.get("labels") or {}, "model.labels")
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

    def _operation(self, parent: str, metadata_type: str, response: dict | None, ver: str = "v1") -> dict:
        now = self.emu.now()
        op = {"name": f"{parent}/operations/{new_numeric_id()}", "ver": ver,
              "metadata": {"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{metadata_type}",
                           "genericMetadata": {"createTime": serving.rfc3339(now), "updateTime": serving.rfc3339(now)}},
              "done_at": now + self.emu.config.lro_seconds,
              "response": response or {"@type": "type.googleapis.com/google.protobuf.Empty"}}
        self.store.put("operations", op["name"], op)
        return self._op_view(op, ver)

    def _op_view(self, op: dict, ver: str | None = None) -> dict:
        """A google.longrunning.Operation. Its Any payloads name the API version asked (a v1beta1 client unpacks
        v1beta1 types, a v1 client v1 types); ``/ui`` polls get the version the operation was started on."""
        ver = ver if ver in ("v1", "v1beta1") else op.get("ver", "v1")

        def typed(payload: dict) -> dict:
            return {**payload, "@type": _AIP_TYPE.sub(f"google.cloud.aiplatform.{ver}.", payload["@type"])}

        view = {"name": op["name"], "metadata": typed(op["metadata"])}
        if self.emu.now() >= op["done_at"]:
            view["done"] = True
            if op.get("error"):
                view["error"] = rpc_status(op["error"])
            else:
                view["response"] = typed(op["response"])
        return view

    async def get_operation(self, request, ver, name):
        op = self.store.get("operations", name)
        if op is None:
            raise not_found(name)
        return ok(self._op_view(op, ver))

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

    # ================================================================= endpoints
    def _endpoint(self, project, location, id) -> tuple[str, dict]:
        name = f"projects/{project}/locations/{location}/endpoints/{id}"
        endpoint = self.store.get("endpoints", name)
        if endpoint is None:
            raise not_found(name)
        return name, endpoint

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

    # ================================================================= batch prediction
    def _resolve_serving_model(self, ref: str, project: str, location: str):
        """A batch job's ``model``: a tuned Model Registry name (optionally @version/alias) or a publisher model."""
        m = re.match(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/(?P<m>[^/@]+)$", ref) or \
            re.match(r"^(?P<m>gemini-[^/@]+)$", ref)
        if m:
            return None, m["m"]
        m = re.match(r"^projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/models/(?P<id>[^/@]+)(?:@(?P<v>[^/]+))?$", ref)
        if not m:
            raise invalid_argument("batch_prediction_job.model", f"Invalid model name {ref!r}.")
        if location == "global":
            raise invalid_argument("batch_prediction_job.model", "Tuned models are not supported for batch prediction "
                                                                 "in the global location.")
        _, model = self._model(m["p"], m["l"], m["id"])
        vid = self._version_id(model, m["v"])
        version = model["versions"][vid]
        return _checkpoint_weights(version, None), version["baseModel"]    # [unverified] the default checkpoint

    async def create_batch(self, request, ver, project, location):
        body = await json_body(request)
        model_ref = body.get("model")
        if not model_ref:
            raise invalid_argument("batch_prediction_job.model", "model is required.")
        self._resolve_serving_model(model_ref, project, location)
        inp = body.get("inputConfig") or {}
        uris = ((inp.get("gcsSource") or {}).get("uris")) or []
        if inp.get("instancesFormat") != "jsonl" or not uris or not all(str(u).startswith("gs://") for u in uris):
            raise invalid_argument("batch_prediction_job.input_config",
                                   "input_config must have instances_format 'jsonl' and gcs_source.uris (gs://...).")
        out = body.get("outputConfig") or {}
        prefix = ((out.get("gcsDestination") or {}).get("outputUriPrefix")) or ""
        if not prefix.startswith("gs://"):
            raise invalid_argument("batch_prediction_job.output_config",
                                   "output_config.gcs_destination.output_uri_prefix (gs://...) is required.")
        job_id = new_numeric_id()
        name = f"projects/{project}/locations/{location}/batchPredictionJobs/{job_id}"
        now = self.emu.now()
        resource = {"name": name, "displayName": body.get("displayName") or f"batch-{job_id}", "model": model_ref,
                    "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": list(uris)}},
                    "outputConfig": {"predictionsFormat": out.get("predictionsFormat", "jsonl"),
                                     "gcsDestination": {"outputUriPrefix": prefix}},
                    "state": "JOB_STATE_PENDING", "createTime": serving.rfc3339(now),
                    "updateTime": serving.rfc3339(now)}
        if body.get("labels"):
            resource["labels"] = _check_labels(body["labels"], "batch_prediction_job.labels")
        self.store.put("batchPredictionJobs", name, {"resource": resource, "emu": {"created": now}})
        self._start_batch(name)
        return ok(resource)

    def _start_batch(self, name: str) -> None:
        if name in self._batch_running:
            return
        self._batch_running.add(name)
        self.emu.spawn(self._run_batch(name))

    async def _run_batch(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.emu.config
        try:
            obj = self.store.get("batchPredictionJobs", name)
            res = obj["resource"]
            project, location = name.split("/")[1], name.split("/")[3]
            wait = obj["emu"]["created"] + cfg.pending_seconds * cfg.time_scale * 0.25 - self.emu.now()
            if wait > 0:
                await asyncio.sleep(wait)
            obj = self.store.get("batchPredictionJobs", name)
            if obj is None or obj["resource"]["state"] in TERMINAL:
                return
            self._set_batch_state(obj, "JOB_STATE_RUNNING")
            try:
                artifact, base = self._resolve_serving_model(res["model"], project, location)
                rows = []
                for uri in res["inputConfig"]["gcsSource"]["uris"]:
                    rows += await loop.run_in_executor(self.emu.executor,
                                                       lambda u=uri: read_gcs_jsonl(cfg.gcs_url, u, limit=10**7))
                tuned = await loop.run_in_executor(self.emu.executor, self._load_model, artifact) if artifact else None
            except (ApiError, DataError) as exc:
                self._fail_batch(name, str(exc))
                return
            planned_end = self.emu.now() + len(rows) * cfg.batch_item_seconds * cfg.time_scale
            lines, ok_count, failed = [], 0, 0
            for _, row in rows:
                request = row.get("request") if isinstance(row, dict) else None
                out = {"request": request}
                try:
                    if not isinstance(request, dict):
                        raise ApiError(400, "Each input line must be an object with a 'request' field.")
                    # each line's request is parsed as a GenerateContentRequest: either spelling of a field name
                    out["response"] = serving.generate(tuned, base, wire.camel_keys(request), vertex=True,
                                                       model_version=res["model"])
                    ok_count += 1
                except ApiError as exc:
                    out["status"] = exc.message
                    failed += 1
                out["processed_time"] = serving.rfc3339()
                lines.append(json.dumps(out))
            wait = planned_end - self.emu.now()
            if wait > 0:
                await asyncio.sleep(wait)
            obj = self.store.get("batchPredictionJobs", name)
            if obj is None or obj["resource"]["state"] in TERMINAL:
                return
            out_dir = (f"{res['outputConfig']['gcsDestination']['outputUriPrefix'].rstrip('/')}"
                       f"/prediction-model-{serving.rfc3339().replace(':', '').replace('.', '')}")
            try:
                await loop.run_in_executor(self.emu.executor, _gcs_write, cfg.gcs_url, f"{out_dir}/predictions.jsonl",
                                           ("\n".join(lines) + "\n").encode())
            except requests.RequestException as exc:
                self._fail_batch(name, f"Failed to write predictions: {exc}")
                return
            obj["resource"]["outputInfo"] = {"gcsOutputDirectory": out_dir}
            obj["resource"]["completionStats"] = {"successfulCount": str(ok_count), "failedCount": str(failed),
                                                  "incompleteCount": "0"}
            self._set_batch_state(obj, "JOB_STATE_SUCCEEDED")
        finally:
            self._batch_running.discard(name)

    def _set_batch_state(self, obj: dict, state: str, error: dict | None = None) -> None:
        now = self.emu.now()
        res = obj["resource"]
        res["state"] = state
        res["updateTime"] = serving.rfc3339(now)
        if state == "JOB_STATE_RUNNING":
            res["startTime"] = serving.rfc3339(now)
        if state in TERMINAL:
            res["endTime"] = serving.rfc3339(now)
        if error:
            res["error"] = error
        self.store.put("batchPredictionJobs", res["name"], obj)

    def _fail_batch(self, name: str, message: str) -> None:
        obj = self.store.get("batchPredictionJobs", name)
        if obj is not None:
            self._set_batch_state(obj, "JOB_STATE_FAILED", {"code": 3, "message": message})

    def _batch(self, project, location, id) -> dict:
        name = f"projects/{project}/locations/{location}/batchPredictionJobs/{id}"
        obj = self.store.get("batchPredictionJobs", name)
        if obj is None:
            raise not_found(name)
        return obj

    async def get_batch(self, request, ver, project, location, id):
        return ok(self._batch(project, location, id)["resource"])

    async def list_batches(self, request, ver, project, location):
        parent = f"projects/{project}/locations/{location}/"
        terms = parse_filter(request.query.get("filter"))
        items = [o["resource"] for o in self.store.values("batchPredictionJobs")
                 if o["resource"]["name"].startswith(parent) and matches(o["resource"], terms)]
        items.sort(key=lambda j: j["createTime"], reverse=True)
        chunk, nxt = page(items, request, default_size=100, max_size=1000)
        out = {"batchPredictionJobs": chunk}
        if nxt:
            out["nextPageToken"] = nxt
        return ok(out)

    async def cancel_batch(self, request, ver, project, location, id):
        obj = self._batch(project, location, id)
        if obj["resource"]["state"] in TERMINAL:
            raise failed_precondition(f"Batch prediction job is already in state {obj['resource']['state']}.")
        self._set_batch_state(obj, "JOB_STATE_CANCELLED", {"code": 1, "message": "CANCELLED"})
        return ok({})

    async def delete_batch(self, request, ver, project, location, id):
        obj = self._batch(project, location, id)
        if obj["resource"]["state"] not in TERMINAL:
            raise failed_precondition("Cannot delete a batch prediction job that has not ended; cancel it first.")
        self.store.delete("batchPredictionJobs", obj["resource"]["name"])
        return ok(self._operation(f"projects/{project}/locations/{location}", "DeleteOperationMetadata", None,
                                  ver))


def _checkpoint_weights(version: dict, checkpoint_id: str | None) -> str:
    """The artifact serving a model version's checkpoint (None: the version's ``defaultCheckpointId``)."""
    wanted = checkpoint_id or version.get("defaultCheckpointId")
    ckpt = next((c for c in version.get("checkpoints") or () if c["checkpointId"] == wanted), None)
    return (ckpt or {}).get("artifact") or version["artifact"]


def _gcs_write(gcs_url: str, uri: str, data: bytes) -> None:
    bucket, _, name = uri[len("gs://"):].partition("/")
    resp = requests.post(f"{gcs_url}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
                         params={"uploadType": "media", "name": name}, data=data,
                         headers={"Content-Type": "application/x-ndjson"}, timeout=60)
    resp.raise_for_status()
