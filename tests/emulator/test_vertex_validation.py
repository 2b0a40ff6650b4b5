"""Vertex tuningJobs.create validates like the service: 400 with Google's envelope and a field violation."""

from __future__ import annotations

import pytest
import requests

from harness.clients import LOCATION, PROJECT

pytestmark = pytest.mark.fast


def _body(**over):
    body = {"baseModel": "gemini-2.5-flash",
            "supervisedTuningSpec": {"trainingDatasetUri": "gs://tuning-data/train.jsonl",
                                     "hyperParameters": {"epochCount": "2", "adapterSize": "ADAPTER_SIZE_FOUR"}}}
    for k, v in over.items():
        if k in ("trainingDatasetUri",):
            body["supervisedTuningSpec"][k] = v
        elif k in ("epochCount", "adapterSize", "learningRateMultiplier"):
            body["supervisedTuningSpec"]["hyperParameters"][k] = v
        else:
            body[k] = v
    return body


@pytest.mark.parametrize("over, field, fragment", [
    ({"trainingDatasetUri": "gs://b/train.csv"}, "training_dataset_uri", "should be a GCS object of type JSONL"),
    ({"trainingDatasetUri": "/local/train.jsonl"}, "training_dataset_uri", "GCS object"),
    ({"baseModel": "gemini-9-ultra"}, "base_model", "not supported"),
    ({"adapterSize": "ADAPTER_SIZE_HUGE"}, "adapter_size", "Invalid value for enum"),
    ({"adapterSize": 99}, "adapter_size", "Invalid value for enum"),
    ({"adapterSize": "ADAPTER_SIZE_THIRTY_TWO"}, "adapter_size", "not supported for gemini-2.5-flash"),
    ({"epochCount": "zero"}, "epoch_count", "int64"),
    ({"epochCount": 0}, "epoch_count", "between 1 and 100"),
    ({"learningRateMultiplier": -1}, "learning_rate_multiplier", "(0, 100]"),
    ({"labels": {"Bad Key": "v"}}, "labels", "Invalid label"),
    ({"baseModel": "gemini-3.5-flash"}, "base_model", "only supported in"),   # location asia-east1 below
])
def test_create_rejects(emulator, over, field, fragment):
    location = "asia-east1" if over.get("baseModel") == "gemini-3.5-flash" else LOCATION
    r = requests.post(f"{emulator.endpoints.url}/v1/projects/{PROJECT}/locations/{location}/tuningJobs",
                      json=_body(**over), timeout=10)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT" and fragment in err["message"]
    violation = err["details"][0]["fieldViolations"][0]
    assert violation["field"].endswith(field)


def test_integer_enums_and_int64_strings_accepted(emulator, small_train_uri):
    r = requests.post(f"{emulator.endpoints.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs",
                      params={"$alt": "json;enum-encoding=int"},
                      json=_body(trainingDatasetUri=small_train_uri, adapterSize=6, epochCount="1"), timeout=10)
    assert r.status_code == 200, r.text
    hp = r.json()["supervisedTuningSpec"]["hyperParameters"]
    assert hp == {"epochCount": "1", "learningRateMultiplier": 1.0, "adapterSize": "ADAPTER_SIZE_TWO"}


def test_missing_training_file_fails_job_asynchronously(emulator):
    url = f"{emulator.endpoints.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs"
    job = requests.post(url, json=_body(trainingDatasetUri="gs://gemini-tuning-test/nope/missing.jsonl"),
                        timeout=10).json()
    import time

    deadline = time.monotonic() + 20
    while job["state"] not in ("JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        job = requests.get(f"{emulator.endpoints.url}/v1/{job['name']}", timeout=10).json()
    assert job["state"] == "JOB_STATE_FAILED"
    assert "does not exist" in job["error"]["message"]


def test_unknown_route_and_unknown_job_are_404_envelopes(emulator):
    base = f"{emulator.endpoints.url}/v1/projects/{PROJECT}/locations/{LOCATION}"
    r = requests.get(f"{base}/tuningJobs/123", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    r = requests.get(f"{emulator.endpoints.url}/v1/nothing/here", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == 404


def test_list_filter_syntax_error_is_400(emulator):
    r = requests.get(f"{emulator.endpoints.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs",
                     params={"filter": "labels.a = = b"}, timeout=10)
    assert r.status_code == 400
