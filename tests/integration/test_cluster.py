"""The pipeline on a distributed Airflow (``tests/harness/cluster.py``: PostgreSQL, Redis, CeleryExecutor with two
workers, two triggerers) and the faults that deployment adds. One cluster for the module.

The triggerer that holds a trigger is always found by asking the REST API (the TI's ``trigger.triggerer_id`` ->
``/api/v2/jobs`` -> the job's host name, which each cluster component reports for itself), never by guessing.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from gemini_tuning.core.identity import identity_key
from harness.cluster import BUCKET, TRIGGERERS, WORKERS, Cluster, component_of
from harness.paths import DAGS, DEMO, SERVICE_DAGS
from harness.waits import wait_for

PIPELINE, DEFERRED = "gemini_tuning_pipeline", "gemini_tune_deferred"
FAST = {"poll_policy": {"initial_seconds": 1, "min_seconds": 1, "max_seconds": 3, "fallback_max_seconds": 2},
        "eval_rpm": 12000, "eval_concurrency": 32}
JOBS = "/v1/projects/{project}/locations/us-central1/tuningJobs"

pytestmark = [pytest.mark.services, pytest.mark.timeout(900), pytest.mark.full]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    dags = tmp / "dags"
    dags.mkdir()
    (dags / "gemini_tuning_pipeline.py").symlink_to(DAGS / "gemini_tuning_pipeline.py")
    (dags / "tune_dags.py").symlink_to(SERVICE_DAGS / "tune_dags.py")
    c = Cluster(tmp / "cluster", dags_folder=dags, time_scale=0.02,
                extra_env={"GEMINI_TUNING_MAX_ACTIVE_RUNS": "8"})
    c.start()
    try:
        for dag_id in (PIPELINE, DEFERRED):
            c.services.wait_dag_parsed(dag_id)
        yield c
    finally:
        left = c.stop()
        assert not left, f"processes left after stop: {left}"


# ---------------------------------------------------------------------------------------------- helpers
def emu(cluster, **config):
    requests.patch(f"{cluster.state.emulator['url']}/_emulator/config", json=config, timeout=10).raise_for_status()


def jobs_for(cluster, dag_id, run_id, task_id="tune"):
    key = identity_key(dag_id, task_id, run_id, -1)
    project = "test-project" if dag_id == DEFERRED else "demo-project"     # tune_dags names its project
    url = cluster.state.emulator["url"] + JOBS.format(project=project)
    r = requests.get(url, params={"filter": f'labels.gemini-tuning-key="{key}"'}, timeout=10)
    r.raise_for_status()
    return r.json().get("tuningJobs", [])


def cancels(cluster) -> list[dict]:
    r = requests.get(f"{cluster.state.emulator['url']}/_emulator/requests",
                     params={"path": r":cancel$", "method": "POST"}, timeout=10)
    r.raise_for_status()
    return r.json()["requests"]


def trigger_holder(cluster, dag_id, run_id, task_id="tune") -> tuple[str | None, int | None]:
    """(component, triggerer job id) of the triggerer that holds the TI's trigger, as the REST API tells."""
    ti = cluster.services.task_instance(dag_id, run_id, task_id)
    job_id = (ti.get("trigger") or {}).get("triggerer_id")
    if job_id is None:
        return None, None
    jobs = cluster.services.get("/api/v2/jobs", params={"job_type": "TriggererJob", "limit": 100})["jobs"]
    host = next((j["hostname"] for j in jobs if j["id"] == job_id), None)
    return component_of(host), job_id


def processes_holding(cluster, dag_id, task_id, run_id) -> list[int]:
    """Processes that hold a worker slot for the task: its task runner (title ``airflow worker -- <ti id>``), or
    a supervisor naming it that still has a child. (A Celery pool process keeps its ``airflow supervisor: <ti
    id>`` title after the task has left it, so a title alone does not mean a held slot.)"""
    import psutil

    ids = cluster.services.ti_ids(dag_id, task_id, run_id)
    out = []
    for pid in cluster.services.leftover_pids():
        try:
            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline())
            if not any(ti_id in cmd for ti_id in ids):
                continue
            if cmd.startswith("airflow worker --") or proc.children():
                out.append(pid)
        except psutil.Error:
            continue
    return out


def signal_component(cluster, name: str, sig: int) -> None:
    for pid in cluster.services.component_pids(name):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def start_deferred_tune(cluster, state: str, time_scale: float) -> str:
    emu(cluster, time_scale=time_scale)
    run_id = cluster.services.trigger_dag(DEFERRED, {"training_uri": f"gs://{BUCKET}/svc/train.jsonl",
                                                     "state_uri": f"gs://{BUCKET}/{state}"})
    cluster.services.wait_ti_state(DEFERRED, run_id, "tune", "deferred", timeout=180)
    wait_for(lambda: trigger_holder(cluster, DEFERRED, run_id)[0], 90, "a triggerer to take the trigger")
    return run_id


@pytest.fixture(scope="module", autouse=True)
def small_training_file(cluster):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = storage.Client(credentials=AnonymousCredentials(), project="demo-project",
                         client_options={"api_endpoint": cluster.state.emulator["gcs_url"]})
    rows = (DEMO / "train.jsonl").read_text().splitlines()[:24]
    gcs.bucket(BUCKET).blob("svc/train.jsonl").upload_from_string("\n".join(rows) + "\n")
    return gcs


# ---------------------------------------------------------------------------------------------- a
def test_a_pipeline_succeeds_on_celery_with_tune_deferred_and_no_worker_held(cluster):
    s = cluster.services
    emu(cluster, time_scale=0.02)
    run_id = s.trigger_dag(PIPELINE, {**FAST, "gcs_prefix": f"gs://{BUCKET}/cluster-a", "epochs": 1})
    s.wait_ti_state(PIPELINE, run_id, "tune", "deferred", timeout=240)
    wait_for(lambda: not processes_holding(cluster, PIPELINE, "tune", run_id), 20, "the worker to let go")
    assert s.task_instance(PIPELINE, run_id, "tune")["state"] == "deferred"
    holder = wait_for(lambda: trigger_holder(cluster, PIPELINE, run_id)[0], 60, "a triggerer to hold the trigger")
    assert holder in TRIGGERERS
    assert s.wait_run(PIPELINE, run_id, timeout=480) == "success"
    tis = {t["task_id"]: t for t in s.task_instances(PIPELINE, run_id)}
    for task in ("prepare_dataset", "tune", "evaluate", "gate", "report"):
        assert component_of(tis[task]["hostname"]) in WORKERS, (task, tis[task]["hostname"])   # Celery workers
    assert len(jobs_for(cluster, PIPELINE, run_id)) == 1


# ---------------------------------------------------------------------------------------------- b
def test_b_handover_while_the_old_triggerer_lives_does_not_cancel_the_job(cluster):
    """apache/airflow #73454: the old triggerer, late but alive, calls on_kill for the trigger it lost."""
    s = cluster.services
    run_id = start_deferred_tune(cluster, "state-b", time_scale=0.6)
    victim, first_job = trigger_holder(cluster, DEFERRED, run_id)
    other = "triggerer-2" if victim == "triggerer-1" else "triggerer-1"
    time.sleep(2)                                            # the trigger has polled
    cancels_before = len(cancels(cluster))
    signal_component(cluster, victim, signal.SIGSTOP)        # alive but late: no heartbeat
    try:
        taken = wait_for(lambda: (h := trigger_holder(cluster, DEFERRED, run_id))[0] == other and h, 90,
                         f"{other} to take the trigger over from the stopped {victim}")
    finally:
        signal_component(cluster, victim, signal.SIGCONT)    # it wakes up, notices the loss, cancels its copy
    print(f"trigger held by {victim} (job {first_job}), then by {taken[0]} (job {taken[1]})")
    victim_log = next(p for p in s.trigger_log_files(DEFERRED, run_id, "tune") if p.name.endswith(f".{first_job}.log"))
    wait_for(lambda: "on_kill: checking" in victim_log.read_text(), 60, f"{victim} to run on_kill for its lost copy")
    # the guard's verdict is the event to wait for (under load its state read can take a while); a cancel it
    # sent would be in the emulator's log before the verdict line
    verdicts = ("is left running", "); leaving ", "by the user: cancelled", "cancelling ")
    wait_for(lambda: any(w in victim_log.read_text() for w in verdicts), 120, f"{victim}'s on_kill to decide")
    # the guard is what kept it alive: the task was still deferred (a handover), or its state could not be read
    assert "is left running" in victim_log.read_text() or "); leaving " in victim_log.read_text()
    assert len(cancels(cluster)) == cancels_before, "the handover cancelled the job"
    assert jobs_for(cluster, DEFERRED, run_id)[0]["state"] != "JOB_STATE_CANCELLED"
    assert s.wait_run(DEFERRED, run_id, timeout=300) == "success"
    jobs = jobs_for(cluster, DEFERRED, run_id)
    assert len(jobs) == 1 and jobs[0]["state"] == "JOB_STATE_SUCCEEDED", jobs
    assert len(cancels(cluster)) == cancels_before, "the handover sent a cancel"
    for path in sorted(s.trigger_log_files(DEFERRED, run_id, "tune")):
        events = [json.loads(x)["event"] for x in path.read_text().splitlines() if x.startswith("{")]
        print(f"{path.name}: {events[0]} ... {events[-1]}")


# ---------------------------------------------------------------------------------------------- c
def test_c_rolling_restart_of_the_holding_triggerer_does_not_cancel(cluster):
    s = cluster.services
    run_id = start_deferred_tune(cluster, "state-c", time_scale=0.3)
    victim, _ = trigger_holder(cluster, DEFERRED, run_id)
    other = "triggerer-2" if victim == "triggerer-1" else "triggerer-1"
    time.sleep(2)
    cancels_before = len(cancels(cluster))
    s.stop_component(victim)                                  # SIGTERM, as a rolling restart does
    try:
        wait_for(lambda: trigger_holder(cluster, DEFERRED, run_id)[0] == other, 90, f"{other} to take over")
        assert s.wait_run(DEFERRED, run_id, timeout=300) == "success"
    finally:
        s.start_component(victim, wait=False)
    jobs = jobs_for(cluster, DEFERRED, run_id)
    assert len(jobs) == 1 and jobs[0]["state"] == "JOB_STATE_SUCCEEDED"
    assert len(cancels(cluster)) == cancels_before
    cluster.wait_triggerers(2)


# ---------------------------------------------------------------------------------------------- d
def test_d_eight_concurrent_pipelines_make_exactly_eight_jobs(cluster, small_training_file, tmp_path):
    s = cluster.services
    emu(cluster, time_scale=0.02)
    rows = (DEMO / "train.jsonl").read_text().splitlines()
    runs = {}
    for i in range(8):
        data = tmp_path / f"train-{i}.jsonl"
        data.write_text("\n".join(rows[i * 12:] + rows[:i * 12][:96]) + "\n")     # different data per run
        runs[i] = s.trigger_dag(PIPELINE, {**FAST, "gcs_prefix": f"gs://{BUCKET}/cluster-d/{i}",
                                           "training_data": str(data), "display_name": f"router-d{i}",
                                           "epochs": 1})
    states = {i: s.wait_run(PIPELINE, run_id, timeout=900) for i, run_id in runs.items()}
    assert set(states.values()) == {"success"}, states
    jobs = {i: jobs_for(cluster, PIPELINE, run_id) for i, run_id in runs.items()}
    assert all(len(j) == 1 for j in jobs.values()), jobs
    assert len({j[0]["name"] for j in jobs.values()}) == 8
    assert {j[0]["state"] for j in jobs.values()} == {"JOB_STATE_SUCCEEDED"}
    assert {j[0]["tunedModelDisplayName"] for j in jobs.values()} == {f"router-d{i}" for i in range(8)}
    for i, run_id in runs.items():
        key = identity_key(PIPELINE, "tune", run_id, -1)
        intent = json.loads(small_training_file.bucket(BUCKET).blob(
            f"cluster-d/{i}/state/intents/{key}.json").download_as_text())
        assert intent["job_name"] == jobs[i][0]["name"]


# ---------------------------------------------------------------------------------------------- e
def test_e_celery_worker_killed_during_evaluate_retry_completes(cluster, small_training_file):
    s = cluster.services
    emu(cluster, time_scale=0.02)
    url = cluster.state.emulator["url"]
    requests.post(f"{url}/_emulator/faults", json={"kind": "latency", "path": "generateContent", "delay_s": 0.4},
                  timeout=10).raise_for_status()
    try:
        run_id = s.trigger_dag(PIPELINE, {**FAST, "gcs_prefix": f"gs://{BUCKET}/cluster-e", "epochs": 1,
                                          "eval_concurrency": 2})
        s.wait_ti_state(PIPELINE, run_id, "evaluate", "running", timeout=480)
        holder = wait_for(lambda: component_of(s.task_instance(PIPELINE, run_id, "evaluate").get("hostname")), 30,
                          "the worker running evaluate")
        time.sleep(2)
        s.kill_component(holder)                              # SIGKILL the whole Celery worker
        requests.delete(f"{url}/_emulator/faults", timeout=10)
        assert s.wait_run(PIPELINE, run_id, timeout=600) == "success"
    finally:
        requests.delete(f"{url}/_emulator/faults", timeout=10)
        if s.procs.get(holder) is None or s.procs[holder].poll() is not None:
            s.start_component(holder, wait=False)
    ti = s.task_instance(PIPELINE, run_id, "evaluate")
    assert ti["try_number"] >= 2
    manifest = s.xcom(PIPELINE, run_id, "evaluate")
    rows = small_training_file.bucket(BUCKET).blob(manifest["results_uri"].split(f"{BUCKET}/", 1)[1]) \
        .download_as_text().splitlines()
    ids = [json.loads(r)["prompt_id"] for r in rows]
    assert len(ids) == manifest["n_prompts"] == len(set(ids))
    assert len(jobs_for(cluster, PIPELINE, run_id)) == 1             # no second tuning job, no second model


# ---------------------------------------------------------------------------------------------- f
def test_f_postgres_restarted_while_tune_is_deferred(cluster):
    """The scheduler, dag-processor and triggerers exit when PostgreSQL goes away (Airflow 3.3.2); the deployment's
    process manager restarts them (``cluster.supervised``). The deferred wait resumes on a restarted triggerer."""
    s = cluster.services
    run_id = start_deferred_tune(cluster, "state-f", time_scale=0.3)
    cancels_before = len(cancels(cluster))
    with cluster.supervised() as restarts:
        cluster.restart_postgres(down_seconds=3)
        assert s.wait_run(DEFERRED, run_id, timeout=400) == "success"
    print("restarted after the database came back:", sorted({name for _, name in restarts}))
    jobs = jobs_for(cluster, DEFERRED, run_id)
    assert len(jobs) == 1 and jobs[0]["state"] == "JOB_STATE_SUCCEEDED"
    assert len(cancels(cluster)) == cancels_before
    s.wait_healthy(timeout=180)
    cluster.wait_triggerers(2)


# ---------------------------------------------------------------------------------------------- g
def test_g_marking_the_deferred_task_failed_cancels_the_job_on_celery(cluster):
    s = cluster.services
    run_id = start_deferred_tune(cluster, "state-g", time_scale=0.3)
    time.sleep(2)
    s.set_ti_state(DEFERRED, run_id, "tune", "failed")
    job = wait_for(lambda: next((j for j in jobs_for(cluster, DEFERRED, run_id)
                                 if j["state"] == "JOB_STATE_CANCELLED"), None), 60, "the job to be cancelled")
    assert job["error"]["code"] == 1
