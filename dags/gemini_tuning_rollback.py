"""Roll the champion back: make the pointer's previous champion the champion again.

rollback (manual only)

The pointer (``<gcs_prefix>/champion.json`` of the pipeline) is compare-and-swapped first, then the Model Registry
follows (alias ``champion`` and the labels); the rolled-back model is kept, labelled retired. Give ``to`` (the model
you expect to restore, as the UI's "Previous" shows it) so that a promotion in between makes the rollback fail
instead of restoring another model. Wiring and Params only: the logic lives in ``plugins/gemini_tuning``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from gemini_tuning.core.names import LOCATION_PATTERN, PROJECT_PATTERN
from gemini_tuning.operators.rollback import GeminiRollbackOperator

with DAG(
    dag_id="gemini_tuning_rollback",
    description="Restore the previous champion of a Gemini tuning pipeline (pointer first, then the registry)",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["gemini", "tuning"],
    params={
        "pointer_uri": Param("gs://gemini-tuning-demo/pipeline/champion.json", type="string",
                             pattern=r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/.+$", title="Champion pointer",
                             description="<gcs_prefix>/champion.json of the pipeline to roll back"),
        "to": Param(None, type=["null", "string"], title="Expected model to restore (optional)",
                    description="the pointer's previous champion, e.g. projects/P/locations/L/models/M@1; if the "
                                "previous champion is another model nothing is changed"),
        "project_id": Param(None, type=["null", "string"], pattern=PROJECT_PATTERN, title="Project",
                            description="Google Cloud project; empty = the connection's project"),
        "location": Param("us-central1", type="string", pattern=LOCATION_PATTERN, title="Location",
                      description="a Vertex AI region (core.names: never a host name)"),
    },
) as dag:
    GeminiRollbackOperator(task_id="rollback", pointer_uri="{{ params.pointer_uri }}", to="{{ params.to }}",
                           project_id="{{ params.project_id }}", location="{{ params.location }}")
