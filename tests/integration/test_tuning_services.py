"""Issue 4 §3: the tuning operator on real Airflow services (scheduler, triggerer, api-server, dag-processor;
SQLite, LocalExecutor, parallelism 4), each in its own process group, with the emulator as its own process."""

from __future__ import annotations

import json
import time

import pytest
import requests

from gemini_tuning.core.identity import identity_key
from harness.airflow_services import AirflowServices
from harness.emulator_process import start_emulator, stop_emulator
from harness.paths import DAGS, DEMO, PLUGINS, SERVICE_DAGS
from harness.waits import wait_for

pytestmark = [pytest.mark.services, pytest.mark.timeout(900), pytest.mark.full]
BUCKET, PROJECT = "gemini-tuning-svc", "test-project"
JOBS = f"/v1/projects/{PROJECT}/locations/us-central1/tuningJobs"
FAST = {"poll_policy": {"initial_seconds": 1, "min_seconds": 1, "max_seconds": 3, "fallback_max_seconds": 2},
        "eval_rpm": 12000, "eval_concurrency": 32}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("svc")
    emu, info = start_emulator(tmp / "emu", bucket=BUCKET, time_scale=0.12)
    dags = tmp / "dags"
    dags.mkdir()
    (dags / "gemini_tuning_pipeline.py").symlink_to(DAGS / "gemini_tuning_pipeline.py")
    (dags / "tune_dags.py").symlink_to(SERVICE_DAGS / "tune_dags.py")
    env = {"GEMINI_TUNING_EMULATOR_URL": info["url"], "STORAGE_EMULATOR_HOST": info["gcs_url"],
           "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",   # no cron runs: the tests trigger their own
           "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({"conn_type": "google_cloud_platform",
                                                            "extra": {"is_anonymous": True, "project": PROJECT}})}
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = storage.Client(credentials=AnonymousCredentials(), project=PROJECT,
                         client_options={"api_endpoint": info["gcs_url"]})
    rows = [json.loads(x) for x in (DEMO / "train.jsonl").read_text().splitlines()[:24]]
    gcs.bucket(BUCKET).blob("train.jsonl").upload_from_string("".join(json.dumps(r) + "\n" for r in rows))
    services = AirflowServices(dags_folder=dags, plugins_folder=PLUGINS, extra_env=env)
    try:
        services.start()
        for dag_id in ("gemini_tune_deferred", "gemini_tune_on_worker", "gemini_tuning_pipeline"):
            services.wait_dag_parsed(dag_id)
        yield services, info, gcs
    finally:
        services.stop()
        stop_emulator(emu)


def emu_config(info, **values):
    requests.patch(f"{info['url']}/_emulator/config", json=values, timeout=10).raise_for_status()


def jobs_for(info, dag_id, run_id, task_id="tune"):
    key = identity_key(dag_id, task_id, run_id, -1)
    r = requests.get(info["url"] + JOBS, params={"filter": f'labels.gemini-tuning-key="{key}"'}, timeout=10)
    r.raise_for_status()
    return r.json().get("tuningJobs", [])


def test_a_pipeline_succeeds_with_tune_deferred_and_no_worker(stack):
    services, info, _ = stack
    emu_config(info, time_scale=0.01)
    run_id = services.trigger_dag("gemini_tuning_pipeline", {**FAST, "gcs_prefix": f"gs://{BUCKET}/pipe-a"})
    services.wait_ti_state("gemini_tuning_pipeline", run_id, "tune", "deferred", timeout=180)
    # the worker that deferred lets go within a couple of seconds; nothing holds the task while it waits
    wait_for(lambda: not services.worker_pids_for("gemini_tuning_pipeline", "tune", run_id), 15, "the worker to exit")
    assert services.task_instance("gemini_tuning_pipeline", run_id, "tune")["state"] == "deferred"
    assert services.wait_run("gemini_tuning_pipeline", run_id, timeout=420) == "success"
    tuned = services.xcom("gemini_tuning_pipeline", run_id, "tune")
    assert tuned["state"] == "JOB_STATE_SUCCEEDED" and tuned["endpoint"]
    assert len(jobs_for(info, "gemini_tuning_pipeline", run_id)) == 1


def test_b_marking_deferred_task_failed_cancels_the_job(stack):
    services, info, _ = stack
    emu_config(info, time_scale=0.5)   # a job long enough that it cannot finish before the kill, even under load
    run_id = services.trigger_dag("gemini_tune_deferred", {"state_uri": f"gs://{BUCKET}/state-b"})
    services.wait_ti_state("gemini_tune_deferred", run_id, "tune", "deferred", timeout=120)
    services.wait_trigger_running("gemini_tune_deferred", run_id, "tune", timeout=60)
    time.sleep(2)   # let the trigger poll once (on_kill only runs for a trigger the triggerer has started)
    services.set_ti_state("gemini_tune_deferred", run_id, "tune", "failed")
    job = wait_for(lambda: next((j for j in jobs_for(info, "gemini_tune_deferred", run_id)
                                 if j["state"] == "JOB_STATE_CANCELLED"), None), 180, "the job to be cancelled")
    assert job["error"]["code"] == 1
    assert services.wait_run("gemini_tune_deferred", run_id, timeout=60) == "failed"


def test_c_worker_killed_right_after_create_retry_leaves_exactly_one_job(stack):
    services, info, _ = stack
    emu_config(info, time_scale=0.12)
    run_id = services.trigger_dag("gemini_tune_on_worker", {"state_uri": f"gs://{BUCKET}/state-c"})
    wait_for(lambda: jobs_for(info, "gemini_tune_on_worker", run_id), 120, "the job to be created")
    killed = services.kill_task_processes("gemini_tune_on_worker", "tune", run_id)
    assert killed, "the task runner should be polling on the worker"
    assert services.wait_run("gemini_tune_on_worker", run_id, timeout=300) == "success"
    ti = services.task_instance("gemini_tune_on_worker", run_id, "tune")
    assert ti["try_number"] >= 2
    jobs = jobs_for(info, "gemini_tune_on_worker", run_id)
    assert len(jobs) == 1 and jobs[0]["state"] == "JOB_STATE_SUCCEEDED"


def test_d_triggerer_killed_mid_wait_and_restarted_job_not_cancelled(stack):
    services, info, _ = stack
    emu_config(info, time_scale=0.12)
    run_id = services.trigger_dag("gemini_tune_deferred", {"state_uri": f"gs://{BUCKET}/state-d"})
    services.wait_ti_state("gemini_tune_deferred", run_id, "tune", "deferred", timeout=120)
    first = services.wait_trigger_running("gemini_tune_deferred", run_id, "tune", timeout=60)
    time.sleep(2)
    services.kill_component("triggerer")
    time.sleep(2)
    assert jobs_for(info, "gemini_tune_deferred", run_id)[0]["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    services.start_component("triggerer")
    services.wait_trigger_running("gemini_tune_deferred", run_id, "tune", exclude=[first], timeout=90)
    assert services.wait_run("gemini_tune_deferred", run_id, timeout=300) == "success"
    jobs = jobs_for(info, "gemini_tune_deferred", run_id)
    assert len(jobs) == 1 and jobs[0]["state"] == "JOB_STATE_SUCCEEDED"


def test_e_crash_inside_create_is_recovered_by_label(stack):
    services, info, gcs = stack
    emu_config(info, time_scale=0.12)
    # the create is processed, but its answer never comes back: the worker dies waiting for it
    requests.post(f"{info['url']}/_emulator/faults", json={"kind": "stall_after", "path": "tuningJobs$",
                                                            "method": "POST", "count": 1, "delay_s": 120}, timeout=10)
    run_id = services.trigger_dag("gemini_tune_deferred", {"state_uri": f"gs://{BUCKET}/state-e"})
    wait_for(lambda: jobs_for(info, "gemini_tune_deferred", run_id), 120, "the job to be created")
    key = identity_key("gemini_tune_deferred", "tune", run_id, -1)
    intent = json.loads(gcs.bucket(BUCKET).blob(f"state-e/intents/{key}.json").download_as_text())
    assert intent["job_name"] is None            # the intent was written before the paid call
    assert services.kill_task_processes("gemini_tune_deferred", "tune", run_id)
    assert services.wait_run("gemini_tune_deferred", run_id, timeout=300) == "success"
    jobs = jobs_for(info, "gemini_tune_deferred", run_id)
    assert len(jobs) == 1 and jobs[0]["state"] == "JOB_STATE_SUCCEEDED"
    intent = json.loads(gcs.bucket(BUCKET).blob(f"state-e/intents/{key}.json").download_as_text())
    assert intent["job_name"] == jobs[0]["name"] and intent["attempt"] == 1
