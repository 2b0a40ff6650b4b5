"""Toy DAG for the services harness: a deferrable wait in the real triggerer, then a plain @task.

``wait`` (``WaitOperator``) optionally works on the worker for ``pre_seconds`` (so a test can see its worker
process), then defers to providers-standard's ``DateTimeTrigger`` for ``wait_seconds``. The deadline is absolute,
so a restarted triggerer resumes towards the same moment. ``after`` returns a value (XCom). Both durations come
from the run conf: ``{"wait_seconds": 8, "pre_seconds": 0}``.

Why not a trigger class defined in this file: in Airflow 3.3.2 the triggerer puts only ``$AIRFLOW_HOME/config``
and the plugins folder on ``sys.path`` (``settings.prepare_syspath_for_config_and_plugins``), **not** the dags
folder, so ``import_string("toy_defer.MyTrigger")`` fails there with ``ModuleNotFoundError: No module named
'toy_defer'`` and the task fails with ``TaskDeferralError: Trigger failure`` (verified). DAG files are also imported
under a mangled module name (``unusual_prefix_<sha1>_toy_defer``), so ``type(self).__module__`` is not importable
anywhere else. Triggers belong in ``plugins/``; the operator itself may live in a DAG file (it runs on workers).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, BaseOperator, task


class WaitOperator(BaseOperator):
    template_fields = ("wait_seconds", "pre_seconds")

    def __init__(self, *, wait_seconds="8", pre_seconds="0", **kwargs):
        super().__init__(**kwargs)
        self.wait_seconds = wait_seconds
        self.pre_seconds = pre_seconds

    def execute(self, context):
        if float(self.pre_seconds) > 0:
            self.log.info("working on the worker for %s s", self.pre_seconds)
            time.sleep(float(self.pre_seconds))
        until = datetime.now(UTC) + timedelta(seconds=float(self.wait_seconds))
        self.defer(trigger=DateTimeTrigger(moment=until), method_name="execute_complete",
                   timeout=timedelta(minutes=10))

    def execute_complete(self, context, event=None, **kwargs):
        self.log.info("resumed with %s", event)
        return {"status": "done", "until": str(event)}


with DAG("toy_defer", schedule=None, catchup=False, tags=["harness"]) as dag:
    wait = WaitOperator(
        task_id="wait",
        wait_seconds="{{ dag_run.conf.get('wait_seconds', 8) }}",
        pre_seconds="{{ dag_run.conf.get('pre_seconds', 0) }}",
    )

    @task
    def after(event: dict) -> dict:
        return {"ok": True, "until": event["until"]}

    after(wait.output)
