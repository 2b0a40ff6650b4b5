"""Two pipelines of two teams, for ``test_team_access.py`` (FAB auth manager): ``gemini_tuning__team_a_demo`` is
team_a's, ``gemini_tuning__team_b_demo`` team_b's, each with DAG-level ``access_control`` built from a pipeline's
``access:`` section by ``gemini_tuning.pipelines.access``.

Each has one task of this package's operators (``GeminiTuningReportOperator``, never run: the test has no
scheduler) so that a run of it is one the "Gemini tuning" page lists: the page shows DAGs whose task instances use
this package's operators, and a run's task instances exist as soon as the run is created.
"""

from __future__ import annotations

from airflow.sdk import DAG

from gemini_tuning.operators.report import GeminiTuningReportOperator
from gemini_tuning.pipelines.access import access_control

#: pipeline id → its YAML ``access:`` section
PIPELINES = {
    "team_a_demo": {"team_a": ["read", "trigger"]},
    "team_b_demo": {"team_b": ["read", "trigger"]},
}

for _pipeline_id, _access in PIPELINES.items():
    with DAG(f"gemini_tuning__{_pipeline_id}", schedule=None, catchup=False, tags=["gemini-tuning", "team-access"],
             access_control=access_control(_access)) as _dag:
        GeminiTuningReportOperator(task_id="report", tuning={}, evaluation={}, gate={},
                                   report_uri=f"gs://team-access/{_pipeline_id}/report/index.html")
    globals()[_dag.dag_id] = _dag
