"""Batch prediction jobs: created PENDING, RUNNING a quarter of the pending time later, SUCCEEDED once every
request has been answered (``batch_item_seconds`` each, time-scaled) and the predictions written to GCS.
A job that has not ended is run again after a restart."""

from __future__ import annotations

import asyncio
import json
import re

import requests

from .. import serving, wire
from ..common import json_body, list_response, matches, ok, parse_filter
from ..errors import ApiError, failed_precondition, invalid_argument
from ..store import new_numeric_id
from ..training import DataError, read_gcs_jsonl
from .shared import TERMINAL, check_labels, checkpoint_weights, gcs_write, located


class BatchPrediction:
    def resume_batches(self) -> None:
        """After a restart: run again every batch prediction job that has not ended."""
        for name, obj in self.store.items("batchPredictionJobs"):
            if obj["resource"]["state"] not in TERMINAL:
                self._start_batch(name)

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
        return checkpoint_weights(version, None), version["baseModel"]    # [unverified] the default checkpoint

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
            resource["labels"] = check_labels(body["labels"], "batch_prediction_job.labels")
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
                await loop.run_in_executor(self.emu.executor, gcs_write, cfg.gcs_url, f"{out_dir}/predictions.jsonl",
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
        return located(self.store, "batchPredictionJobs", project, location, id)[1]

    async def get_batch(self, request, ver, project, location, id):
        return ok(self._batch(project, location, id)["resource"])

    async def list_batches(self, request, ver, project, location):
        parent = f"projects/{project}/locations/{location}/"
        terms = parse_filter(request.query.get("filter"))
        items = [o["resource"] for o in self.store.values("batchPredictionJobs")
                 if o["resource"]["name"].startswith(parent) and matches(o["resource"], terms)]
        items.sort(key=lambda j: j["createTime"], reverse=True)
        return list_response(request, "batchPredictionJobs", items, default_size=100)

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
