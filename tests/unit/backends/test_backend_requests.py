"""Both backends' request shapes and response parses (pure: no network)."""

from __future__ import annotations

import json

import pytest

from gemini_tuning.backends import gemini_api as g
from gemini_tuning.backends.errors import (
    AlreadyExistsError,
    InsufficientScopesError,
    NotFoundError,
    TuningApiError,
    TuningDiscontinuedError,
    is_transient,
)
from gemini_tuning.backends.vertex import VertexTuningBackend, job_status, parse_metrics
from gemini_tuning.core.states import JobStatus
from gemini_tuning.core.tuning import TuningSpec
from harness.paths import UNIT_DATA

pytestmark = pytest.mark.fast


def test_gemini_api_create_request_carries_training_data_and_hyperparameters():
    spec = TuningSpec(backend="gemini_api", base_model="models/gemini-1.5-flash-001-tuning", training_uri="gs://b/x",
                      epochs=5, batch_size=4, learning_rate=0.001, display_name="numbers")
    req = g.create_request(spec, [{"text_input": "1", "output": "2"}], "gt-k-1", "[m]")
    assert (req.method, req.path, req.params) == ("POST", "/v1beta/tunedModels", {"tunedModelId": "gt-k-1"})
    assert req.json["tuningTask"]["trainingData"]["examples"]["examples"] == [{"textInput": "1", "output": "2"}]
    assert req.json["tuningTask"]["hyperparameters"] == {"epochCount": 5, "batchSize": 4, "learningRate": 0.001}
    assert req.json["displayName"] == "numbers" and "[m]" in req.json["description"]
    assert "key" not in (req.params or {})           # never an API key in the URL


def test_gemini_api_paths():
    assert g.get_operation_request("tunedModels/a/operations/b").path == "/v1/tunedModels/a/operations/b"
    assert g.cancel_request("tunedModels/a/operations/b").path == "/v1/tunedModels/a/operations/b:cancel"
    assert g.delete_request("tunedModels/a").method == "DELETE"
    assert len(g.tuned_model_id("k" + "a" * 20, 12)) <= 40


def test_parse_operation_states():
    running = g.parse_operation({"name": "tunedModels/m/operations/o", "metadata": {
        "tunedModel": "tunedModels/m", "totalSteps": 10, "completedSteps": 4, "completedPercent": 40.0,
        "snapshots": [{"step": 1, "epoch": 1, "meanLoss": 2.0}, {"step": 2, "epoch": 1, "meanLoss": 1.5}]}})
    assert running.state == "JOB_STATE_RUNNING" and running.progress_percent == 40.0 and running.latest_loss == 1.5
    assert running.operation == "tunedModels/m/operations/o" and running.name == "tunedModels/m"
    done = g.parse_operation({"name": "o", "done": True, "metadata": {"tunedModel": "tunedModels/m"},
                              "response": {"name": "tunedModels/m", "state": "ACTIVE"}})
    assert done.succeeded and done.tuned_model == "tunedModels/m"
    failed = g.parse_operation({"name": "o", "done": True, "error": {"code": 13, "message": "boom"}})
    assert failed.state == "JOB_STATE_FAILED" and failed.error_message == "boom"
    cancelled = g.parse_operation({"name": "o", "done": True, "error": {"code": 1, "message": "CANCELLED"}})
    assert cancelled.state == "JOB_STATE_CANCELLED"


@pytest.mark.parametrize("status, body, creating, exc", [
    (404, '{"error": {"message": "nope"}}', False, NotFoundError),
    (409, '{"error": {"message": "exists"}}', True, AlreadyExistsError),
    (403, '{"error": {"message": "Request had insufficient authentication scopes."}}', False, InsufficientScopesError),
    (400, '{"error": {"message": "Model tuning is no longer supported. Use Vertex AI."}}', True,
     TuningDiscontinuedError),
    (400, '{"error": {"message": "Model tuning is no longer supported."}}', False, TuningApiError),
    (503, "not json", False, TuningApiError),
])
def test_error_mapping(status, body, creating, exc):
    """Every call's mapping (``raise_for``), and for the create call :func:`create_error` on top of it."""
    with pytest.raises(exc) as info:
        try:
            g.raise_for(status, body, {"Retry-After": "3"})
        except TuningApiError as error:
            raise g.create_error(error) if creating else error
    if exc is InsufficientScopesError:
        assert g.TUNING_SCOPE in str(info.value)
    if exc is TuningDiscontinuedError:
        assert "backend='vertex'" in str(info.value)
    if status == 503:
        assert info.value.retry_after == 3.0 and is_transient(info.value)


def test_api_key_never_in_repr():
    b = g.GeminiApiTuningBackend(api_key="SECRET-KEY")
    assert "SECRET" not in repr(b) and b._headers() == {"x-goog-api-key": "SECRET-KEY"}


def test_vertex_create_args():
    spec = TuningSpec(backend="vertex", base_model="gemini-2.5-flash", training_uri="gs://b/t.jsonl",
                      validation_uri="gs://b/v.jsonl", epochs=2, learning_rate_multiplier=0.5, adapter_size=8,
                      display_name="d", labels={"team": "ml"})
    args = VertexTuningBackend._create_args(spec, {"gemini-tuning-key": "k1"})
    cfg = args["config"]
    assert args["base_model"] == "gemini-2.5-flash" and args["training_dataset"].gcs_uri == "gs://b/t.jsonl"
    assert (cfg.epoch_count == 2 and cfg.learning_rate_multiplier == 0.5
            and cfg.adapter_size.value == "ADAPTER_SIZE_EIGHT")
    assert (cfg.validation_dataset.gcs_uri == "gs://b/v.jsonl"
            and cfg.labels == {"team": "ml", "gemini-tuning-key": "k1"})
    assert VertexTuningBackend._list_config({"b": "2", "a": "1"})["filter"] == 'labels.a="1" AND labels.b="2"'


def test_vertex_create_args_for_continuous_tuning():
    """google-genai sends preTunedModel for a "projects/..." base model; the checkpoint travels in the config."""
    spec = TuningSpec(backend="vertex", base_model="gemini-2.5-flash", training_uri="gs://b/t.jsonl",
                      continue_from="projects/p/locations/l/models/9@2", checkpoint_id="1")
    args = VertexTuningBackend._create_args(spec, {})
    assert args["base_model"] == "projects/p/locations/l/models/9@2"
    assert args["config"].pre_tuned_model_checkpoint_id == "1"
    fp = spec.fingerprint_inputs()
    assert (fp["continue_from"], fp["checkpoint_id"]) == ("projects/p/locations/l/models/9@2", "1")


@pytest.mark.parametrize("kw, message", [
    ({"backend": "gemini_api", "base_model": "models/x", "continue_from": "projects/p/locations/l/models/9@2"},
     "Vertex backend only"),
    ({"continue_from": "projects/p/locations/l/models/9"}, "must be resolved to a model version"),
    ({"checkpoint_id": "1"}, "checkpoint_id needs continue_from"),
])
def test_continuous_tuning_spec_is_validated_before_anything_is_paid(kw, message):
    spec = TuningSpec(**{"backend": "vertex", "base_model": "gemini-2.5-flash", "training_uri": "gs://b/t.jsonl",
                         **kw})
    with pytest.raises(ValueError, match=message):
        spec.validate()


def test_vertex_job_status_parse():
    from google.genai import types

    job = types.TuningJob._from_response(response={
        "name": "projects/p/locations/l/tuningJobs/1", "state": "JOB_STATE_RUNNING",
        "tuningJobState": "TUNING_JOB_STATE_TUNING", "labels": {"a": "b"},
        "tuningDataStats": {"supervisedTuningDataStats": {"tuningStepCount": "40", "tuningDatasetExampleCount": "100"}},
        "tuningJobMetadata": {"completedStepCount": "10"}, "gcsMetricsUri": "gs://b/m/"}, kwargs={})
    s = job_status(job)
    assert (s.state, s.sub_state, s.completed_steps, s.total_steps, s.progress_percent) == (
        "JOB_STATE_RUNNING", "TUNING_JOB_STATE_TUNING", 10, 40, 25.0)
    assert s.metrics_uri == "gs://b/m/" and s.labels == {"a": "b"} and not s.terminal


def test_parse_metrics_tolerates_junk():
    pts = parse_metrics('{"step": 2, "epoch": 1, "train_total_loss": 0.5}\nnot json\n{"step": 1, "loss": 0.9}\n[]\n')
    assert [(p.step, p.loss) for p in pts] == [(1, 0.9), (2, 0.5)]


def test_transient_classification():
    import aiohttp
    import httpx

    assert is_transient(TuningApiError(429, "x")) and is_transient(TuningApiError(503, "x"))
    assert not is_transient(TuningApiError(400, "x")) and not is_transient(ValueError("x"))
    assert is_transient(ConnectionResetError()) and is_transient(httpx.RemoteProtocolError("x"))
    assert is_transient(aiohttp.ServerDisconnectedError())


@pytest.mark.asyncio
async def test_async_retry_awaits_what_a_lambda_returns_and_retries_it():
    """tenacity calls a plain callable without awaiting its result: a lambda returning a coroutine must still run
    (every acancel passes one), and a transient failure must be retried."""
    from gemini_tuning.backends import retry

    calls = []

    async def cancel(name):
        calls.append(name)
        if len(calls) == 1:
            raise TuningApiError(503, "unavailable", retry_after=0.0)
        return "cancelled"

    policy = retry.RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0)
    assert await retry.acall(policy, lambda: cancel("job")) == "cancelled"
    assert calls == ["job", "job"]


# ---------------------------------------------------------------------------------------------- REST poll parity
JOBS_JSON = UNIT_DATA / "vertex_tuning_jobs.json"


def genai_parse(body: dict):
    """What google-genai makes of a GET tuningJobs response (its own converter and model, as client.tunings.get)."""
    from google.genai import tunings, types

    return types.TuningJob._from_response(response=tunings._TuningJob_from_vertex(body), kwargs={})


@pytest.mark.parametrize("body", json.loads(JOBS_JSON.read_text()), ids=lambda b: b["state"])
def test_rest_parse_equals_genai_parse_field_by_field(body):
    from dataclasses import fields

    from gemini_tuning.backends.vertex import parse_job

    ours, theirs = parse_job(body), job_status(genai_parse(body))
    for f in fields(ours):
        assert getattr(ours, f.name) == getattr(theirs, f.name), f.name
    assert ours.state == body["state"]


def test_rest_parse_reads_every_field_it_needs():
    from gemini_tuning.backends.vertex import parse_job

    running, succeeded = (parse_job(b) for b in json.loads(JOBS_JSON.read_text())[1:3])
    assert (running.completed_steps, running.total_steps, running.progress_percent) == (46, 135, 34.1)
    assert running.sub_state == "TUNING_JOB_STATE_TUNING" and running.metrics_uri == "gs://b/metrics/112/"
    assert running.example_count == 360 and running.create_time == "2026-11-30T10:00:00+00:00"
    assert running.billable_tokens == 91234 and running.dropped_count == 2
    assert [i for i, _ in running.dropped] == [7, 311] and "140000 tokens" in running.dropped[0][1]
    assert JobStatus.from_summary(running.summary()).dropped == running.dropped
    assert succeeded.dropped == () and succeeded.dropped_count is None
    assert succeeded.completed_steps == 135 and succeeded.endpoint.endswith("/endpoints/7")
    assert succeeded.tuned_model.endswith("/models/9@1")
    continued = parse_job(json.loads(JOBS_JSON.read_text())[-1])
    assert continued.continued_from == "projects/123/locations/us-central1/models/9@1 checkpoint 2"
    assert [(c.checkpoint_id, c.epoch, c.step) for c in continued.checkpoints] == [("1", 1, 38), ("2", 2, 76),
                                                                                    ("3", 3, 114)]
    assert continued.checkpoints[-1].endpoint == continued.endpoint
    assert JobStatus.from_summary(continued.summary()).checkpoints == continued.checkpoints


def test_rest_auth_headers_carry_the_credentials_quota_project():
    """User ADC need x-goog-user-project on Vertex calls (google-genai sent it; the REST poll must too)."""
    import google.oauth2.credentials

    from gemini_tuning.backends.rest import bearer_headers

    creds = google.oauth2.credentials.Credentials(token="t", quota_project_id="billing-project")
    assert bearer_headers(creds) == {"Authorization": "Bearer t", "x-goog-user-project": "billing-project"}
    assert bearer_headers(creds, "explicit")["x-goog-user-project"] == "explicit"
    assert "x-goog-user-project" not in bearer_headers(google.oauth2.credentials.Credentials(token="t"))


def test_parse_metrics_reads_validation_rows_beside_the_training_rows():
    from gemini_tuning.backends.vertex import _with_points
    from gemini_tuning.core.states import LossPoint

    text = "\n".join([
        '{"step": 2, "epoch": 1, "train_total_loss": 0.5, "wall_time": "t"}',
        '{"step": 2, "epoch": 1, "eval_total_loss": 0.8, "wall_time": "t"}',
        '{"step": 1, "epoch": 1, "/train_total_loss": 0.9}',
        '{"step": 4, "epoch": 2, "/eval_total_loss": 0.6}',
        '{"step": 3, "epoch": 2, "train_total_loss": 0.4, "eval_total_loss": 0.7}',   # one row, both metrics
        '{"step": 5, "eval_total_loss": "x"}', '{"step": "x", "eval_total_loss": 1.0}',
        '{"eval_total_loss": 1.0}', '{"step": 6, "eval_total_loss": true}', "junk"])
    pts = parse_metrics(text)
    assert [(p.step, p.loss) for p in pts] == [(1, 0.9), (2, 0.5), (3, 0.4)]     # a tuple of train points, as before
    assert isinstance(pts, tuple) and pts == (LossPoint(1, 1, 0.9), LossPoint(2, 1, 0.5), LossPoint(3, 2, 0.4))
    assert pts.validation == (LossPoint(2, 1, 0.8), LossPoint(3, 2, 0.7), LossPoint(4, 2, 0.6))
    assert parse_metrics('{"step": 1, "loss": 1.0}').validation == ()

    status = _with_points(JobStatus(backend="vertex", name="j", state="JOB_STATE_SUCCEEDED"), [text])
    assert status.loss_history == tuple(pts) and status.validation_history == pts.validation
    kept = _with_points(status, ['{"step": 9, "epoch": 3, "train_total_loss": 0.1}'])   # no eval rows this time
    assert kept.validation_history == pts.validation and kept.loss_history == (LossPoint(9, 3, 0.1),)


def test_validation_history_round_trips_through_the_summary_and_old_summaries_load():
    from gemini_tuning.core.states import LossPoint

    st = JobStatus(backend="vertex", name="j", state="JOB_STATE_SUCCEEDED",
                   loss_history=(LossPoint(1, 1, 2.0),),
                   validation_history=tuple(LossPoint(i, i, 1.0 / i) for i in range(1, 501)))
    d = st.summary(max_loss_points=100)
    assert len(d["validation_history"]) <= 101 and d["validation_history"][-1] == [500, 500, 1.0 / 500]
    assert d["validation_history"][0] == [1, 1, 1.0] and json.loads(json.dumps(d)) == d
    back = JobStatus.from_summary(d)
    assert back.validation_history[-1] == LossPoint(500, 500, 1.0 / 500) and back.loss_history == st.loss_history
    old = {k: v for k, v in d.items() if k != "validation_history"}
    assert JobStatus.from_summary(old).validation_history == ()
    assert JobStatus(backend="vertex", name="j", state="JOB_STATE_RUNNING").validation_history == ()
