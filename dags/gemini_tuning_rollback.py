"""Roll the champion back: make the pointer's previous champion the champion again.

rollback (manual only). ``rollback_dag()`` builds it; the pipeline factory builds one per reviewed pipeline file
(``gemini_tuning__<id>__rollback``), and this module defines the open one (any pointer) only with
``[gemini_tuning] open_pipeline_dag``.

The pointer (``<gcs_prefix>/champion.json`` of the pipeline) is compare-and-swapped first, then the Model Registry
follows (alias ``champion`` and the labels); the rolled-back model is kept, labelled retired. Give ``to`` (the model
you expect to restore, as the UI's "Previous" shows it) so that a promotion in between makes the rollback fail
instead of restoring another model. Wiring and Params only: the logic lives in ``plugins/gemini_tuning``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.configuration import conf
from airflow.sdk import DAG, Param

from gemini_tuning.core.gcs_uri import GCS_OBJECT_PATTERN
from gemini_tuning.core.names import LOCATION_PATTERN, PROJECT_PATTERN
from gemini_tuning.operators.rollback import GeminiRollbackOperator
from gemini_tuning.team_dag import team_dag

TO = Param(None, type=["null", "string"], title="Expected model to restore (optional)",
           description="the pointer's previous champion, e.g. projects/P/locations/L/models/M@1; if the "
                       "previous champion is another model nothing is changed")

OPEN_PARAMS = {
    "pointer_uri": Param("gs://gemini-tuning-demo/pipeline/champion.json", type="string",
                         pattern=GCS_OBJECT_PATTERN, title="Champion pointer",
                         description="<gcs_prefix>/champion.json of the pipeline to roll back"),
    "project_id": Param(None, type=["null", "string"], pattern=PROJECT_PATTERN, title="Project",
                        description="Google Cloud project; empty = the connection's project"),
    "location": Param("us-central1", type="string", pattern=LOCATION_PATTERN, title="Location",
                      description="a Vertex AI region (core.names: never a host name)"),
}


def rollback_dag(dag_id: str = "gemini_tuning_rollback", *, pointer_uri: str | None = None,
                 project_id: str | None = None, location: str | None = None, tags: list[str] | None = None,
                 access_control: dict | None = None, description: str | None = None) -> DAG:
    """The rollback DAG. With no arguments: the open one (the pointer, project and location are run Params). The
    pipeline factory builds one per reviewed pipeline file with its own pointer, project and location fixed.

    :param dag_id: the DAG id.
    :param pointer_uri: the pipeline's champion pointer (fixed; None: a run Param).
    :param project_id: the project (fixed with ``pointer_uri``).
    :param location: the location (fixed with ``pointer_uri``).
    :param tags: the DAG's tags.
    :param access_control: Airflow DAG-level ``access_control`` (FAB auth manager).
    :param description: the DAG's description.
    """
    params = {"to": TO}
    if pointer_uri is None:
        params.update(OPEN_PARAMS)
    dag = team_dag(
        dag_id=dag_id,
        description=description or "Restore the previous champion of a Gemini tuning pipeline (pointer first, "
                                   "then the registry)",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        render_template_as_native_obj=True,
        default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
        tags=tags or ["gemini", "tuning"],
        params=params,
        access_control=access_control,
    )
    with dag:
        fixed = pointer_uri is not None
        GeminiRollbackOperator(task_id="rollback", pointer_uri=pointer_uri if fixed else "{{ params.pointer_uri }}",
                               to="{{ params.to }}",
                               project_id=project_id if fixed else "{{ params.project_id }}",
                               location=location if fixed else "{{ params.location }}")
    return dag


# the open rollback (any pointer): beside the open pipeline only ([gemini_tuning] open_pipeline_dag)
# (not when the pipeline factory imports this file by name for rollback_dag: its DAG would be bagged twice)
if conf.getboolean("gemini_tuning", "open_pipeline_dag", fallback=False) and __name__ != "gemini_tuning_rollback":
    dag = rollback_dag()
