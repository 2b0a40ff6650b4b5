"""tuningJobState sub-states (with the quota / capacity wait knobs) and supervisedTuningDataStats computed from the
real training file (token counts, oversize examples dropped with 1-based indices and reasons)."""

from __future__ import annotations

import json

import pytest
import requests

from emulator import jobs
from harness.clients import LOCATION, PROJECT, gapic_kwargs
from harness.data import demo_rows
from harness.waits import wait_until

pytestmark = pytest.mark.fast

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SUB_ORDER = ["TUNING_JOB_STATE_WAITING_FOR_QUOTA", "TUNING_JOB_STATE_PROCESSING_DATASET",
             "TUNING_JOB_STATE_WAITING_FOR_CAPACITY", "TUNING_JOB_STATE_TUNING", "TUNING_JOB_STATE_POST_PROCESSING"]


def _create(url, train_uri, ver="v1beta1", epochs=1):
    body = {"baseModel": "gemini-2.5-flash",
            "supervisedTuningSpec": {"trainingDatasetUri": train_uri, "hyperParameters": {"epochCount": str(epochs)}}}
    r = requests.post(f"{url}/{ver}/{PARENT}/tuningJobs", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _get(url, name, ver="v1beta1"):
    r = requests.get(f"{url}/{ver}/{name}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_quota_and_capacity_waits_then_tuning(emulator, small_train_uri):
    url = emulator.endpoints.url
    r = requests.post(f"{url}/_emulator/config", json={"quota_wait_seconds": 750, "capacity_wait_seconds": 750},
                      timeout=10)   # x time_scale 0.004 = 3 s each
    assert r.status_code == 200 and r.json()["quota_wait_seconds"] == 750
    job = _create(url, small_train_uri)
    assert job["state"] == "JOB_STATE_PENDING" and job["tuningJobState"] == "TUNING_JOB_STATE_WAITING_FOR_QUOTA"
    seen = []

    def poll():
        j = _get(url, job["name"])
        pair = (j["state"], j.get("tuningJobState"))
        if not seen or seen[-1] != pair:
            seen.append(pair)
        if pair[1] in SUB_ORDER[:2]:
            assert "tuningDataStats" not in j     # not before the dataset has been processed
        return j

    done = wait_until(poll, lambda j: j["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"), timeout=90,
                      interval=0.1)
    assert done["state"] == "JOB_STATE_SUCCEEDED" and "tuningJobState" not in done
    subs = [s for _, s in seen if s]
    assert subs[:3] == SUB_ORDER[:3], seen
    assert "TUNING_JOB_STATE_TUNING" in subs, seen
    assert [SUB_ORDER.index(s) for s in subs] == sorted(SUB_ORDER.index(s) for s in subs)   # never goes back
    states = dict((s, st) for st, s in seen if s)
    assert {states[s] for s in SUB_ORDER[:3]} == {"JOB_STATE_PENDING"}
    assert states["TUNING_JOB_STATE_TUNING"] == "JOB_STATE_RUNNING"
    # the v1 surface has no tuningJobState (DISC-v1 lacks it)
    assert "tuningJobState" not in _get(url, job["name"], ver="v1")


def test_config_rejects_negative_wait(emulator):
    r = requests.post(f"{emulator.endpoints.url}/_emulator/config", json={"quota_wait_seconds": -1}, timeout=10)
    assert r.status_code == 400


def test_timeline_without_wait_facts_is_unchanged():
    """Jobs without quota_s / capacity_s (Gemini API tuned models) go straight to dataset processing."""
    emu = {"created": 0.0, "pending_s": 1.0, "step_s": 0.1, "steps": None}
    assert jobs.timeline(emu, 0.5, None).sub_state == "PROCESSING_DATASET"
    emu.update(steps=10, data_ready=0.2)
    assert jobs.timeline(emu, 1.05, 0).state == "RUNNING"
    emu.update(quota_s=2.0, capacity_s=1.0)
    assert jobs.timeline(emu, 1.0, 0).sub_state == "WAITING_FOR_QUOTA"
    assert jobs.timeline(emu, 2.5, 0).sub_state == "PROCESSING_DATASET"
    assert jobs.timeline(emu, 3.5, 0).sub_state == "WAITING_FOR_CAPACITY"
    assert jobs.timeline(emu, 4.05, 0).state == "RUNNING"


# ------------------------------------------------------------------------------------------------ data stats
OVERSIZE_AT = [3, 7, 11, 20, 26]        # 1-based example indices


@pytest.fixture
def oversize_uri(upload):
    rows = demo_rows("train.jsonl", 25)
    big = "lorem ipsum " * 45_000     # 540 000 characters ~ 135 000 tokens > 131 072
    out = []
    for row in rows:
        if len(out) + 1 in OVERSIZE_AT:
            huge = json.loads(json.dumps(row))
            huge["contents"][0]["parts"][0]["text"] += big
            out.append(huge)
        out.append(row)
    assert len(out) == 30
    return upload("".join(json.dumps(r) + "\n" for r in out)), out


def test_oversize_examples_are_dropped_with_indices_and_reasons(emulator, oversize_uri):
    url = emulator.endpoints.url
    uri, _ = oversize_uri
    job = _create(url, uri, ver="v1", epochs=1)
    done = wait_until(lambda: _get(url, job["name"], ver="v1"),
                      lambda j: j["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"), timeout=90)
    assert done["state"] == "JOB_STATE_SUCCEEDED", done
    stats = done["tuningDataStats"]["supervisedTuningDataStats"]
    assert stats["tuningDatasetExampleCount"] == "30"
    assert stats["totalTruncatedExampleCount"] == "5"
    assert stats["truncatedExampleIndices"] == [str(i) for i in OVERSIZE_AT]
    assert len(stats["droppedExampleReasons"]) == 5
    assert all("131072" in reason for reason in stats["droppedExampleReasons"])
    assert stats["tuningStepCount"] == "4"          # 25 kept examples / batch 8 = 4 steps, 1 epoch
    # int64 fields are JSON strings, doubles numbers
    for key in ("tuningDatasetExampleCount", "totalTuningCharacterCount", "totalBillableTokenCount",
                "tuningStepCount", "totalTruncatedExampleCount"):
        assert isinstance(stats[key], str) and stats[key].isdigit(), key
    dist = stats["userInputTokenDistribution"]
    assert isinstance(dist["sum"], str) and isinstance(dist["mean"], float)
    assert dist["max"] < 131_072 and all(isinstance(b["count"], float) for b in dist["buckets"])
    assert sum(b["count"] for b in dist["buckets"]) == 25
    out_sum = int(stats["userOutputTokenDistribution"]["sum"])
    assert int(stats["totalBillableTokenCount"]) == int(dist["sum"]) + out_sum
    assert stats["userMessagePerExampleDistribution"]["min"] >= 2
    assert stats["userDatasetExamples"] and stats["userDatasetExamples"][0]["role"] == "user"

    # the official v1 parser accepts the JSON (strictly: unknown fields rejected) and so does the GAPIC client
    from google.cloud import aiplatform_v1

    parsed = aiplatform_v1.TuningJob.from_json(json.dumps(done))
    s = parsed.tuning_data_stats.supervised_tuning_data_stats
    assert list(s.truncated_example_indices) == OVERSIZE_AT and s.total_truncated_example_count == 5
    client = aiplatform_v1.GenAiTuningServiceClient(**gapic_kwargs(url))
    got = client.get_tuning_job(name=job["name"]).tuning_data_stats.supervised_tuning_data_stats
    assert got.tuning_dataset_example_count == 30 and len(got.dropped_example_reasons) == 5


def test_stats_without_drops(emulator, small_train_uri):
    url = emulator.endpoints.url
    job = _create(url, small_train_uri, ver="v1", epochs=1)
    done = wait_until(lambda: _get(url, job["name"], ver="v1"), lambda j: j["state"] == "JOB_STATE_SUCCEEDED",
                      timeout=90)
    stats = done["tuningDataStats"]["supervisedTuningDataStats"]
    assert stats["tuningDatasetExampleCount"] == "24" and stats["totalTruncatedExampleCount"] == "0"
    assert stats["truncatedExampleIndices"] == [] and stats["droppedExampleReasons"] == []
    rows = demo_rows("train.jsonl", 24)
    assert int(stats["totalTuningCharacterCount"]) > sum(len(r["contents"][-1]["parts"][0]["text"]) for r in rows)
