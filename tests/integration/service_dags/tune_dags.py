"""Two small DAGs around the same tuning operator the pipeline uses: deferred (trigger waits) and on the worker."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from gemini_tuning.operators.tune import GeminiTuningOperator

POLL = {"initial_seconds": 1, "min_seconds": 1, "max_seconds": 3, "fallback_max_seconds": 2}


def tune_dag(dag_id: str, deferrable: bool) -> DAG:
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
             render_template_as_native_obj=True, default_args={"retries": 2, "retry_delay": timedelta(seconds=3)},
             params={"training_uri": Param("gs://gemini-tuning-svc/train.jsonl", type="string"),
                     "state_uri": Param("gs://gemini-tuning-svc/state", type="string")}) as dag:
        GeminiTuningOperator(task_id="tune", backend="vertex", base_model="gemini-2.5-flash", project_id="test-project",
                             training_uri="{{ params.training_uri }}", epochs=2, state_uri="{{ params.state_uri }}",
                             poll_policy=POLL, deferrable=deferrable, job_timeout=3600)
    return dag


deferred = tune_dag("gemini_tune_deferred", True)
on_worker = tune_dag("gemini_tune_on_worker", False)
