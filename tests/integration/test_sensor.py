"""GeminiTuningJobSensor against the emulator, in real dag.test() runs: deferrable and not, a job that succeeds, one
that fails, one cancelled elsewhere. The sensor never cancels what it watches."""

from __future__ import annotations

import json

import pytest
import requests

from harness.clients import genai_vertex_client
from harness.data import unique
from harness.paths import SENSOR_DAGS

pytestmark = pytest.mark.fast

FAST_POLL = {"initial_seconds": 0.2, "min_seconds": 0.2, "max_seconds": 1, "fallback_max_seconds": 0.5}


@pytest.fixture
def conn(airflow_db, emulator, monkeypatch):
    # dag.test() syncs the DAG from its bundle: make the sensor DAGs' folder the only one
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([{
        "name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(SENSOR_DAGS)}}]))
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "test-project"}}))
    return emulator


def start_job(url: str, train_uri: str, display: str) -> str:
    from google.genai import types

    client = genai_vertex_client(url)           # keep the client referenced: its finalizer closes its HTTP client
    job = client.tunings.tune(
        base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train_uri),
        config=types.CreateTuningJobConfig(tuned_model_display_name=display, epoch_count=1))
    return job.name


def run_sensor(job_name: str, *, deferrable: bool):
    """One dag.test() run of a DAG holding only the sensor; returns (run state, task state, xcom)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(SENSOR_DAGS), safe_mode=False)
    assert bag.import_errors == {}
    dag = bag.dags["gemini_sensor_deferred" if deferrable else "gemini_sensor_on_worker"]
    dr = dag.test(run_conf={"job_name": job_name})
    ti = dr.get_task_instance("wait")
    return dr.state, ti.state, ti.xcom_pull(task_ids="wait")


def job_state(url: str, name: str) -> str:
    return requests.get(f"{url}/v1/{name}", timeout=10).json()["state"]


@pytest.mark.parametrize("deferrable", [True, False])
def test_sensor_returns_the_job_once_it_succeeds(conn, small_train_uri, deferrable):
    url = conn.endpoints.url
    name = start_job(url, small_train_uri, unique("sensed"))
    run_state, ti_state, result = run_sensor(name, deferrable=deferrable)
    assert (run_state, ti_state) == ("success", "success")
    assert result["name"] == name and result["state"] == "JOB_STATE_SUCCEEDED" and result["tuned_model"]
    assert job_state(url, name) == "JOB_STATE_SUCCEEDED"


@pytest.mark.parametrize("deferrable", [True, False])
def test_sensor_fails_with_the_services_message_when_the_job_fails(conn, small_train_uri, deferrable):
    url = conn.endpoints.url
    display = unique("doomed")
    requests.post(f"{url}/_emulator/job-failures", json={"match": f"^{display}$", "count": 1, "at_fraction": 0.3,
                                                          "message": "Emulated tuning failure."},
                  timeout=10).raise_for_status()
    name = start_job(url, small_train_uri, display)
    run_state, ti_state, _ = run_sensor(name, deferrable=deferrable)
    assert (run_state, ti_state) == ("failed", "failed")
    assert job_state(url, name) == "JOB_STATE_FAILED"


@pytest.mark.parametrize("deferrable", [True, False])
def test_sensor_fails_when_the_job_is_cancelled_elsewhere(conn, small_train_uri, deferrable, caplog):
    url = conn.endpoints.url
    conn.emulator.config.update({"time_scale": 0.05})      # long enough to cancel while it runs
    name = start_job(url, small_train_uri, unique("cancelled"))
    client = genai_vertex_client(url)
    client.tunings.cancel(name=name)
    run_state, ti_state, _ = run_sensor(name, deferrable=deferrable)
    assert (run_state, ti_state) == ("failed", "failed")
    assert job_state(url, name) == "JOB_STATE_CANCELLED"


def test_sensor_defers_with_a_trigger_that_never_cancels(conn, small_train_uri):
    import asyncio

    from airflow.sdk.exceptions import TaskDeferred

    from gemini_tuning.sensors import GeminiTuningJobSensor

    url = conn.endpoints.url
    conn.emulator.config.update({"time_scale": 0.05})
    name = start_job(url, small_train_uri, unique("watched"))
    sensor = GeminiTuningJobSensor(task_id="w", job_name=name, deferrable=True, poll_policy=FAST_POLL, timeout=60)

    class TI:
        def xcom_push(self, **kw):
            self.pushed = kw

    ti = TI()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": ti})
    trigger = deferred.value.trigger
    assert ti.pushed["value"]["name"] == name and trigger.job_name == name
    assert trigger.cancel_on_kill is False and trigger.cancel_on_timeout is False
    asyncio.run(trigger.on_kill())                      # a user kill of the sensor leaves the job alone
    assert job_state(url, name) in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
