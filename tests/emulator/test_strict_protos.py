"""Every response body the emulator produces parses strictly into Google's pinned protos.

The official REST clients parse with unknown fields ignored, so a field the emulator invents or misspells passes every
client test. Here each JSON body is parsed with ``json_format.Parse(text, message, ignore_unknown_fields=False)`` into
the protos of google-cloud-aiplatform 2.7.0 (``aiplatform_v1`` and ``aiplatform_v1beta1``: the emulator serves both)
and google-ai-generativelanguage 0.12.1. The only fields let through are those ``emulator.proto_gaps`` lists, stripped
at exactly the message they are listed under. Error envelopes have no proto of their own: their keys, code and status
are checked, and each ``details`` entry is parsed strictly as a ``google.protobuf.Any``.

One module-scoped fixture drives the emulator through every route and response kind and records each answer under a
kind; a test per kind parses its answers, and one more checks that every route answered successfully at least once.
"""

from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
import requests
from google.ai import generativelanguage_v1, generativelanguage_v1beta
from google.cloud import aiplatform_v1, aiplatform_v1beta1
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, descriptor_pool, empty_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2  # noqa: F401  (registers google.rpc.* for Any)

from emulator.proto_gaps import KNOWN_EXTRA_FIELDS
from harness.clients import BUCKET, LOCATION, PROJECT
from harness.data import demo_rows
from harness.waits import wait_until

pytestmark = pytest.mark.fast

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
VERTEX = {"v1": aiplatform_v1, "v1beta1": aiplatform_v1beta1}
GL = {"v1beta": generativelanguage_v1beta, "v1": generativelanguage_v1}
VERS = ("v1", "v1beta1")
KEY = {"x-goog-api-key": "test-key"}
TYPE = "type.googleapis.com/"
GL_TYPE = TYPE + "google.ai.generativelanguage.v1beta."
POOL = descriptor_pool.Default()


# ------------------------------------------------------------------------------------------------ strict parsing
def _strip_known_extras(value, descriptor, used: set | None = None, misnamed: list | None = None, at: str = ""):
    """Drops the fields KNOWN_EXTRA_FIELDS lists under this message's full name, recursively through nested messages,
    repeated fields, map values and ``Any`` payloads; everything else is left for the strict parse to judge, except
    proto field names (``tuned_model``) where Google writes the JSON name (``tunedModel``): Parse accepts both, so
    those are collected in ``misnamed``."""
    if not isinstance(value, dict):
        return value
    if descriptor.full_name == "google.protobuf.Any":
        url = value.get("@type", "")
        try:
            inner = POOL.FindMessageTypeByName(url.rpartition("/")[2])
        except KeyError:
            return value              # the strict parse reports the unresolvable @type
        rest = {k: v for k, v in value.items() if k != "@type"}
        return {"@type": url, **_strip_known_extras(rest, inner, used, misnamed, at)}
    if descriptor.full_name.startswith("google.protobuf."):
        return value                  # well-known types have JSON forms of their own
    extras = KNOWN_EXTRA_FIELDS.get(descriptor.full_name, {})
    fields = {**{f.name: f for f in descriptor.fields}, **{f.json_name: f for f in descriptor.fields}}
    out = {}
    for key, item in value.items():
        if key in extras:
            if used is not None:
                used.add((descriptor.full_name, key))
            continue
        f = fields.get(key)
        if f is not None and key != f.json_name and misnamed is not None:
            misnamed.append(f"{at}{key} (the JSON name of {descriptor.full_name}.{f.name} is {f.json_name!r})")
        where = f"{at}{key}."
        if f is None or f.message_type is None:
            out[key] = item
        elif f.message_type.GetOptions().map_entry:
            vtype = f.message_type.fields_by_name["value"].message_type
            out[key] = ({k: _strip_known_extras(v, vtype, used, misnamed, f"{at}{key}[{k!r}].")
                         for k, v in item.items()} if vtype is not None and isinstance(item, dict) else item)
        elif f.is_repeated:
            out[key] = ([_strip_known_extras(v, f.message_type, used, misnamed, f"{at}{key}[{i}].")
                         for i, v in enumerate(item)] if isinstance(item, list) else item)
        else:
            out[key] = _strip_known_extras(item, f.message_type, used, misnamed, where)
    return out


def strict_parse(text: str, message_cls) -> None:
    """Raises json_format.ParseError naming the first field the proto does not have (or a proto name used where
    Google writes the JSON name)."""
    misnamed: list[str] = []
    data = _strip_known_extras(json.loads(text), message_cls.DESCRIPTOR, misnamed=misnamed)
    json_format.Parse(json.dumps(data), message_cls(), ignore_unknown_fields=False)
    if misnamed:
        raise json_format.ParseError("proto field names where the JSON names belong: " + "; ".join(misnamed))


def check_error_envelope(status: int, text: str) -> None:
    body = json.loads(text)
    assert set(body) == {"error"}, f"top-level keys {sorted(body)}, expected only 'error'"
    err = body["error"]
    assert set(err) <= {"code", "message", "status", "details"}, f"unexpected keys {sorted(err)}"
    assert type(err["code"]) is int and err["code"] == status, f"code {err['code']!r} for HTTP {status}"
    assert isinstance(err.get("message"), str) and err["message"], "message missing"
    assert err.get("status") in code_pb2.Code.keys(), f"status {err.get('status')!r} is not a google.rpc.Code name"
    for detail in err.get("details", []):
        assert isinstance(detail, dict) and "@type" in detail, f"detail without @type: {detail}"
        strict_parse(json.dumps(detail), any_pb2.Any)
    strict_parse(json.dumps({k: v for k, v in err.items() if k != "status"}), status_pb2.Status)


# ------------------------------------------------------------------------------------------------ the recorder
@dataclass
class Answer:
    kind: str
    method: str
    path: str
    status: int
    text: str
    message: type | None          # raw protobuf class; None: an error envelope
    any_types: dict = field(default_factory=dict)   # top-level Any field -> expected @type


class Recorder:
    def __init__(self, url: str):
        self.url = url
        self.kinds: dict[str, list[Answer]] = defaultdict(list)
        self.calls: list[tuple[str, str, int]] = []

    def call(self, method: str, path: str, *, kind: str | None = None, message=None, expect: int = 200,
             any_types: dict | None = None, **kw) -> dict:
        kw.setdefault("timeout", 30)
        resp = requests.request(method, self.url + path, **kw)
        self.calls.append((method, path, resp.status_code))
        assert resp.status_code == expect, f"{method} {path}: HTTP {resp.status_code} {resp.text[:800]}"
        if kind is not None:
            self.kinds[kind].append(Answer(kind, method, path, resp.status_code, resp.text, message,
                                           any_types or {}))
        return resp.json()

    def error(self, kind: str, method: str, path: str, expect: int, **kw) -> dict:
        return self.call(method, path, kind=kind, expect=expect, **kw)["error"]


def _admin(url: str, method: str, what: str, body=None) -> dict:
    resp = requests.request(method, f"{url}/_emulator/{what}", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _upload(gcs_url: str, rows: list[dict], name: str) -> str:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    resp = requests.post(f"{gcs_url}/upload/storage/v1/b/{quote(BUCKET, safe='')}/o",
                         params={"uploadType": "media", "name": name}, data=data, timeout=10)
    assert resp.status_code == 200, resp.text
    return f"gs://{BUCKET}/{name}"


def v(ver: str, rest: str) -> str:
    return f"/{ver}/{PARENT}/{rest}"


def _vertex_type(ver: str, name: str) -> str:
    return f"{TYPE}google.cloud.aiplatform.{ver}.{name}"


# ------------------------------------------------------------------------------------------------ Vertex AI
def _drive_vertex(rec: Recorder, url: str, gcs_url: str, emu) -> None:
    rows = demo_rows("train.jsonl")
    tag = f"{time.time_ns() % 10**9}"
    train = _upload(gcs_url, rows[:24], f"strict/{tag}/train.jsonl")
    val = _upload(gcs_url, rows[24:32], f"strict/{tag}/val.jsonl")
    missing = f"gs://{BUCKET}/strict/{tag}/missing.jsonl"
    saved = _admin(url, "GET", "config")

    def body(display, uri=train, **spec):
        return {"baseModel": "gemini-2.5-flash", "tunedModelDisplayName": display, "labels": {"suite": "strict"},
                "description": "strict-proto check",
                "supervisedTuningSpec": {"trainingDatasetUri": uri, "hyperParameters": {"epochCount": 3}, **spec}}

    def tj(ver, kind, name, expect_state=None):
        job = rec.call("GET", f"/{ver}/{name}", kind=kind, message=VERTEX[ver].TuningJob.pb())
        if expect_state:
            assert job["state"] == expect_state, job
        return job

    def create(ver, b):
        return rec.call("POST", v(ver, "tuningJobs"), kind="tuningJob.create", message=VERTEX[ver].TuningJob.pb(),
                        json=b)

    # A job held in PENDING (long queue), one held in RUNNING (long steps): both are then cancelled.
    _admin(url, "PATCH", "config", {"pending_seconds": 100_000.0})
    pending = create("v1beta1", body(f"strict-pending-{tag}"))["name"]
    _admin(url, "PATCH", "config", {"pending_seconds": saved["pending_seconds"], "step_seconds": 100_000.0})
    running = create("v1", body(f"strict-running-{tag}"))["name"]
    _admin(url, "PATCH", "config", {"step_seconds": saved["step_seconds"]})
    _admin(url, "POST", "job-failures", {"match": f"^strict-doomed-{tag}$", "count": 1, "at_fraction": 0.5,
                                         "message": "Emulated tuning failure."})
    several = create("v1", body(f"strict-several-{tag}", validationDatasetUri=val))["name"]
    last_only = create("v1beta1", body(f"strict-last-{tag}", exportLastCheckpointOnly=True))["name"]
    doomed = create("v1beta1", body(f"strict-doomed-{tag}"))["name"]
    bad_data = create("v1", body(f"strict-bad-data-{tag}", uri=missing))["name"]

    for ver in VERS:
        tj(ver, "tuningJob.pending", pending, "JOB_STATE_PENDING")
    wait_until(lambda: tj("v1beta1", "tuningJob.running", running),
               lambda j: j["state"] == "JOB_STATE_RUNNING", timeout=30)
    tj("v1", "tuningJob.running", running, "JOB_STATE_RUNNING")
    rec.call("POST", f"/v1/{pending}:cancel", kind="tuningJob.cancel", message=empty_pb2.Empty, json={})
    rec.call("POST", f"/v1beta1/{running}:cancel", kind="tuningJob.cancel", message=empty_pb2.Empty, json={})
    for ver in VERS:
        tj(ver, "tuningJob.cancelled", pending, "JOB_STATE_CANCELLED")
        tj(ver, "tuningJob.cancelled", running, "JOB_STATE_CANCELLED")

    done = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
    for name in (several, last_only, doomed, bad_data):
        wait_until(lambda n=name: tj("v1", "tuningJob.polled", n), lambda j: j["state"] in done, timeout=60)
    for ver in VERS:
        tj(ver, "tuningJob.succeeded", several, "JOB_STATE_SUCCEEDED")
        tj(ver, "tuningJob.succeeded.lastCheckpointOnly", last_only, "JOB_STATE_SUCCEEDED")
        tj(ver, "tuningJob.failed", doomed, "JOB_STATE_FAILED")
        tj(ver, "tuningJob.failed", bad_data, "JOB_STATE_FAILED")
    job = tj("v1", "tuningJob.succeeded", several)
    assert len(job["tunedModel"]["checkpoints"]) == 3 and "validationDatasetUri" in job["supervisedTuningSpec"]
    assert len(tj("v1", "tuningJob.succeeded.lastCheckpointOnly", last_only)["tunedModel"]["checkpoints"]) == 1
    # Continuous tuning from the second checkpoint: the next version of the same model.
    cont = create("v1beta1", {**{k: w for k, w in body(f"strict-several-{tag}").items() if k != "baseModel"},
                              "preTunedModel": {"tunedModelName": job["tunedModel"]["model"], "checkpointId": "2"}})
    wait_until(lambda: tj("v1", "tuningJob.polled", cont["name"]), lambda j: j["state"] in done, timeout=60)
    for ver in VERS:
        assert tj(ver, "tuningJob.succeeded.continuous", cont["name"], "JOB_STATE_SUCCEEDED")["preTunedModel"]

    for ver in VERS:
        page = rec.call("GET", v(ver, "tuningJobs"), kind="tuningJob.list",
                        message=VERTEX[ver].ListTuningJobsResponse.pb(), params={"pageSize": 2})
        assert page.get("nextPageToken"), page.keys()
        rec.call("GET", v(ver, "tuningJobs"), kind="tuningJob.list", message=VERTEX[ver].ListTuningJobsResponse.pb(),
                 params={"pageSize": 2, "pageToken": page["nextPageToken"]})
        rec.call("GET", f"/{ver}/{job['experiment']}", kind="context", message=VERTEX[ver].Context.pb())

    # Model Registry, endpoint and generateContent on the job with several checkpoints.
    model_name = job["tunedModel"]["model"].split("@")[0]
    endpoint_name = job["tunedModel"]["endpoint"]
    prompt = {"contents": rows[40]["contents"][:1], "systemInstruction": rows[40]["systemInstruction"],
              "generationConfig": {"temperature": 0}}
    for ver in VERS:
        m = VERTEX[ver]
        rec.call("GET", f"/{ver}/{model_name}", kind="model.get", message=m.Model.pb())
        rec.call("GET", f"/{ver}/{model_name}@1", kind="model.get", message=m.Model.pb())
        rec.call("GET", f"/{ver}/{model_name}@default", kind="model.get", message=m.Model.pb())
        rec.call("GET", f"/{ver}/{model_name}:listVersions", kind="model.listVersions",
                 message=m.ListModelVersionsResponse.pb())
        page = rec.call("GET", v(ver, "models"), kind="model.list", message=m.ListModelsResponse.pb(),
                        params={"pageSize": 1})
        assert page.get("nextPageToken"), page.keys()
        rec.call("PATCH", f"/{ver}/{model_name}", kind="model.update", message=m.Model.pb(),
                 params={"updateMask": "labels"}, json={"labels": {"suite": "strict", "ver": ver}})
        rec.call("POST", f"/{ver}/{model_name}@1:mergeVersionAliases", kind="model.mergeVersionAliases",
                 message=m.Model.pb(), json={"versionAliases": [f"strict-{ver}"]})
        rec.call("GET", f"/{ver}/{endpoint_name}", kind="endpoint.get", message=m.Endpoint.pb())
        rec.call("POST", f"/{ver}/{endpoint_name}:generateContent", kind="generateContent.endpoint",
                 message=m.GenerateContentResponse.pb(), json=prompt)
        rec.call("POST", v(ver, "publishers/google/models/gemini-2.5-flash:generateContent"),
                 kind="generateContent.publisher", message=m.GenerateContentResponse.pb(), json=prompt)
    _drive_evaluation(rec, endpoint_name)   # with a tuned model's endpoint as the autorater

    # Long-running operations, each seen not done and done, on the last-checkpoint-only job's model and endpoint.
    lro = emu.config.lro_seconds
    ops = []

    def op_started(ver, method, path, metadata, response="google.protobuf.Empty", **kw):
        types = {"metadata": _vertex_type(ver, metadata),
                 "response": TYPE + response if response.startswith("google.protobuf") else _vertex_type(ver, response)}
        op = rec.call(method, path, kind="operation.notDone", message=operations_pb2.Operation, any_types=types, **kw)
        assert not op.get("done"), op
        ops.append((ver, op["name"], types))

    def ops_finish():
        for ver, name, types in ops:
            op = rec.call("GET", f"/{ver}/{name}", kind="operation.notDone", message=operations_pb2.Operation,
                          any_types=types)
            assert not op.get("done"), op
        time.sleep(lro + 0.1)
        for ver, name, types in ops:
            op = rec.call("GET", f"/{ver}/{name}", kind="operation.done", message=operations_pb2.Operation,
                          any_types=types)
            assert op.get("done") is True and "response" in op, op
        ver, name, types = ops[0]       # the GAPIC REST clients poll operations under /ui
        rec.call("GET", f"/ui/{name}", kind="operation.done", message=operations_pb2.Operation, any_types=types)
        ops.clear()

    job2 = tj("v1", "tuningJob.succeeded.lastCheckpointOnly", last_only)
    model2 = job2["tunedModel"]["model"].split("@")[0]
    endpoint2 = job2["tunedModel"]["endpoint"]
    stored = emu.store.get("models", model2)   # an undeployed second version to delete (tuning deploys its own)
    stored["versions"]["2"] = {**copy.deepcopy(stored["versions"]["1"]), "versionId": "2", "versionAliases": [],
                               "deployedModels": []}
    emu.store.put("models", model2, stored)
    op_started("v1beta1", "DELETE", f"/v1beta1/{model2}@2:deleteVersion", "DeleteOperationMetadata")
    for ver in ("v1", "v1beta1"):   # the base model's catalogue entry (the tune task checks it before creating)
        rec.call("GET", f"/{ver}/publishers/google/models/gemini-3.5-flash", kind="publisherModel.get",
                 message=aiplatform_v1.PublisherModel.pb())
    dm_id = rec.call("GET", f"/v1/{endpoint2}", kind="endpoint.get",
                     message=aiplatform_v1.Endpoint.pb())["deployedModels"][0]["id"]
    op_started("v1", "POST", f"/v1/{endpoint2}:undeployModel", "UndeployModelOperationMetadata",
               "UndeployModelResponse", json={"deployedModelId": dm_id})
    ops_finish()
    op_started("v1beta1", "DELETE", f"/v1beta1/{endpoint2}", "DeleteOperationMetadata")
    op_started("v1", "DELETE", f"/v1/{model2}", "DeleteOperationMetadata")
    ops_finish()

    # A failed operation: no Vertex route fails after it has answered (deletes and undeploys are checked up front),
    # so one is stored the way _operation stores them, with the google.rpc.Status the view must show.
    for ver in VERS:
        name = f"{PARENT}/operations/9{time.time_ns() % 10**12}"
        emu.store.put("operations", name, {
            "name": name, "done_at": 0.0, "response": {"@type": TYPE + "google.protobuf.Empty"},
            "metadata": {"@type": _vertex_type("v1", "DeleteOperationMetadata"), "genericMetadata": {}},
            "error": {"code": 9, "message": "Emulated failed operation."}})
        op = rec.call("GET", f"/{ver}/{name}", kind="operation.failed", message=operations_pb2.Operation,
                      any_types={"metadata": _vertex_type(ver, "DeleteOperationMetadata")})
        assert op["done"] is True and op["error"]["code"] == 9 and "response" not in op, op

    # Batch prediction: PENDING (long queue) then cancelled, SUCCEEDED then deleted, RUNNING (slow items) then
    # cancelled, FAILED (missing input).
    requests_in = _upload(gcs_url, [{"request": {"contents": rows[i]["contents"][:1]}} for i in range(50, 52)],
                          f"strict/{tag}/batch.jsonl")

    def batch_body(display, uri=requests_in):
        return {"displayName": display, "model": "publishers/google/models/gemini-2.5-flash",
                "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [uri]}},
                "outputConfig": {"predictionsFormat": "jsonl",
                                 "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/strict/{tag}/out"}},
                "labels": {"suite": "strict"}}

    def bj(ver, kind, name):
        return rec.call("GET", f"/{ver}/{name}", kind=kind, message=VERTEX[ver].BatchPredictionJob.pb())

    def bcreate(ver, display, **kw):
        return rec.call("POST", v(ver, "batchPredictionJobs"), kind="batch.create",
                        message=VERTEX[ver].BatchPredictionJob.pb(), json=batch_body(display, **kw))["name"]

    ok_batch = bcreate("v1", f"strict-ok-{tag}")
    failed_batch = bcreate("v1beta1", f"strict-failed-{tag}", uri=f"gs://{BUCKET}/strict/{tag}/nothing.jsonl")
    _admin(url, "PATCH", "config", {"pending_seconds": 1_000_000.0})
    pending_batch = bcreate("v1beta1", f"strict-pending-{tag}")
    for ver in VERS:
        assert bj(ver, "batch.pending", pending_batch)["state"] == "JOB_STATE_PENDING"
    _admin(url, "PATCH", "config", {"pending_seconds": saved["pending_seconds"]})
    terminal = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"}
    for name in (ok_batch, failed_batch):
        wait_until(lambda n=name: bj("v1", "batch.polled", n), lambda j: j["state"] in terminal, timeout=30)
    _admin(url, "PATCH", "config", {"batch_item_seconds": 1_000_000.0})
    running_batch = bcreate("v1", f"strict-running-{tag}")
    wait_until(lambda: bj("v1beta1", "batch.running", running_batch),
               lambda j: j["state"] == "JOB_STATE_RUNNING", timeout=30)
    bj("v1", "batch.running", running_batch)
    for ver, name in (("v1", pending_batch), ("v1beta1", running_batch)):
        rec.call("POST", f"/{ver}/{name}:cancel", kind="batch.cancel", message=empty_pb2.Empty, json={})
    for ver in VERS:
        assert bj(ver, "batch.succeeded", ok_batch)["state"] == "JOB_STATE_SUCCEEDED"
        assert bj(ver, "batch.failed", failed_batch)["state"] == "JOB_STATE_FAILED"
        for name in (pending_batch, running_batch):
            assert bj(ver, "batch.cancelled", name)["state"] == "JOB_STATE_CANCELLED"
        page = rec.call("GET", v(ver, "batchPredictionJobs"), kind="batch.list",
                        message=VERTEX[ver].ListBatchPredictionJobsResponse.pb(), params={"pageSize": 1})
        assert page.get("nextPageToken"), page.keys()
    op_started("v1", "DELETE", f"/v1/{ok_batch}", "DeleteOperationMetadata")
    ops_finish()

    # Every kind of error envelope.
    err = rec.error("error.400", "POST", v("v1beta1", "tuningJobs"), 400, json=body("strict-bad", uri="gs://x/y.txt"))
    assert err["details"][0]["@type"] == TYPE + "google.rpc.BadRequest", err
    rec.error("error.400", "POST", v("v1", "tuningJobs"), 400,
              json={**body("strict-bad"), "baseModel": "gemini-0.1-nonexistent"})
    rec.error("error.400", "PATCH", f"/v1/{model_name}", 400, json={})
    rec.error("error.404", "GET", v("v1", "tuningJobs/123456789"), 404)
    rec.error("error.404", "GET", f"/v1beta1/{model2}", 404)
    rec.error("error.404", "GET", "/v1/no/such/route", 404)
    rec.error("error.404", "POST", v("v1", "publishers/google/models/imagen-9:generateContent"), 404, json=prompt)
    assert rec.error("error.failedPrecondition", "POST", f"/v1/{several}:cancel", 400,
                     json={})["status"] == "FAILED_PRECONDITION"
    assert rec.error("error.failedPrecondition", "DELETE", f"/v1/{model_name}", 400)["status"] == "FAILED_PRECONDITION"
    assert rec.error("error.failedPrecondition", "POST", f"/v1/{failed_batch}:cancel", 400,
                     json={})["status"] == "FAILED_PRECONDITION"
    rec.error("error.405", "PUT", v("v1", "tuningJobs"), 405, json={})
    _admin(url, "POST", "faults", [{"kind": "status", "path": "tuningJobs$", "method": "GET", "status": 429,
                                    "retry_after": 1, "count": 1}])
    assert rec.error("error.429", "GET", v("v1", "tuningJobs"), 429)["status"] == "RESOURCE_EXHAUSTED"
    _admin(url, "POST", "faults", [{"kind": "status", "path": "operations/", "status": 503, "count": 1}])
    assert rec.error("error.fault", "GET", f"/ui/{PARENT}/operations/1", 503)["status"] == "UNAVAILABLE"


# ------------------------------------------------------------------------------------------------ evaluation
def _drive_evaluation(rec: Recorder, endpoint_name: str) -> None:
    """``:evaluateInstances``: every implemented metric input and result shape (scores, each pairwise choice, raw
    output), on both versions, and its error envelopes (400, 404, 501, a fault)."""
    ref = "A refund is on its way and should reach you within five days."
    near = "A refund is on its way and should reach you within 5 days."
    near2 = "A refund is on its way and should reach you within five weeks."
    off = "Could you share a few more details?"

    def model_based(kind, template, instance, **spec):
        return {kind: {"metricSpec": {"metricPromptTemplate": template, **spec},
                       "instance": {"jsonInstance": json.dumps(instance)}}}

    pointwise = "Rate {response} for {prompt} against {reference}, 1 to 5."
    pairwise = "For {prompt}: A {baseline_model_response} or B {response}? Reference: {reference}"
    pair = {"prompt": "p", "reference": ref}
    names = {"candidateResponseFieldName": "response", "baselineResponseFieldName": "baseline_model_response"}
    raw = {"customOutputFormatConfig": {"returnRawOutput": True}}
    inst = [{"prediction": near, "reference": ref}, {"prediction": ref, "reference": ref}]
    bodies = {
        "evaluate.pointwise": [model_based("pointwiseMetricInput", pointwise, {**pair, "response": r}) for r in
                               (ref, off)]
        + [model_based("pointwiseMetricInput", pointwise, {**pair, "response": near}, systemInstruction="Be fair.")],
        "evaluate.pointwise.raw": [model_based("pointwiseMetricInput", pointwise, {**pair, "response": near}, **raw)],
        "evaluate.pairwise": [model_based("pairwiseMetricInput", pairwise,
                                          {**pair, "response": c, "baseline_model_response": b}, **spec)
                              for c, b, spec in ((near, off, {}), (off, near, {}), (near, near2, {}),
                                                 (near, near2, names))],
        "evaluate.pairwise.raw": [model_based("pairwiseMetricInput", pairwise,
                                              {**pair, "response": near, "baseline_model_response": off}, **raw)],
        "evaluate.exactMatch": [{"exactMatchInput": {"metricSpec": {}, "instances": inst}}],
        "evaluate.bleu": [{"bleuInput": {"metricSpec": {"useEffectiveOrder": e}, "instances": inst}}
                          for e in (True, False)],
        "evaluate.rouge": [{"rougeInput": {"metricSpec": {"rougeType": t, "useStemmer": True, "splitSummaries": True},
                                           "instances": inst}} for t in ("rouge1", "rouge2", "rougeL", "rougeLsum")],
    }
    choices = set()
    for ver in VERS:
        message = VERTEX[ver].EvaluateInstancesResponse.pb()
        for kind, items in bodies.items():
            for body in items:
                got = rec.call("POST", f"/{ver}/{PARENT}:evaluateInstances", kind=kind, message=message, json=body)
                choices.add((got.get("pairwiseMetricResult") or {}).get("pairwiseChoice"))
    message = VERTEX["v1beta1"].EvaluateInstancesResponse.pb()   # autoraterConfig is a v1beta1 field only
    for model in (endpoint_name, "publishers/google/models/gemini-2.5-flash",
                  f"{PARENT}/publishers/google/models/gemini-2.5-pro"):
        judge = {"autoraterModel": model, "flipEnabled": False, "samplingCount": 2,
                 "generationConfig": {"temperature": 0}}
        for kind, body in (("evaluate.pointwise", bodies["evaluate.pointwise"][0]),
                           ("evaluate.pairwise", bodies["evaluate.pairwise"][2])):
            rec.call("POST", f"/v1beta1/{PARENT}:evaluateInstances", kind=kind, message=message,
                     json={**body, "autoraterConfig": judge})
    assert choices >= {"CANDIDATE", "BASELINE", "TIE"}, choices

    path = f"/v1/{PARENT}:evaluateInstances"
    em = bodies["evaluate.exactMatch"][0]
    err = rec.error("evaluate.error", "POST", path, 400, json={})
    assert err["details"][0]["@type"] == TYPE + "google.rpc.BadRequest", err
    rec.error("evaluate.error", "POST", path, 400, json={**em, **bodies["evaluate.bleu"][0]})
    rec.error("evaluate.error", "POST", path, 400,
              json=model_based("pointwiseMetricInput", "{prompt} {missing}", {"prompt": "p", "reference": ref}))
    rec.error("evaluate.error", "POST", path, 400, json={"pairwiseMetricInput": {
        "metricSpec": {"metricPromptTemplate": pairwise}, "instance": {"jsonInstance": "{not json"}}})
    rec.error("evaluate.error", "POST", path, 400, json={**bodies["evaluate.pointwise"][0],
                                                         "autoraterConfig": {"autoraterModel": "gemini-2.5-flash"}})
    beta = f"/v1beta1/{PARENT}:evaluateInstances"
    rec.error("evaluate.error", "POST", beta, 400, json={**bodies["evaluate.pointwise"][0],
                                                         "autoraterConfig": {"autoraterModel": "openai/gpt-9"}})
    rec.error("evaluate.error", "POST", beta, 404, json={
        **bodies["evaluate.pointwise"][0], "autoraterConfig": {"autoraterModel": "publishers/google/models/imagen-9"}})
    rec.error("evaluate.error", "POST", beta, 404, json={
        **bodies["evaluate.pointwise"][0], "autoraterConfig": {"autoraterModel": f"{PARENT}/endpoints/1"}})
    assert rec.error("evaluate.error", "POST", path, 501,
                     json={"fluencyInput": {"metricSpec": {}, "instance": {"prediction": "x"}}})["status"] == \
        "UNIMPLEMENTED"
    _admin(rec.url, "POST", "faults", [{"kind": "status", "path": ":evaluateInstances$", "status": 429,
                                        "retry_after": 1, "count": 1}])
    assert rec.error("evaluate.error", "POST", beta, 429, json=em)["status"] == "RESOURCE_EXHAUSTED"


# ------------------------------------------------------------------------------------------------ Gemini API
def _drive_gemini(rec: Recorder, url: str) -> None:
    tag = f"{time.time_ns() % 10**9}"
    examples = [{"textInput": r["text_input"], "output": r["output"]} for r in demo_rows("seeds_numbers.jsonl")]
    saved = _admin(url, "GET", "config")
    tm, op_t, lst = GL["v1beta"].TunedModel.pb(), operations_pb2.Operation, GL["v1beta"].ListTunedModelsResponse.pb()
    op_types = {"metadata": GL_TYPE + "CreateTunedModelMetadata"}
    done_types = {**op_types, "response": GL_TYPE + "TunedModel"}

    def body(display):
        return {"displayName": display, "baseModel": "models/gemini-1.5-flash-001-tuning", "description": "strict",
                "temperature": 0.5, "topP": 0.9, "topK": 20,
                "tuningTask": {"hyperparameters": {"batchSize": 4, "learningRate": 0.001, "epochCount": 2},
                               "trainingData": {"examples": {"examples": examples}}}}

    def create(display, **kw):
        op = rec.call("POST", "/v1beta/tunedModels", kind="gemini.operation.notDone", message=op_t,
                      any_types=op_types, headers=KEY, json=body(display), **kw)
        assert op["done"] is False, op
        return op["metadata"]["tunedModel"], op["name"]

    def get_op(ver, op_name, kind, types=op_types):
        return rec.call("GET", f"/{ver}/{op_name}", kind=kind, message=op_t, any_types=types, headers=KEY)

    def get_model(ver, name, kind):
        return rec.call("GET", f"/{ver}/{name}", kind=kind, message=tm, headers=KEY)

    _admin(url, "PATCH", "config", {"pending_seconds": 100_000.0})
    held, held_op = create(f"strict held {tag}")
    _admin(url, "PATCH", "config", {"pending_seconds": saved["pending_seconds"]})
    _admin(url, "POST", "job-failures", {"match": f"^strict doomed {tag}$", "count": 1, "at_fraction": 0.5})
    good, good_op = create(f"strict good {tag}")
    doomed, doomed_op = create(f"strict doomed {tag}", params={"tunedModelId": f"strict-doomed-{tag}"})
    for ver in ("v1beta", "v1"):
        assert get_model(ver, held, "gemini.tunedModel.creating")["state"] == "CREATING"
        get_op(ver, held_op, "gemini.operation.notDone")
        rec.call("GET", f"/{ver}/{held}/operations", kind="gemini.operations.list",
                 message=operations_pb2.ListOperationsResponse, headers=KEY)
    rec.call("POST", f"/v1beta/{held_op}:cancel", kind="gemini.cancel", message=empty_pb2.Empty, headers=KEY, json={})
    for op_name in (good_op, doomed_op):
        wait_until(lambda o=op_name: get_op("v1", o, "gemini.operation.polled", types={}),
                   lambda o: o.get("done"), timeout=60)
    for ver in ("v1beta", "v1"):
        op = get_op(ver, good_op, "gemini.operation.done", done_types)
        assert op["done"] is True and "error" not in op, op
        for op_name in (doomed_op, held_op):
            op = get_op(ver, op_name, "gemini.operation.failed")
            assert op["done"] is True and "response" not in op and op["error"]["code"] in (1, 13), op
        rec.call("GET", f"/{ver}/{doomed}/operations", kind="gemini.operations.list",
                 message=operations_pb2.ListOperationsResponse, headers=KEY)
        assert get_model(ver, good, "gemini.tunedModel.active")["state"] == "ACTIVE"
        assert get_model(ver, doomed, "gemini.tunedModel.failed")["state"] == "FAILED"
        assert get_model(ver, held, "gemini.tunedModel.failed")["state"] == "FAILED"
        rec.call("PATCH", f"/{ver}/{good}", kind="gemini.tunedModel.patch", message=tm, headers=KEY,
                 params={"updateMask": "description,temperature"}, json={"description": ver, "temperature": 0.2})
        gen = {"contents": [{"role": "user", "parts": [{"text": "LXIII"}]}], "generationConfig": {"temperature": 0}}
        rec.call("POST", f"/{ver}/{good}:generateContent", kind="gemini.generateContent", headers=KEY,
                 message=GL[ver].GenerateContentResponse.pb(), json=gen)
        rec.call("POST", f"/{ver}/models/gemini-2.5-flash:generateContent", kind="gemini.generateContent",
                 headers=KEY, message=GL[ver].GenerateContentResponse.pb(), json=gen)
    page = rec.call("GET", "/v1beta/tunedModels", kind="gemini.tunedModel.list", message=lst, headers=KEY,
                    params={"pageSize": 1})
    assert page.get("nextPageToken"), page.keys()
    rec.call("GET", "/v1beta/tunedModels", kind="gemini.tunedModel.list", message=lst, headers=KEY,
             params={"pageSize": 1, "pageToken": page["nextPageToken"]})
    rec.call("DELETE", f"/v1beta/{held}", kind="gemini.delete", message=empty_pb2.Empty, headers=KEY)

    rec.error("gemini.error", "GET", f"/v1beta/{held}", 404, headers=KEY)
    rec.error("gemini.error", "POST", "/v1/models/imagen-9:generateContent", 404, headers=KEY, json=gen)
    rec.error("gemini.error", "POST", "/v1beta/tunedModels", 400, headers=KEY,
              json={**body("x"), "baseModel": "models/nonexistent"})
    rec.error("gemini.error", "POST", "/v1beta/tunedModels", 409, headers=KEY, json=body("x"),
              params={"tunedModelId": f"strict-doomed-{tag}"})
    rec.error("gemini.error", "GET", "/v1beta/tunedModels", 401)
    rec.error("gemini.error", "GET", "/v1beta/tunedModels", 403, headers={"Authorization": "Bearer t"})
    _admin(url, "PATCH", "config", {"gemini_api_tuning_discontinued": True})
    try:
        assert rec.error("gemini.error", "POST", "/v1beta/tunedModels", 400, headers=KEY,
                         json=body("x"))["status"] == "FAILED_PRECONDITION"
    finally:
        _admin(url, "PATCH", "config", {"gemini_api_tuning_discontinued": saved["gemini_api_tuning_discontinued"]})
    assert rec.error("gemini.error", "POST", f"/v1beta/{doomed}:generateContent", 400, headers=KEY,
                     json=gen)["status"] == "FAILED_PRECONDITION"


@pytest.fixture(scope="module")
def world(emulator_server) -> Recorder:
    url, gcs_url = emulator_server.endpoints.url, emulator_server.endpoints.gcs_url
    emu = emulator_server.emulator
    saved = dict(vars(emu.config))
    rec = Recorder(url)
    try:
        _drive_vertex(rec, url, gcs_url, emu)
        _drive_gemini(rec, url)
    finally:
        emu.faults.clear()
        emu.config.update(saved)
    return rec


# ------------------------------------------------------------------------------------------------ the checks
RESOURCE_KINDS = [
    "tuningJob.create", "tuningJob.pending", "tuningJob.running", "tuningJob.succeeded",
    "tuningJob.succeeded.lastCheckpointOnly", "tuningJob.succeeded.continuous", "tuningJob.failed",
    "tuningJob.cancelled", "tuningJob.polled", "tuningJob.cancel", "tuningJob.list", "context",
    "model.get", "model.listVersions", "model.list", "model.update", "model.mergeVersionAliases", "endpoint.get",
    "generateContent.endpoint", "generateContent.publisher",
    "operation.notDone", "operation.done", "operation.failed",
    "batch.create", "batch.pending", "batch.running", "batch.succeeded", "batch.failed", "batch.cancelled",
    "batch.polled", "batch.cancel", "batch.list",
    "gemini.operation.notDone", "gemini.operation.done", "gemini.operation.failed", "gemini.operation.polled",
    "gemini.operations.list", "gemini.tunedModel.creating", "gemini.tunedModel.active", "gemini.tunedModel.failed",
    "gemini.tunedModel.patch", "gemini.tunedModel.list", "gemini.generateContent", "gemini.cancel", "gemini.delete",
    "evaluate.pointwise", "evaluate.pointwise.raw", "evaluate.pairwise", "evaluate.pairwise.raw", "evaluate.exactMatch",
    "evaluate.bleu", "evaluate.rouge",
]
ERROR_KINDS = ["error.400", "error.404", "error.failedPrecondition", "error.405", "error.429", "error.fault",
               "evaluate.error", "gemini.error"]


@pytest.mark.parametrize("kind", RESOURCE_KINDS)
def test_response_parses_strictly_into_the_pinned_proto(world, kind):
    answers = world.kinds.get(kind)
    assert answers, f"no {kind} response was recorded"
    failures = []
    for a in answers:
        where = f"{a.method} {a.path} (HTTP {a.status}) as {a.message.DESCRIPTOR.full_name}"
        try:
            strict_parse(a.text, a.message)
        except json_format.ParseError as exc:
            failures.append(f"{where}: {exc}\n  body: {a.text[:1500]}")
            continue
        body = json.loads(a.text)
        for key, want in a.any_types.items():
            if key in body and body[key].get("@type") != want:
                failures.append(f"{where}: {key}.@type is {body[key].get('@type')!r}, expected {want!r}")
    if failures:
        pytest.fail(f"{len(failures)} of {len(answers)} {kind} responses do not match the proto:\n"
                    + "\n".join(failures), pytrace=False)


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_error_envelope_is_googles(world, kind):
    answers = world.kinds.get(kind)
    assert answers, f"no {kind} response was recorded"
    failures = []
    for a in answers:
        try:
            check_error_envelope(a.status, a.text)
        except (AssertionError, json_format.ParseError) as exc:
            failures.append(f"{a.method} {a.path} (HTTP {a.status}): {exc}\n  body: {a.text[:1500]}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def test_every_route_answered_successfully(world, emulator_server):
    unanswered = []
    for method, rx, handler in emulator_server.emulator.router._routes:
        hit = False
        for m, path, status in world.calls:
            path = path.split("?")[0]
            first = next((h for mm, r, h in emulator_server.emulator.router._routes if mm == m and r.match(path)),
                         None)
            if first == handler and m == method and status < 400:
                hit = True
                break
        if not hit:
            unanswered.append(f"{method} {rx.pattern} ({handler.__qualname__})")
    assert not unanswered, "routes never answered successfully:\n" + "\n".join(unanswered)


def test_every_known_gap_is_real_and_seen(world):
    """Each listed field is absent from its pinned proto (else the entry is stale) and the emulator sends it."""
    used: set = set()
    for answers in world.kinds.values():
        for a in answers:
            if a.message is not None:
                _strip_known_extras(json.loads(a.text), a.message.DESCRIPTOR, used)
    problems = []
    for full_name, extras in KNOWN_EXTRA_FIELDS.items():
        try:
            desc = POOL.FindMessageTypeByName(full_name)
        except KeyError:
            problems.append(f"{full_name}: no such message in the pinned protos")
            continue
        for key, why in extras.items():
            if key in {f.json_name for f in desc.fields} or key in desc.fields_by_name:
                problems.append(f"{full_name}.{key}: the pinned proto has it; remove it from KNOWN_EXTRA_FIELDS")
            if not why:
                problems.append(f"{full_name}.{key}: give the reason")
            if (full_name, key) not in used:
                problems.append(f"{full_name}.{key}: listed but no response carried it")
    assert not problems, "\n".join(problems)
