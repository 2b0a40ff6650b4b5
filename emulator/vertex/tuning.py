"""Tuning jobs (supervised, preference and continuous tuning), their metrics files and experiment contexts, and
``publishers/google/models/{model}`` (the base-model catalogue of :mod:`emulator.models`).

A job's state over time is :class:`emulator.jobs.JobLifecycle`'s; :meth:`TuningJobs._advance` writes it into the
``TuningJob`` resource, and a succeeded job registers its model (:meth:`ModelRegistry._register_tuned_model`).

``create`` takes ``supervisedTuningSpec`` or ``preferenceOptimizationSpec`` (oneof ``tuning_spec``; the latter trains
with :func:`emulator.learner.train_preference`, DPO), from ``baseModel`` or ``preTunedModel``; the base model must be
in the catalogue, released, not retired (else 404) nor blocked for new tuning on the emulator's date (config
``today``; else 400), and support the method, the adapter size and the location (else 400).

Sub-states (``tuningJobState``, v1beta1 only): ``WAITING_FOR_QUOTA`` → ``PROCESSING_DATASET`` →
``WAITING_FOR_CAPACITY`` (all ``JOB_STATE_PENDING``) → ``TUNING`` → ``POST_PROCESSING`` (``JOB_STATE_RUNNING``).
Knobs, fixed when a job is created: ``POST /_emulator/config {"quota_wait_seconds": 1800,
"capacity_wait_seconds": 600}`` (nominal seconds, times ``time_scale``; default 0). ``tuningDataStats`` (see
:mod:`.datastats`) appears once the dataset has been processed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from functools import partial

from .. import learner, models, serving
from ..common import json_body, list_response, matches, ok, parse_filter
from ..errors import ApiError, failed_precondition, invalid_argument, not_found, rpc_status
from ..jobs import Timeline, TrainingInputs
from ..store import new_numeric_id
from ..training import DataError, read_gcs_jsonl
from . import datastats
from .shared import ADAPTER_BY_INT, TERMINAL, check_labels, enum_value, gcs_jsonl_uri, gcs_write, int64, located

log = logging.getLogger("emulator.vertex")

DEFAULT_EPOCHS = 3
# unverified: the preference-tuning default epoch count is not documented (the reference's example shows "1").
DEFAULT_PREFERENCE_EPOCHS = 1
DEFAULT_ADAPTER = "ADAPTER_SIZE_FOUR"
VERTEX_BATCH_SIZE = 8
SPECS = {"supervisedTuningSpec": ("supervised", "tuning_job.supervised_tuning_spec"),
         "preferenceOptimizationSpec": ("preference", "tuning_job.preference_optimization_spec")}


def tunable_adapters(base_model: str) -> set[int] | None:
    """The adapter sizes (ranks) supervised tuning accepts for ``base_model`` (None: not SFT-tunable); the
    catalogue's entry regardless of the emulator's date (see :mod:`emulator.models`)."""
    model = models.lookup(base_model)
    return set(model.sft_adapters) if model is not None and model.supervised else None


def _publisher_not_found(project: str, location: str, base: str) -> ApiError:
    # unverified: the exact text; 404 NOT_FOUND per "API requests referencing a retired model ID typically
    # returns a 404 error" (reference §5); the wording is the one Vertex uses for an unknown publisher model.
    return ApiError(404, f"Publisher Model `projects/{project}/locations/{location}/publishers/google/models/{base}` "
                         "was not found or your project does not have access to it.")


def check_base_model(emu_config, base: str, method: str, location: str, project: str, *,
                     continuous: bool) -> models.BaseModel:
    """The catalogue's checks of ``tuningJobs.create``: the base exists, is released and not retired (404), is
    not blocked for new tuning (400), supports ``method`` (and continuous tuning), in this location (400)."""
    model = models.lookup(base)
    what = "supervised tuning" if method == "supervised" else "preference tuning"
    if model is None or not (model.supervised or model.preference):
        raise invalid_argument("tuning_job.base_model", f"Base model {base} is not supported for {what}.")
    status = model.status(models.today(emu_config))
    if status in ("unreleased", "retired"):
        raise _publisher_not_found(project, location, base)
    if status == "tuning_blocked":
        # unverified: code, status and text. The docs say new tuning access is blocked one month before
        # retirement, not how the API answers; 400 INVALID_ARGUMENT on base_model, like other unsupported bases.
        raise invalid_argument("tuning_job.base_model",
                               f"Base model {base} is not supported for new tuning jobs: it retires on "
                               f"{model.retirement.isoformat()} and new tuning is blocked from "
                               f"{model.tuning_blocked_from.isoformat()}.")
    if method == "supervised" and not model.supervised:
        raise invalid_argument("tuning_job.base_model", f"Base model {base} is not supported for supervised tuning.")
    if method == "preference" and not model.preference:
        # unverified: Google's text for a base model without preference tuning.
        raise invalid_argument("tuning_job.base_model", f"Base model {base} is not supported for preference tuning.")
    if continuous and not model.continuous:
        # unverified: Google's text.
        raise invalid_argument("tuning_job.pre_tuned_model",
                               f"Continuous tuning is not supported for base model {base}.")
    if model.locations is not None and location not in model.locations:
        raise invalid_argument("tuning_job.base_model",
                               f"Tuning {base} is only supported in {', '.join(sorted(model.locations))}.")
    return model


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
        given = [k for k in SPECS if body.get(k) is not None]
        if len(given) > 1:
            raise invalid_argument("tuning_job.tuning_spec", "supervised_tuning_spec and preference_optimization_spec "
                                                              "are mutually exclusive (oneof tuning_spec).")
        spec_key = given[0] if given else "supervisedTuningSpec"
        method, fp = SPECS[spec_key]
        model = check_base_model(self.emu.config, base, method, location, project, continuous=pre is not None)
        adapters = model.sft_adapters if method == "supervised" else model.preference_adapters
        spec = body.get(spec_key)
        if not isinstance(spec, dict):
            raise invalid_argument(fp, f"{fp.rsplit('.', 1)[-1]} is required.")
        train_uri = gcs_jsonl_uri(spec.get("trainingDatasetUri"), f"{fp}.training_dataset_uri")
        val_uri = spec.get("validationDatasetUri")
        if val_uri:
            gcs_jsonl_uri(val_uri, f"{fp}.validation_dataset_uri")
        hp_in = spec.get("hyperParameters") or {}
        epochs = int64(hp_in.get("epochCount", DEFAULT_EPOCHS if method == "supervised" else DEFAULT_PREFERENCE_EPOCHS),
                       f"{fp}.hyper_parameters.epoch_count")
        if not 1 <= epochs <= 100:
            raise invalid_argument(f"{fp}.hyper_parameters.epoch_count",
                                   f"epoch_count must be between 1 and 100, got {epochs}.")
        lrm = hp_in.get("learningRateMultiplier", 1.0)
        try:
            lrm = float(lrm)
        except (TypeError, ValueError):
            lrm = -1.0
        if not 0 < lrm <= 100:
            raise invalid_argument(f"{fp}.hyper_parameters.learning_rate_multiplier",
                                   "learning_rate_multiplier must be in (0, 100].")
        adapter = enum_value(hp_in.get("adapterSize", pre["adapter"] if pre else DEFAULT_ADAPTER), ADAPTER_BY_INT,
                             f"{fp}.hyper_parameters.adapter_size")
        if adapter == "ADAPTER_SIZE_UNSPECIFIED":
            adapter = pre["adapter"] if pre else DEFAULT_ADAPTER
        if pre and adapter != pre["adapter"]:   # [unverified] Google's exact rule and message
            raise invalid_argument(f"{fp}.hyper_parameters.adapter_size",
                                   f"Continuous tuning keeps the pre-tuned model's adapter size {pre['adapter']}; "
                                   f"got {adapter}.")
        rank = learner.ADAPTER_RANKS[adapter]
        if rank not in adapters:
            # 400 INVALID_ARGUMENT as observed (python-genai#908: 'The adapter size is not supported for this base
            # model.'); unverified: the emulator's longer text.
            raise invalid_argument(f"{fp}.hyper_parameters.adapter_size",
                                   f"Adapter size {adapter} is not supported for {base}; "
                                   f"supported: {sorted(adapters)}.")
        batch = hp_in.get("batchSize") if method == "supervised" else None
        batch = (int64(batch, f"{fp}.hyper_parameters.batch_size") if batch
                 else VERTEX_BATCH_SIZE)
        beta = None
        if method == "preference":
            beta = hp_in.get("beta", learner.DEFAULT_BETA)
            if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 100:
                # unverified: the API's accepted range (the tutorial recommends 0.01 - 0.5; 0 prevents learning)
                raise invalid_argument(f"{fp}.hyper_parameters.beta", f"beta must be a number >= 0, got {beta!r}.")
            beta = float(beta)
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
        scale = self.emu.config.time_scale
        emu.update(kind="vertex", train_uri=train_uri, val_uri=val_uri, ver=ver, method=method, beta=beta,
                   max_example_tokens=self.emu.config.max_example_tokens or model.max_example_tokens,
                   quota_s=float(self.emu.config.quota_wait_seconds) * scale,
                   capacity_s=float(self.emu.config.capacity_wait_seconds) * scale)
        if pre:
            emu.update(init_artifact=pre["artifact"], parent_model=pre["model"])
        hyper_out = {"epochCount": str(epochs), "learningRateMultiplier": lrm, "adapterSize": adapter}
        if beta is not None:
            hyper_out["beta"] = beta
        out_spec = {"trainingDatasetUri": train_uri, "hyperParameters": hyper_out}
        if val_uri:
            out_spec["validationDatasetUri"] = val_uri
        if spec.get("exportLastCheckpointOnly"):
            out_spec["exportLastCheckpointOnly"] = True
        source = ({"preTunedModel": {k: pre[k] for k in ("tunedModelName", "checkpointId", "baseModel")}} if pre
                  else {"baseModel": base})
        resource = {"name": name, **source, spec_key: out_spec, "state": "JOB_STATE_PENDING",
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
        log.info("created %s (%s, %s, %d epochs, lr x%s, %s)", name, method, base, epochs, lrm, adapter)
        return ok(self._view(name, ver))

    async def get_publisher_model(self, request, ver, publisher, model):
        """``GET /{ver}/publishers/{publisher}/models/{model}`` (``aiplatform.publishers.models.get``): the catalogue's
        models (:mod:`emulator.models`) that are released and not retired on the emulator's date; 404 otherwise."""
        entry = models.lookup(model) if publisher == "google" else None
        if entry is None or entry.status(models.today(self.emu.config)) in ("unreleased", "retired"):
            # unverified: the exact text of the 404 (a retired model "typically returns a 404 error", §5)
            raise ApiError(404, f"Publisher Model `publishers/{publisher}/models/{model}` was not found or your "
                                "project does not have access to it.")
        return ok(models.publisher_model(entry, model))

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
        """Reads and validates the job's data (supervised: :func:`learner.example_from_vertex`; preference:
        :func:`learner.preference_example_from_vertex`, reference §1b). A malformed line fails the job with
        INVALID_ARGUMENT (code 3) naming the line: Vertex validates the dataset asynchronously, in
        ``TUNING_JOB_STATE_PROCESSING_DATASET`` ("Tuning job is validating the dataset"), not in ``create``.
        Training examples over the base model's token limit are dropped and counted in the data stats."""
        limit = self.emu.config.max_training_examples
        gcs = self.emu.config.gcs_url
        preference = emu.get("method") == "preference"
        max_tokens = emu.get("max_example_tokens") or models.MAX_EXAMPLE_TOKENS
        facts_box: dict = {}

        def read(uri: str, what: str, facts=None) -> list:
            examples = []
            for lineno, row in read_gcs_jsonl(gcs, uri, limit=limit, what=f"{what.capitalize()} data"):
                try:
                    ex = (learner.preference_example_from_vertex(row) if preference
                          else learner.example_from_vertex(row))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    kind = "preference " if preference else ""
                    raise DataError(f"Invalid {what} {kind}example at line {lineno} of {uri}: {exc}") from None
                if facts is not None:
                    keep = (facts.add(row, ex.prompt, [ex.chosen, ex.rejected]) if preference
                            else facts.add(row, ex.prompt, ex.output))
                    if not keep:
                        continue
                examples.append(ex)
            return examples

        def load_training() -> list:
            facts = (datastats.PreferenceFacts if preference else datastats.SupervisedFacts)(max_tokens)
            examples = read(emu["train_uri"], "training", facts)
            facts_box["stats"] = facts.to_dict()
            return examples

        def on_data(e: dict) -> None:
            if "stats" in facts_box:
                e["data_stats"] = facts_box["stats"]

        train_fn = val_loss = None
        if preference:
            beta = emu.get("beta")
            beta = learner.DEFAULT_BETA if beta is None else beta
            train_fn = partial(learner.train_preference, beta=beta)
            # unverified: Google's eval loss for preference tuning; the emulator: the pairwise DPO loss without
            # the reference model (see learner.preference_mean_loss)
            val_loss = partial(learner.preference_mean_loss, beta=beta)
        # the validation data: same parsing and limit as the training data; errors fail the job the same way
        return TrainingInputs(load=load_training,
                              validation=(lambda: read(emu["val_uri"], "validation")) if emu.get("val_uri") else None,
                              init_artifact=emu.get("init_artifact"), checkpoints=True, train=train_fn,
                              val_loss=val_loss, on_data=on_data)

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
        tl = self.jobs.timeline(name, e)
        # the stats are there as soon as the dataset has been processed (after PROCESSING_DATASET)
        if e.get("n_examples") is not None and tl.sub_state not in ("WAITING_FOR_QUOTA", "PROCESSING_DATASET"):
            key = ("preferenceOptimizationDataStats" if e.get("method") == "preference"
                   else "supervisedTuningDataStats")
            res["tuningDataStats"] = {key: self._data_stats(e)}
        if ver == "v1beta1" and e.get("steps"):
            per_epoch = max(1, e["steps"] // e["hp"]["epochs"])
            res["tuningJobMetadata"] = {"completedStepCount": str(tl.completed_steps),
                                        "completedEpochCount": str(tl.completed_steps // per_epoch)}
            res["gcsMetricsUri"] = self._metrics_uri(obj)
        if ver == "v1beta1" and res["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
            # unverified: which JobState goes with which sub-state (the enum says "while the overall JobState is
            # running"); the emulator: the quota wait, dataset processing and capacity wait are JOB_STATE_PENDING
            # (startTime = the first JOB_STATE_RUNNING), TUNING and POST_PROCESSING (the last 5% of the steps:
            # unverified) JOB_STATE_RUNNING.
            if res["state"] == "JOB_STATE_PENDING":
                res["tuningJobState"] = "TUNING_JOB_STATE_" + (tl.sub_state or "PROCESSING_DATASET")
            else:
                res["tuningJobState"] = ("TUNING_JOB_STATE_POST_PROCESSING" if tl.percent >= 95
                                         else "TUNING_JOB_STATE_TUNING")
        return res

    @staticmethod
    def _data_stats(e: dict) -> dict:
        stats = dict(e.get("data_stats") or {})
        if not stats:   # a job stored before the emulator computed stats
            stats = {"tuningDatasetExampleCount": str(e["n_examples"]), "totalTruncatedExampleCount": "0",
                     "droppedExampleReasons": []}
        stats["tuningStepCount"] = str(e["steps"])
        return stats

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
