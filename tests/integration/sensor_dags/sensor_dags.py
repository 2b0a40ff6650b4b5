"""The tuning-job sensor, deferred and on the worker, waiting for the job named by the run's conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from gemini_tuning.sensors import GeminiTuningJobSensor

POLL = {"initial_seconds": 0.2, "min_seconds": 0.2, "max_seconds": 1, "fallback_max_seconds": 0.5}


def sensor_dag(dag_id: str, deferrable: bool) -> DAG:
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
             params={"job_name": Param("", type="string")}) as dag:
        GeminiTuningJobSensor(task_id="wait", job_name="{{ params.job_name }}", backend="vertex",
                              project_id="test-project", deferrable=deferrable, poll_policy=POLL,
                              poke_interval=0.3, timeout=120)
    return dag


deferred = sensor_dag("gemini_sensor_deferred", True)
on_worker = sensor_dag("gemini_sensor_on_worker", False)
