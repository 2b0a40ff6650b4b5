"""Tuning jobs (supervised and continuous tuning), their metrics files and experiment contexts.

A job's state over time is :class:`emulator.jobs.JobLifecycle`'s; :meth:`TuningJobs._advance` writes it into the
``TuningJob`` resource, and a succeeded job registers its model (:meth:`ModelRegistry._register_tuned_model`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

from .. import learner, serving
from ..common import json_body, list_response, matches, ok, parse_filter
from ..errors import failed_precondition, invalid_argument, not_found, rpc_status
from ..jobs import Timeline, TrainingInputs
from ..store import new_numeric_id
from ..training import DataError, read_gcs_jsonl
from .shared import ADAPTER_BY_INT, TERMINAL, check_labels, enum_value, gcs_jsonl_uri, gcs_write, int64, located

log = logging.getLogger("emulator.vertex")

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


def tunable_adapters(base_model: str) -> set[int] | None:
    for rx, adapters in _TUNABLE:
        if rx.match(base_model):
            return adapters
    return None



class TuningJobs:
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
        train_uri = gcs_jsonl_uri(spec.get("trainingDatasetUri"),
                                   "tuning_job.supervised_tuning_spec.training_dataset_uri")
        val_uri = spec.get("validationDatasetUri")
        if val_uri:
            gcs_jsonl_uri(val_uri, "tuning_job.supervised_tuning_spec.validation_dataset_uri")
        hp_in = spec.get("hyperParameters") or {}
        epochs = int64(hp_in.get("epochCount", DEFAULT_EPOCHS),
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
        adapter = enum_value(hp_in.get("adapterSize", pre["adapter"] if pre else DEFAULT_ADAPTER), ADAPTER_BY_INT,
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
        batch = (int64(batch, "tuning_job.supervised_tuning_spec.hyper_parameters.batch_size") if batch
                 else VERTEX_BATCH_SIZE)
        display = body.get("tunedModelDisplayName") or ""
        if len(display) > 128:
            raise invalid_argument("tuning_job.tuned_model_display_name",
                                   "tuned_model_display_name must be at most 128 characters.")
        labels = check_labels(body.get("labels"))
        job_id = new_numeric_id()
        name = f"projects/{project}/locations/{location}/tuningJobs/{job_id}"
        now = self.emu.now()
        hp = learner.HyperParams(epochs=epochs, learning_rate=learner.vertex_learning_rate(lrm), batch_size=batch,
                                 adapter_rank=rank, seed=int(job_id) % (2**31))
        emu = self.jobs.new_state(hp=hp, display_name=display, now=now)
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
        self.jobs.create(name, resource, emu)
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

    def _training_inputs(self, name: str, emu: dict) -> TrainingInputs:
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

        # the validation data: same parsing and limit as the training data; errors fail the job the same way
        return TrainingInputs(load=lambda: read(emu["train_uri"], "training"),
                              validation=(lambda: read(emu["val_uri"], "validation")) if emu.get("val_uri") else None,
                              init_artifact=emu.get("init_artifact"), checkpoints=True)

    def _advance(self, name: str, obj: dict, tl: Timeline, now: float) -> bool:
        """The job's timeline, as a TuningJob: ``JOB_STATE_`` + its state; metrics written as steps complete, the
        model registered when it succeeds."""
        self._maybe_write_metrics(name, obj, tl.completed_steps)
        state = "JOB_STATE_" + tl.state
        res = obj["resource"]
        if state == res["state"]:
            return False
        res["state"] = state
        res["updateTime"] = serving.rfc3339(now)
        if tl.start_time is not None:
            res["startTime"] = serving.rfc3339(tl.start_time)
        if state in TERMINAL:
            res["endTime"] = serving.rfc3339(tl.end_time or now)
            if tl.error:
                res["error"] = tl.error
            if state == "JOB_STATE_SUCCEEDED":
                self._register_tuned_model(obj, now)
        return True

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
        fut = loop.run_in_executor(self.emu.executor, gcs_write, self.emu.config.gcs_url, uri, rows.encode())
        fut.add_done_callback(lambda f: f.exception() and log.warning("metrics write failed: %s", f.exception()))

    def _view(self, name: str, ver: str) -> dict:
        obj = self.store.get("tuningJobs", name)
        if obj is None:
            raise not_found(name)
        res, e = dict(obj["resource"]), obj["emu"]
        if res.get("error"):
            res["error"] = rpc_status(res["error"])
        if e.get("n_examples") is not None:
            res["tuningDataStats"] = {"supervisedTuningDataStats": self._data_stats(e)}
        tl = self.jobs.timeline(name, e)
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
        self.jobs.tick(self.emu.now(), only=name)
        return ok(self._view(name, ver))

    async def list_tuning_jobs(self, request, ver, project, location):
        parent = f"projects/{project}/locations/{location}/"
        terms = parse_filter(request.query.get("filter"))
        jobs = [o["resource"] for o in self.store.values("tuningJobs") if o["resource"]["name"].startswith(parent)]
        jobs = [j for j in jobs if matches(j, terms)]
        jobs.sort(key=lambda j: j["createTime"], reverse=True)
        return list_response(request, "tuningJobs", jobs, default_size=100, view=lambda j: self._view(j["name"], ver))

    async def cancel_tuning_job(self, request, ver, project, location, id):
        name, obj = located(self.store, "tuningJobs", project, location, id)
        self.jobs.tick(self.emu.now(), only=name)
        state = obj["resource"]["state"]
        if state in TERMINAL:
            raise failed_precondition(f"Cannot cancel tuning job {name} in state {state}.")
        self.jobs.cancel(name, obj)
        log.info("cancelled %s", name)
        return ok({})

    async def get_context(self, request, ver, project, location, id):
        name = f"projects/{project}/locations/{location}/metadataStores/default/contexts/{id}"
        job_id = id.removeprefix("tuning-experiment-")
        if self.store.get("tuningJobs", self._job_name(project, location, job_id)) is None:
            raise not_found(name)
        return ok({"name": name, "displayName": id, "schemaTitle": "system.Experiment", "schemaVersion": "0.0.1",
                   "metadata": {"experiment_deleted": False}})
