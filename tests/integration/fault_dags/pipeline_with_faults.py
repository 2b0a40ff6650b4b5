"""The pipeline DAG for the fault matrix on a real Airflow scheduler: the same DAG as ``dags/gemini_tuning_pipeline.py``
(built by its ``pipeline_dag``), with a crash that a test can inject into any task of any run, plus a variant with
the wiring broken on purpose.

A crash: the test writes ``$GEMINI_TUNING_FAULTS_DIR/<run id>/<task id>``; that task's ``execute`` then raises
before doing anything, on every try, as a worker OOM, a lost read or a bug would. The patch is applied where the
task runs (the worker parses this file too), not in the scheduler. Retries are kept (at most two, after 1 s).

``gemini_tuning_pipeline_leaky``: the pre-fix wiring (approval ``none_skipped``, promote ``all_done``, clean-up
``one_failed`` beside promote): promote is runnable after a crashed gate. Only the verdict check stands between it
and production.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

from gemini_tuning.operators.approval import GeminiApprovalOperator
from gemini_tuning.operators.evaluate import GeminiEvaluateOperator
from gemini_tuning.operators.gate import GeminiGateOperator
from gemini_tuning.operators.prepare import PrepareTuningDatasetOperator
from gemini_tuning.operators.promote import GeminiDeleteTunedModelOperator, GeminiPromoteOperator
from gemini_tuning.operators.report import GeminiTuningReportOperator

FAULTS = Path(os.environ.get("GEMINI_TUNING_FAULTS_DIR", "/nonexistent"))


def run_dir(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def _crashing(cls):
    original = cls.execute
    if getattr(original, "_fault_injected", False):
        return

    def execute(self, context, *args, **kwargs):
        ti = context["ti"]
        marker = FAULTS / run_dir(ti.run_id) / ti.task_id
        if marker.exists():
            raise RuntimeError(f"injected crash in {ti.task_id} (try {ti.try_number}): {marker.read_text()}")
        return original(self, context, *args, **kwargs)

    execute._fault_injected = True
    cls.execute = execute


for _cls in (PrepareTuningDatasetOperator, GeminiEvaluateOperator, GeminiGateOperator, GeminiTuningReportOperator,
             GeminiApprovalOperator, GeminiPromoteOperator, GeminiDeleteTunedModelOperator):
    _crashing(_cls)

# The repository root is on the stack's PYTHONPATH (the services harness): the pipeline DAG file is ``dags.…`` there,
# a name other than ``gemini_tuning_pipeline``, so that file bags no DAG of its own here.
from dags import gemini_tuning_pipeline as _pipeline  # noqa: E402  (after the patches, as before)


def _fast(dag):
    for task in dag.tasks:
        task.retries = min(task.retries or 0, 2)   # the production default (2): Airflow 3.3.2 under load can
        # kill a resumed deferred task once (README "Known issues"); the retry makes up for it
        task.retry_delay = timedelta(seconds=1)
    return dag


pipeline = _fast(_pipeline.pipeline_dag("gemini_tuning_pipeline"))

leaky = _fast(_pipeline.pipeline_dag("gemini_tuning_pipeline_leaky"))
leaky.get_task("gate").retries = 0            # the race repeats the crash; its retries add nothing
leaky.get_task("approval").trigger_rule = "none_skipped"
leaky.get_task("promote").trigger_rule = "all_done"
_cleanup = leaky.get_task("cleanup_on_failure")
_cleanup.is_teardown = False
_cleanup.trigger_rule = "one_failed"
