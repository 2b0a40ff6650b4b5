"""The pipeline factory: one pipeline DAG and one rollback DAG per reviewed pipeline file.

Each ``<id>.yaml`` in the pipelines folder (``[gemini_tuning] pipelines_folder``; default ``pipelines/`` beside
the DAGs folder) becomes ``gemini_tuning__<id>`` (the pipeline of ``dags/gemini_tuning_pipeline.py``) and
``gemini_tuning__<id>__rollback``. Everything the file fixes is built into the DAG; the trigger form offers only
what a run may change (``gemini_tuning.pipelines.policy.RUN_FIELDS``), each bounded by the policy, and the first
step (``check_policy``) refuses a run whose conf would loosen it. README "Pipelines as reviewed configuration".

A broken file is a DAG import error of this file that names every broken pipeline file (file, line, field, rule);
every other pipeline still loads. Parse cost: the files are read and validated here, with no metadata-DB or
network call (``scripts/bench_pipelines.py``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

from airflow.configuration import conf
from airflow.sdk import DAG, Asset, Param
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from gemini_tuning.pipelines.loader import PipelineError, PipelineFileError, load_folder
from gemini_tuning.pipelines.policy import RUN_FIELDS, run_param_schemas

log = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.realpath(__file__))


def _sibling(name: str):
    """The DAG file ``name``.py beside this one, imported once by path (the DAGs folder need not be on sys.path)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


pipeline_dag = _sibling("gemini_tuning_pipeline").pipeline_dag
rollback_dag = _sibling("gemini_tuning_rollback").rollback_dag


def pipelines_folder() -> str:
    """``[gemini_tuning] pipelines_folder``, or ``pipelines/`` beside the DAGs folder."""
    return conf.get("gemini_tuning", "pipelines_folder", fallback="") or os.path.join(os.path.dirname(HERE),
                                                                                     "pipelines")


def _schedule(schedule):
    """The DAG schedule of a file's ``schedule`` (None, a cron string, or ``ScheduleSpec`` with cron and/or asset)."""
    if schedule is None:
        return None
    if isinstance(schedule, str):
        return CronTriggerTimetable(schedule, timezone="UTC")
    if schedule.cron and schedule.asset:
        return AssetOrTimeSchedule(timetable=CronTriggerTimetable(schedule.cron, timezone="UTC"),
                                   assets=[Asset(name=schedule.asset)])
    return [Asset(name=schedule.asset)] if schedule.asset else CronTriggerTimetable(schedule.cron, timezone="UTC")


def _access_control(access):
    if not access:
        return None
    from gemini_tuning.pipelines.access import access_control

    return access_control(dict(access))


def _notifications(spec, pipeline_id: str) -> tuple[dict, dict]:
    notifications = getattr(spec, "notifications", None)
    if not notifications:
        return {}, {}
    from gemini_tuning.notifications import callbacks_for_task, dag_callbacks

    settings = notifications.model_dump(mode="json")
    tasks = {task_id: callbacks_for_task(settings, pipeline_id, task_id)
             for task_id in ("approval", "promote", "delete", "delete_rejected")}
    return {k: v for k, v in tasks.items() if v}, dag_callbacks(settings, pipeline_id)


def build(pipeline) -> tuple[DAG, DAG]:
    """The pipeline DAG and the rollback DAG of one parsed pipeline file.

    :param pipeline: a ``gemini_tuning.pipelines.loader.Pipeline``.
    """
    spec, values = pipeline.spec, pipeline.defaults()
    params = {name: Param(**schema) for name, schema in run_param_schemas(pipeline).items()}
    fixed = {name: value for name, value in values.items() if name not in RUN_FIELDS}
    access = _access_control(getattr(spec, "access", None))
    task_callbacks, callbacks = _notifications(spec, spec.id)
    tags = ["gemini", "tuning", f"pipeline:{spec.id}", *(spec.tags or [])]
    description = (spec.description or f"Gemini tuning pipeline {spec.id}") + f" ({os.path.basename(pipeline.file)})"
    dag = pipeline_dag(pipeline.dag_id, params=params, fixed=fixed, pipeline=pipeline.to_record(),
                       schedule=_schedule(spec.schedule), description=description[:200], tags=tags,
                       access_control=access, task_callbacks=task_callbacks, dag_callbacks=callbacks,
                       champion_asset=Asset(name=f"gemini_tuning_champion__{spec.id}"), max_active_runs=1)
    dag.doc_md = (f"Built from `{pipeline.file}` (revision `{pipeline.revision[:12]}`, policy "
                  f"`{pipeline.policy_hash[:12]}`). Owners: {', '.join(spec.owners or []) or 'none listed'}.")
    rollback = rollback_dag(pipeline.rollback_dag_id, pointer_uri=f"{values['gcs_prefix']}/champion.json",
                            project_id=values["project_id"], location=values["location"], tags=tags,
                            access_control=access, description=f"Restore the previous champion of {spec.id}")
    return dag, rollback


class BrokenPipelineFiles(DAG):
    """Stands for the pipeline files that did not parse: its validation fails with their errors, so the DAG
    processor records one import error for this file that lists them, while every other pipeline still loads."""

    def __init__(self, errors):
        super().__init__(dag_id="gemini_tuning__broken_pipeline_files", schedule=None)
        self.pipeline_errors = list(errors)

    def validate(self):
        lines = [str(error) for file_error in self.pipeline_errors for error in file_error.errors]
        raise ValueError(f"{len(self.pipeline_errors)} pipeline file(s) did not load (the other pipelines did):\n"
                         + "\n".join(lines))


def _load() -> dict[str, DAG]:
    result = load_folder(pipelines_folder())
    dags: dict[str, DAG] = {}
    for pipeline in result.pipelines:
        try:
            dag, rollback = build(pipeline)
        except Exception as exc:
            log.exception("pipeline %s (%s) could not be built", pipeline.spec.id, pipeline.file)
            result.errors.append(PipelineFileError(pipeline.file, [PipelineError(pipeline.file, None, "",
                                                                                 f"building the DAG failed: {exc}")]))
            continue
        dags[dag.dag_id], dags[rollback.dag_id] = dag, rollback
    if result.errors:
        for file_error in result.errors:
            log.error("%s", file_error)
        dags["gemini_tuning__broken_pipeline_files"] = BrokenPipelineFiles(result.errors)
    return dags


globals().update(_load())
