"""Acceptance 1: the official Google clients talk to the emulator unchanged, only their base URL/credentials set."""

from __future__ import annotations

import json

import pytest

from harness.clients import BUCKET, LOCATION, PROJECT, gapic_kwargs, genai_vertex_client
from harness.data import demo_rows, unique
from harness.waits import wait_until

pytestmark = pytest.mark.fast

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def _wait(get, done, timeout=60.0, interval=0.2):
    return wait_until(get, done, timeout, interval)


def _tuned_job(client, train_uri, **config):
    from google.genai import types

    job = client.tunings.tune(base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train_uri),
                              config=types.CreateTuningJobConfig(**config))
    return _wait(lambda: client.tunings.get(name=job.name), lambda j: j.has_ended)


# ------------------------------------------------------------------------------------------------ google-genai
def test_genai_vertex_tune_get_list_generate(emulator, small_train_uri):
    from google.genai import types

    client = genai_vertex_client(emulator.endpoints.url)
    label = unique("run")
    job = client.tunings.tune(
        base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=small_train_uri),
        config=types.CreateTuningJobConfig(epoch_count=2, learning_rate_multiplier=1.5, tuned_model_display_name="t1",
                                           adapter_size=types.AdapterSize.ADAPTER_SIZE_EIGHT, labels={"run": label}))
    assert job.name.startswith(f"{PARENT}/tuningJobs/")
    assert job.state == types.JobState.JOB_STATE_PENDING
    seen = set()
    job = _wait(lambda: client.tunings.get(name=job.name), lambda j: seen.add(j.state) or j.has_ended)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert types.JobState.JOB_STATE_RUNNING in seen
    assert job.tuned_model.model.endswith("@1") and "/endpoints/" in job.tuned_model.endpoint
    assert job.tuning_data_stats.supervised_tuning_data_stats.tuning_dataset_example_count == 24
    assert job.supervised_tuning_spec.hyper_parameters.epoch_count == 2
    assert job.supervised_tuning_spec.hyper_parameters.adapter_size == types.AdapterSize.ADAPTER_SIZE_EIGHT

    # the tuned endpoint answers from what it learned: one of the training labels
    labels = {r["contents"][-1]["parts"][0]["text"] for r in demo_rows("train.jsonl", 24)}
    resp = client.models.generate_content(model=job.tuned_model.endpoint, contents=demo_rows("train.jsonl", 1)[0]
                                          ["contents"][0]["parts"][0]["text"],
                                          config=types.GenerateContentConfig(temperature=0))
    assert resp.text in labels
    assert resp.usage_metadata.total_token_count > 0

    listed = [j.name for j in client.tunings.list(config={"page_size": 2, "filter": f'labels.run="{label}"'})]
    assert listed == [job.name]


def test_genai_vertex_cancel(emulator, small_train_uri):
    from google.genai import types

    emulator.emulator.config.update({"time_scale": 0.05})  # slow enough to cancel mid-way
    client = genai_vertex_client(emulator.endpoints.url)
    job = client.tunings.tune(base_model="gemini-2.5-flash",
                              training_dataset=types.TuningDataset(gcs_uri=small_train_uri))
    client.tunings.cancel(name=job.name)
    job = client.tunings.get(name=job.name)
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    assert job.error.code == 1
    assert job.tuned_model is None


def test_genai_batches_create_get(emulator, small_train_uri, upload, gcs_client):
    from google.genai import types

    client = genai_vertex_client(emulator.endpoints.url)
    job = _tuned_job(client, small_train_uri, epoch_count=2)
    prompts = [r["prompt"] for r in demo_rows("eval_prompts.jsonl", 5)]
    src = upload("".join(json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": p}]}],
                                                 "generationConfig": {"temperature": 0}}}) + "\n" for p in prompts))
    dest = f"gs://{BUCKET}/{unique('batch')}"
    batch = client.batches.create(model=job.tuned_model.model, src=src,
                                  config=types.CreateBatchJobConfig(dest=dest, display_name="eval"))
    batch = _wait(lambda: client.batches.get(name=batch.name), lambda b: b.done)
    assert batch.state == types.JobState.JOB_STATE_SUCCEEDED, batch.error
    assert batch.dest.gcs_uri == dest   # genai reports the requested prefix; results sit in a folder below it
    found = [b for b in gcs_client.list_blobs(BUCKET, prefix=dest[len(f"gs://{BUCKET}/"):])
             if b.name.endswith("/predictions.jsonl")]
    assert len(found) == 1
    rows = [json.loads(x) for x in found[0].download_as_text().splitlines()]
    assert len(rows) == 5
    assert all(r["response"]["candidates"][0]["content"]["parts"][0]["text"] for r in rows)
    assert [r["request"]["contents"][0]["parts"][0]["text"] for r in rows] == prompts


def test_genai_api_key_mode_generate_on_tuned_model(emulator):
    import requests
    from google import genai
    from google.genai import types

    url = emulator.endpoints.url
    examples = [{"textInput": r["text_input"], "output": r["output"]} for r in demo_rows("seeds_numbers.jsonl")]
    op = requests.post(f"{url}/v1beta/tunedModels", headers={"x-goog-api-key": "k"}, json={
        "displayName": "numbers", "baseModel": "models/gemini-1.5-flash-001-tuning",
        "tuningTask": {"hyperparameters": {"epochCount": 5, "batchSize": 4, "learningRate": 0.001},
                       "trainingData": {"examples": {"examples": examples}}}}).json()
    model = op["metadata"]["tunedModel"]
    _wait(lambda: requests.get(f"{url}/v1/{op['name']}", headers={"x-goog-api-key": "k"}).json(), lambda o: o["done"])
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=url))
    resp = client.models.generate_content(model=model, contents=examples[0]["textInput"],
                                          config=types.GenerateContentConfig(temperature=0))
    assert resp.text in {e["output"] for e in examples}   # it answers from what it learned
    assert client.tunings.get(name=model).state == types.JobState.JOB_STATE_SUCCEEDED


# ------------------------------------------------------------------------------------------------ GAPIC (aiplatform)
def test_gapic_tuning_prediction_model_endpoint_lros(emulator, small_train_uri):
    from google.cloud import aiplatform_v1 as v1

    kw = gapic_kwargs(emulator.endpoints.url)
    tuning = v1.GenAiTuningServiceClient(**kw)
    job = tuning.create_tuning_job(parent=PARENT, tuning_job=v1.TuningJob(
        base_model="gemini-2.5-flash", tuned_model_display_name="gapic",
        supervised_tuning_spec=v1.SupervisedTuningSpec(
            training_dataset_uri=small_train_uri,
            hyper_parameters=v1.SupervisedHyperParameters(
                epoch_count=2, adapter_size=v1.SupervisedHyperParameters.AdapterSize.ADAPTER_SIZE_TWO))))
    assert job.state == v1.JobState.JOB_STATE_PENDING
    job = _wait(lambda: tuning.get_tuning_job(name=job.name), lambda j: j.state in (
        v1.JobState.JOB_STATE_SUCCEEDED, v1.JobState.JOB_STATE_FAILED))
    assert job.state == v1.JobState.JOB_STATE_SUCCEEDED
    assert job.supervised_tuning_spec.hyper_parameters.adapter_size == \
        v1.SupervisedHyperParameters.AdapterSize.ADAPTER_SIZE_TWO  # integer enum 6 went in, string came back
    assert job.name in [j.name for j in tuning.list_tuning_jobs(parent=PARENT)]

    pred = v1.PredictionServiceClient(**kw)
    out = pred.generate_content(model=job.tuned_model.endpoint, contents=[
        v1.Content(role="user", parts=[v1.Part(text="I was charged twice on my invoice")])])
    assert out.candidates[0].content.parts[0].text

    models = v1.ModelServiceClient(**kw)
    model_name, version = job.tuned_model.model.split("@")
    m = models.get_model(name=job.tuned_model.model)           # '@' is sent percent-encoded
    assert m.version_id == version and "default" in m.version_aliases
    m.labels = {"stage": "candidate"}
    m = models.update_model(model=m, update_mask={"paths": ["labels"]})
    assert m.labels == {"stage": "candidate"}
    m = models.merge_version_aliases(name=job.tuned_model.model, version_aliases=["champion"])
    assert set(m.version_aliases) == {"default", "champion"}
    assert models.get_model(name=f"{model_name}@champion").version_id == version
    assert len(list(models.list_model_versions(name=model_name))) == 1

    from google.api_core import exceptions

    with pytest.raises(exceptions.BadRequest, match="deployed"):   # FAILED_PRECONDITION travels as HTTP 400
        models.delete_model(name=model_name).result(timeout=30)
    endpoints = v1.EndpointServiceClient(**kw)
    # every checkpoint (one per epoch) is served from an endpoint of its own; the last one is tunedModel.endpoint
    assert [c.checkpoint_id for c in job.tuned_model.checkpoints] == ["1", "2"]
    assert job.tuned_model.checkpoints[-1].endpoint == job.tuned_model.endpoint
    for ckpt in job.tuned_model.checkpoints:
        ep = endpoints.get_endpoint(name=ckpt.endpoint)
        assert len(ep.deployed_models) == 1 and ep.deployed_models[0].checkpoint_id == ckpt.checkpoint_id
        endpoints.undeploy_model(endpoint=ep.name, deployed_model_id=ep.deployed_models[0].id).result(timeout=30)
        assert not endpoints.get_endpoint(name=ep.name).deployed_models
        if ckpt.checkpoint_id == "1":
            with pytest.raises(exceptions.BadRequest, match="deployed"):     # checkpoint 2 is still deployed
                models.delete_model(name=model_name).result(timeout=30)
        endpoints.delete_endpoint(name=ep.name).result(timeout=30)    # LRO, polled under /ui/...
    models.delete_model(name=model_name).result(timeout=30)
    with pytest.raises(exceptions.NotFound):
        models.get_model(name=model_name)
    with pytest.raises(exceptions.NotFound):
        endpoints.get_endpoint(name=job.tuned_model.endpoint)


def test_gapic_job_service_batch_prediction(emulator, upload):
    from google.cloud import aiplatform_v1 as v1

    jobs = v1.JobServiceClient(**gapic_kwargs(emulator.endpoints.url))
    src = upload(json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}}) + "\n")
    job = jobs.create_batch_prediction_job(parent=PARENT, batch_prediction_job=v1.BatchPredictionJob(
        display_name="b", model="publishers/google/models/gemini-2.5-flash",
        input_config=v1.BatchPredictionJob.InputConfig(instances_format="jsonl",
                                                       gcs_source=v1.GcsSource(uris=[src])),
        output_config=v1.BatchPredictionJob.OutputConfig(
            predictions_format="jsonl", gcs_destination=v1.GcsDestination(output_uri_prefix=f"gs://{BUCKET}/out"))))
    job = _wait(lambda: jobs.get_batch_prediction_job(name=job.name),
                lambda j: j.state in (v1.JobState.JOB_STATE_SUCCEEDED, v1.JobState.JOB_STATE_FAILED))
    assert job.state == v1.JobState.JOB_STATE_SUCCEEDED
    assert job.completion_stats.successful_count == 1
    assert job.output_info.gcs_output_directory.startswith(f"gs://{BUCKET}/out/")


# ------------------------------------------------------------------------------------------------ GCS
def test_gcs_upload_download_and_create_only(gcs_client):
    from google.api_core.exceptions import PreconditionFailed

    blob = gcs_client.bucket(BUCKET).blob(unique("obj"))
    blob.upload_from_string(b"first", if_generation_match=0)
    assert blob.download_as_bytes() == b"first"
    with pytest.raises(PreconditionFailed):
        gcs_client.bucket(BUCKET).blob(blob.name).upload_from_string(b"second", if_generation_match=0)
    assert gcs_client.bucket(BUCKET).blob(blob.name).download_as_bytes() == b"first"
