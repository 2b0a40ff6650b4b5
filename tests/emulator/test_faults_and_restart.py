"""Acceptance 4: every fault kind observably happens and stops when its rule is exhausted; a restart keeps jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from harness.clients import LOCATION, PROJECT
from harness.data import demo_rows
from harness.paths import ROOT

pytestmark = pytest.mark.fast

JOBS = f"/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs"


def _faults(url, *rules):
    r = requests.post(f"{url}/_emulator/faults", json=list(rules), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["added"]


def test_status_fault_with_retry_after_then_exhausted(emulator):
    url = emulator.endpoints.url
    _faults(url, {"kind": "status", "path": "tuningJobs$", "method": "GET", "status": 429, "retry_after": 2,
                  "count": 2})
    got = [requests.get(url + JOBS, timeout=10) for _ in range(3)]
    assert [r.status_code for r in got] == [429, 429, 200]
    assert got[0].headers["Retry-After"] == "2"
    assert got[0].json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    rule = requests.get(f"{url}/_emulator/faults", timeout=10).json()["rules"][0]
    assert rule["hits"] == 2 and rule["remaining"] == 0
    # another path is untouched by the rule
    assert requests.get(f"{url}/v1beta/tunedModels", headers={"x-goog-api-key": "k"}, timeout=10).status_code == 200


@pytest.mark.parametrize("status, canonical", [(500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_5xx_faults(emulator, status, canonical):
    url = emulator.endpoints.url
    _faults(url, {"kind": "status", "path": "tuningJobs", "status": status, "count": 1})
    r = requests.get(url + JOBS, timeout=10)
    assert r.status_code == status and r.json()["error"]["status"] == canonical
    assert requests.get(url + JOBS, timeout=10).status_code == 200


def test_connection_reset_then_recovers(emulator):
    url = emulator.endpoints.url
    _faults(url, {"kind": "reset", "path": "tuningJobs", "count": 1})
    with pytest.raises(requests.ConnectionError):
        requests.get(url + JOBS, timeout=10)
    assert requests.get(url + JOBS, timeout=10).status_code == 200


def test_latency_adds_delay_while_active(emulator):
    url = emulator.endpoints.url
    _faults(url, {"kind": "latency", "path": "tuningJobs", "delay_s": 0.4, "count": 1})
    t0 = time.monotonic()
    assert requests.get(url + JOBS, timeout=10).status_code == 200
    slow = time.monotonic() - t0
    t0 = time.monotonic()
    requests.get(url + JOBS, timeout=10)
    fast = time.monotonic() - t0
    assert slow >= 0.4 and fast < 0.3


def test_stall_times_out_the_client(emulator):
    url = emulator.endpoints.url
    _faults(url, {"kind": "stall", "path": "tuningJobs", "delay_s": 5, "count": 1})
    with pytest.raises(requests.Timeout):
        requests.get(url + JOBS, timeout=0.5)
    assert requests.get(url + JOBS, timeout=10).status_code == 200


def test_probability_rule_fires_about_that_often(emulator):
    url = emulator.endpoints.url
    _faults(url, {"kind": "status", "path": "tuningJobs", "status": 503, "probability": 0.3})
    codes = [requests.get(url + JOBS, timeout=10).status_code for _ in range(100)]
    assert 10 <= codes.count(503) <= 50


def test_bad_fault_rule_rejected(emulator):
    r = requests.post(f"{emulator.endpoints.url}/_emulator/faults", json={"kind": "explode"}, timeout=10)
    assert r.status_code == 400


def _wait_state(url, name, states, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        job = requests.get(f"{url}/v1/{name}", timeout=10).json()
        if job.get("state") in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_job_failure_plan(emulator, small_train_uri):
    url = emulator.endpoints.url
    r = requests.post(f"{url}/_emulator/job-failures", json={"match": "^doomed", "count": 1, "at_fraction": 0.5,
                                                               "message": "Emulated tuning failure."}, timeout=10)
    assert r.status_code == 200
    body = {"baseModel": "gemini-2.5-flash", "tunedModelDisplayName": "doomed-1",
            "supervisedTuningSpec": {"trainingDatasetUri": small_train_uri}}
    failed = _wait_state(url, requests.post(url + JOBS, json=body, timeout=10).json()["name"],
                         {"JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"})
    assert failed["state"] == "JOB_STATE_FAILED" and failed["error"]["message"] == "Emulated tuning failure."
    assert "tunedModel" not in failed
    body["tunedModelDisplayName"] = "doomed-2"   # the plan is exhausted
    ok = _wait_state(url, requests.post(url + JOBS, json=body, timeout=10).json()["name"],
                     {"JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"})
    assert ok["state"] == "JOB_STATE_SUCCEEDED"


# --------------------------------------------------------------------------------------------- restart
class Launcher:
    """``python -m emulator`` in its own process group, as the demo runs it."""

    def __init__(self, data_dir: Path, *extra: str):
        self.data_dir, self.extra = data_dir, extra
        self.proc = None

    def start(self) -> dict:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--data-dir", str(self.data_dir),
             "--default-bucket", "restart-bucket", "--log-level", "WARNING", *self.extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        return json.loads(self.proc.stdout.readline())

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def test_restart_mid_job_keeps_every_resource_and_finishes(tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    launcher = Launcher(tmp_path, "--time-scale", "0.02",
                        "--faults", json.dumps({"kind": "status", "path": "nothing-matches-this", "status": 503}))
    info = launcher.start()
    try:
        url = info["url"]
        # 2.4 s pending + 6 steps x 0.3 s: long enough to be killed while RUNNING
        gcs = storage.Client(credentials=AnonymousCredentials(), project=PROJECT,
                             client_options={"api_endpoint": info["gcs_url"]})
        data = "".join(json.dumps(r) + "\n" for r in demo_rows("train.jsonl", 24))
        gcs.bucket("restart-bucket").blob("train.jsonl").upload_from_string(data)
        body = {"baseModel": "gemini-2.5-flash", "supervisedTuningSpec": {
            "trainingDatasetUri": "gs://restart-bucket/train.jsonl", "hyperParameters": {"epochCount": 2}}}
        job = requests.post(url + JOBS, json=body, timeout=10).json()
        op = requests.post(f"{url}/v1beta/tunedModels", headers={"x-goog-api-key": "k"}, timeout=10, json={
            "baseModel": "models/gemini-1.5-flash-001-tuning", "tuningTask": {"trainingData": {"examples": {
                "examples": [{"textInput": r["text_input"], "output": r["output"]}
                             for r in demo_rows("seeds_numbers.jsonl")]}}}}).json()
        assert requests.get(f"{url}/_emulator/faults", timeout=10).json()["rules"][0]["status"] == 503
        _wait_state(url, job["name"], {"JOB_STATE_RUNNING"})
        launcher.kill()

        info = launcher.start()   # new ports, same data dir
        url = info["url"]
        assert requests.get(f"{url}/v1/{job['name']}", timeout=10).json()["state"] in (
            "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
        done = _wait_state(url, job["name"], {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"})
        assert done["state"] == "JOB_STATE_SUCCEEDED", done
        gen = requests.post(f"{url}/v1/{done['tunedModel']['endpoint']}:generateContent", timeout=10,
                            json={"contents": [{"role": "user", "parts": [{"text": "refund please"}]}]})
        assert gen.status_code == 200
        deadline = time.monotonic() + 60
        while not (o := requests.get(f"{url}/v1/{op['name']}", headers={"x-goog-api-key": "k"},
                                     timeout=10).json())["done"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert "response" in o and o["response"]["state"] == "ACTIVE"
        # GCS objects survived too
        gcs = storage.Client(credentials=AnonymousCredentials(), project=PROJECT,
                             client_options={"api_endpoint": info["gcs_url"]})
        assert gcs.bucket("restart-bucket").blob("train.jsonl").download_as_text() == data
    finally:
        launcher.kill()


def test_reset_after_processing_loses_the_answer_not_the_work(emulator, small_train_uri):
    url = emulator.endpoints.url
    _faults(url, {"kind": "reset_after", "path": "tuningJobs$", "method": "POST", "count": 1})
    label = f"l{time.time_ns()}"
    body = {"baseModel": "gemini-2.5-flash", "labels": {"probe": label},
            "supervisedTuningSpec": {"trainingDatasetUri": small_train_uri}}
    with pytest.raises(requests.ConnectionError):
        requests.post(url + JOBS, json=body, timeout=10)
    jobs = requests.get(url + JOBS, params={"filter": f'labels.probe="{label}"'}, timeout=10).json()["tuningJobs"]
    assert len(jobs) == 1        # the job exists although the client never saw its name


def test_stall_after_processing(emulator, small_train_uri):
    url = emulator.endpoints.url
    _faults(url, {"kind": "stall_after", "path": "tuningJobs$", "method": "POST", "count": 1, "delay_s": 5})
    label = f"l{time.time_ns()}"
    body = {"baseModel": "gemini-2.5-flash", "labels": {"probe": label},
            "supervisedTuningSpec": {"trainingDatasetUri": small_train_uri}}
    with pytest.raises(requests.Timeout):
        requests.post(url + JOBS, json=body, timeout=0.5)
    jobs = requests.get(url + JOBS, params={"filter": f'labels.probe="{label}"'}, timeout=10).json()["tuningJobs"]
    assert len(jobs) == 1
