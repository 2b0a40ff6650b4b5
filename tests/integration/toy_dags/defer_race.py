"""The smallest reproduction of an Airflow 3.3.2 scheduler race (apache/airflow#72716, open; family of #66374 and
#67287): a task whose trigger fires at once, resumed on another worker while the worker it deferred from has not
yet reported the defer exit. When that stale "success" arrives and the resumed attempt is ``running``, the
scheduler logs "state mismatch" and fails the try.

Each ``defer_i`` defers on a ``DateTimeTrigger`` already due, and its resumed method runs for
``resume_seconds`` (the window the stale report must land in). ``retries=0``: a killed try fails the task.
``tests/integration/test_airflow_services.py::test_airflow_fails_a_resumed_task_on_a_stale_defer_exit`` runs it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, BaseOperator, Param

TASKS = 6


class DeferOnce(BaseOperator):
    def execute(self, context):
        self.defer(trigger=DateTimeTrigger(moment=datetime.now(timezone.utc)), method_name="resume")

    def resume(self, context, event=None):
        time.sleep(float(context["params"]["resume_seconds"]))
        return "resumed"


with DAG("defer_race", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=TASKS,
         params={"resume_seconds": Param(15, type="number")}):
    for i in range(TASKS):
        DeferOnce(task_id=f"defer_{i}", retries=0)
