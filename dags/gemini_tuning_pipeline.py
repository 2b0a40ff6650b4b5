"""Gemini supervised tuning pipeline.

prepare_dataset → tune (deferred) → evaluate → gate ─► review_report
                                                  ├► approval ─► promote
                                                  │            └► delete_rejected
                                                  └► delete
    teardowns, after every decision task has settled: cleanup_on_failure → report

The gate writes the run's verdict record (``core.verdict``) and branches: promote → review_report and approval;
delete → delete; no decision (an outage, too few scored prompts) → the gate fails and the candidate is kept.
approval runs only after a gate that decided promote (it depends on the gate alone: a failed review report does
not hold it back, a failed gate leaves it upstream_failed), waits for a human only with require_approval, and
refuses without a promote verdict. promote, delete and delete_rejected each check the
verdict record themselves. cleanup_on_failure deletes a candidate only when a delete verdict or a rejection
doomed it and its delete step did not finish; every other candidate is kept (README "What can and cannot promote
a model"). Both teardowns leave the run's state to the decision tasks: a failure before the verdict fails the run.

Wiring and Params only: the logic lives in ``plugins/gemini_tuning``. No Google SDK is imported at parse time.
Runs on a schedule (Mondays 03:00 UTC), when new raw training data is announced (the Asset below), or from the UI
with the typed Params form.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pendulum
from airflow.configuration import conf
from airflow.sdk import DAG, Asset, Param
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from gemini_tuning.core.constants import GATE_XCOM
from gemini_tuning.core.gcs_uri import GCS_PREFIX_PATTERN
from gemini_tuning.core.names import LOCATION_PATTERN, PROJECT_PATTERN
from gemini_tuning.core.tuning import BACKENDS
from gemini_tuning.core.vocabulary import GATE_METRIC_NAMES
from gemini_tuning.operators.approval import GeminiApprovalOperator
from gemini_tuning.operators.evaluate import GeminiEvaluateOperator
from gemini_tuning.operators.gate import GeminiGateOperator
from gemini_tuning.operators.guards import deployment_params
from gemini_tuning.operators.policy import GeminiPolicyCheckOperator, provenance
from gemini_tuning.operators.prepare import PrepareTuningDatasetOperator
from gemini_tuning.operators.promote import GeminiDeleteTunedModelOperator, GeminiPromoteOperator
from gemini_tuning.operators.report import GeminiTuningReportOperator
from gemini_tuning.operators.tune import GeminiTuningOperator
from gemini_tuning.team_dag import params_set_aside, team_dag

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "include", "demo")
RAW_TRAINING_DATA = Asset(name="gemini_tuning_raw_training_data")   # emitted by whatever produces new raw data
RUN_DIR = "{{ params.gcs_prefix }}/runs/{{ run_id | replace(':', '-') | replace('+', '-') }}"
TUNED = "{{ ti.xcom_pull(task_ids='tune') }}"
EVALUATION = "{{ ti.xcom_pull(task_ids='evaluate') }}"
GATE = "{{ ti.xcom_pull(task_ids='gate', key='" + GATE_XCOM + "') }}"
GOOGLE = {"project_id": "{{ params.project_id }}", "location": "{{ params.location }}"}
VERDICT = RUN_DIR + "/verdict.json"
PREPARED = "{{ ti.xcom_pull(task_ids='prepare_dataset') }}"
POINTER = "{{ params.gcs_prefix }}/champion.json"
# the policy: the gate judges by it and promote checks the verdict was judged by it
GATE_CONFIG = {"min_prompts": "{{ params.gate_min_prompts }}",
               "max_error_rate": "{{ params.gate_max_error_rate }}",
               "primary_metric": "{{ params.gate_primary_metric }}",
               # keys are not templated: the whole mapping is one template
               "thresholds": "{{ {params.gate_primary_metric: params.gate_min_score} }}",
               "min_margin": "{{ params.gate_min_margin }}",
               "confidence": "{{ params.gate_confidence }}",
               "pairwise_min_decisive": "{{ params.gate_pairwise_min_decisive }}",
               "pairwise_margin": "{{ params.gate_pairwise_margin }}",
               "max_dropped_fraction": "{{ params.gate_max_dropped_fraction }}"}

# the run Params and their demo defaults
PARAMS = {
    # --- where and what
    "backend": Param("vertex", enum=list(BACKENDS), title="Backend",
                     description="Vertex AI tuningJobs (recommended) or the Gemini API tunedModels flow (legacy: "
                                 "Google offers no tunable model there since May 2025; kept for the emulator)"),
    "project_id": Param(None, type=["null", "string"], pattern=PROJECT_PATTERN, title="Project",
                        description="Google Cloud project; empty = the connection's project"),
    "location": Param("us-central1", type="string", pattern=LOCATION_PATTERN, title="Location",
                      description="a Vertex AI region (core.names: never a host name)"),
    # the 2.5 models retired on 2026-10-20 (tuning blocked a month before): today's tunable bases
    # (../shared/reference: vertex-2026-12.md §5; plugins/gemini_tuning/data/model_lifecycle.json)
    "base_model": Param("gemini-3.5-flash", type="string", title="Base model",
                        description="Vertex: a tunable Gemini model; the Gemini API backend (legacy on Google's "
                                    "side: no tunable model since May 2025) works on the emulator only",
                        examples=["gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite",
                                  "models/gemini-1.5-flash-001-tuning"]),
    "gcs_prefix": Param("gs://gemini-tuning-demo/pipeline", type="string",
                        pattern=GCS_PREFIX_PATTERN, title="GCS prefix",
                        description="Datasets, job state, evaluation results, reports and the champion pointer"),
    # --- data
    "training_data": Param(os.path.join(DEMO, "train.jsonl"), type="string", title="Training data",
                           description="Local path or gs:// URI of a JSONL (optionally gzip) training set"),
    "validation_fraction": Param(0.0, type="number", minimum=0, maximum=0.5, title="Validation fraction"),
    "eval_prompts": Param(os.path.join(DEMO, "eval_prompts.jsonl"), type="string", title="Evaluation prompt set",
                          description="JSONL of {prompt, reference, tags?, metric?}; also checked for leakage"),
    "system_instruction": Param(os.path.join(DEMO, "system_instruction.txt"), type=["null", "string"],
                                title="System instruction for evaluation (text, or a .txt path / gs:// URI)"),
    # --- tuning
    "epochs": Param(3, type="integer", minimum=1, maximum=100, title="Epochs"),
    "learning_rate_multiplier": Param(1.0, type="number", exclusiveMinimum=0, maximum=100,
                                      title="Learning-rate multiplier"),
    "adapter_size": Param(4, enum=[1, 2, 4, 8, 16], title="Adapter size (Vertex)"),
    "batch_size": Param(None, type=["null", "integer"], minimum=1, maximum=64, title="Batch size (Gemini API)"),
    "display_name": Param("support-router", type="string", maxLength=40, title="Tuned model display name"),
    "job_timeout_hours": Param(24, type="number", exclusiveMinimum=0, maximum=168, title="Tuning timeout (h)",
                               description="counted from the job's first TUNING sub-state (Vertex): time waiting "
                                           "for quota or capacity is not charged to it"),
    "max_queue_hours": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=168,
                             title="Most hours waiting for quota or capacity (Vertex)",
                             description="past it the run fails and the job is cancelled; empty: no limit"),
    "retirement_warn_days": Param(60, type="integer", minimum=0, maximum=365,
                                  title="Warn this many days before the base model retires"),
    "on_base_retirement": Param("rebase", enum=["rebase", "fail"], title="When the champion's base model retires",
                                description="continue_from=champion and the champion's base within the warning "
                                            "window, blocked or retired: rebase = tune the base model afresh "
                                            "(judged against the champion); fail = stop"),
    "poll_policy": Param({"initial_seconds": 10, "min_seconds": 15, "max_seconds": 300}, type="object",
                         title="Status polling (seconds)",
                         description="initial, min (near the end), max (mid-job); see gemini_tuning.core.polling"),
    "on_fingerprint_change": Param("cancel_and_resubmit", enum=["cancel_and_resubmit", "fail"],
                                   title="If a retry finds a job with other inputs"),
    "continue_from": Param(None, type=["null", "string"], title="Continue tuning from (Vertex)",
                           description="empty: tune the base model; 'champion': the current champion's model "
                                       "version and checkpoint; or projects/P/locations/L/models/M@version "
                                       "(or @alias). The result is the next version of that model",
                           examples=["champion"]),
    # --- budget (checked by the tune task before anything is created; empty = no limit)
    "max_training_tokens": Param(None, type=["null", "integer"], minimum=1, title="Budget: max training tokens",
                                 description="billable training tokens = the training examples' tokens "
                                             "(estimate: characters / 4) x epochs; above it the run fails "
                                             "before the tuning job is created"),
    "max_cost": Param(None, type=["null", "number"], minimum=0, title="Budget: max cost",
                      description="in the currency of the price below; needs that price"),
    "price_per_million_training_tokens": Param(None, type=["null", "number"], exclusiveMinimum=0,
                                               title="Budget: your price per million training tokens",
                                               description="from your price list for the base model (none is "
                                                           "built in); used for max_cost and the logged cost"),
    # --- evaluation
    "eval_mode": Param("online", enum=["online", "batch"], title="Evaluation mode",
                       description="online: rate-limited generateContent calls; batch: Vertex batch prediction "
                                   "jobs (large prompt sets), waited for deferred"),
    "compare_base_model": Param(False, type="boolean", title="Also evaluate the untuned base model"),
    "evaluate_checkpoints": Param(False, type="boolean", title="Evaluate every checkpoint (Vertex, online)",
                                  description="score each epoch's checkpoint on the prompt set and gate and "
                                              "promote the best (by the gate's primary metric), not the last"),
    "temperature": Param(0.0, type="number", minimum=0, maximum=2, title="Evaluation temperature"),
    "max_output_tokens": Param(256, type="integer", minimum=1, maximum=8192, title="Max output tokens"),
    "eval_rpm": Param(600, type="number", exclusiveMinimum=0, title="Evaluation requests per minute (per model)"),
    "eval_concurrency": Param(16, type="integer", minimum=1, maximum=256, title="Evaluation concurrency"),
    "judge": Param("none", enum=["none", "pointwise", "pairwise", "both"], title="Model-based evaluation",
                   description="an autorater (Vertex's evaluation service) scores answers (pointwise, metric "
                               "judge_score) and/or compares challenger and champion twice with the order "
                               "swapped (pairwise, gated by a sign test)"),
    "judge_model": Param("gemini-3.5-flash", type="string", title="Autorater model"),
    "judge_pointwise_template": Param(None, type=["null", "string"], title="Pointwise metric prompt template",
                                      description="empty: the default rubric (1-5 against the reference)"),
    "judge_pairwise_template": Param(None, type=["null", "string"], title="Pairwise metric prompt template"),
    # --- gate
    "gate_min_prompts": Param(20, type="integer", minimum=1, title="Gate: minimum evaluated prompts"),
    "gate_max_error_rate": Param(0.05, type="number", minimum=0, maximum=1, title="Gate: maximum error rate"),
    "gate_primary_metric": Param("normalized_match", enum=list(GATE_METRIC_NAMES),
                                 title="Gate: primary metric"),
    "gate_min_score": Param(0.6, type="number", minimum=0, maximum=1,
                            title="Gate: minimum primary metric (absolute threshold)"),
    "gate_min_margin": Param(0.0, type="number", minimum=-1, maximum=1,
                             title="Gate: challenger − champion margin on the primary metric"),
    "gate_confidence": Param(0.95, type="number", exclusiveMinimum=0.5, exclusiveMaximum=1,
                             title="Gate: confidence of the paired test against the champion"),
    "gate_pairwise_min_decisive": Param(10, type="integer", minimum=1,
                                        title="Gate: minimum non-tied judged pairs (pairwise judge)"),
    "gate_max_dropped_fraction": Param(None, type=["null", "number"], minimum=0, maximum=1,
                                       title="Gate: most of the training examples the service may drop",
                                       description="Vertex's totalTruncatedExampleCount / tuningDatasetExampleCount; "
                                                   "above it the candidate is deleted; empty: no rule"),
    "gate_pairwise_margin": Param(0.0, type="number", minimum=0, maximum=0.49,
                                  title="Gate: win rate must beat 0.5 + this (pairwise judge)"),
    # --- approval (after the gate says promote)
    "require_approval": Param(False, type="boolean", title="Require a human's approval to promote",
                              description="the approval task waits for Approve / Reject (Required actions, or "
                                          "the REST API's hitlDetails); Reject deletes the candidate"),
    "approval_timeout_hours": Param(72, type=["null", "number"], exclusiveMinimum=0, title="Approval timeout (h)",
                                    description="no answer by then counts as Reject; empty: wait forever"),
}


DEFAULT_SCHEDULE = object()


def pipeline_dag(dag_id: str = "gemini_tuning_pipeline", *, params: dict | None = None, fixed: dict | None = None,
                 pipeline: dict | None = None, schedule=DEFAULT_SCHEDULE, description: str | None = None,
                 tags: list[str] | None = None, access_control: dict | None = None,
                 task_callbacks: dict[str, dict] | None = None, dag_callbacks: dict | None = None,
                 champion_asset: Asset | None = None, max_active_runs: int | None = None) -> DAG:
    """The pipeline DAG. With no arguments: the open pipeline (every value a run Param; tests build variants of it
    under another id). The pipeline factory (``dags/gemini_tuning_pipelines.py``) builds one per reviewed file.

    :param dag_id: the DAG id.
    :param params: the run Params (default: :data:`PARAMS` with the deployment's JSON defaults merged over them).
    :param fixed: values no run may change (name → value, :data:`PARAMS`'s names): every ``params.<name>`` in a
        task's templated fields is replaced by the value itself when the DAG is built, so a run's conf cannot reach
        it (``gemini_tuning.pipelines.policy``).
    :param pipeline: the reviewed file's record (``Pipeline.to_record()``): adds the ``check_policy`` first step
        and makes the gate record, and promote require, the file's revision and policy hash.
    :param schedule: the DAG's schedule (default: Mondays 03:00 UTC or new raw training data).
    :param description: the DAG's description.
    :param tags: the DAG's tags.
    :param access_control: Airflow DAG-level ``access_control`` (FAB auth manager).
    :param task_callbacks: task id → extra operator kwargs (``on_success_callback`` …: notifications).
    :param dag_callbacks: DAG kwargs (``on_failure_callback`` …).
    :param champion_asset: the Asset promote updates (default: the shared ``gemini_tuning_champion``).
    :param max_active_runs: default ``$GEMINI_TUNING_MAX_ACTIVE_RUNS`` or 1 (runs of one pipeline share its
        champion).
    """
    task_callbacks = task_callbacks or {}

    def extra(task_id: str) -> dict:
        return dict(task_callbacks.get(task_id) or {})

    if schedule is DEFAULT_SCHEDULE:
        schedule = AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),
                                       assets=[RAW_TRAINING_DATA])
    dag = team_dag(
        dag_id=dag_id,
        description=description or "Validate + upload a training set, tune a Gemini model (deferred), evaluate, "
                                   "promote or delete",
        schedule=schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        # one run at a time per pipeline by default (runs of one pipeline share its champion)
        max_active_runs=max_active_runs or int(os.environ.get("GEMINI_TUNING_MAX_ACTIVE_RUNS", "1")),
        render_template_as_native_obj=True,
        default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
        tags=tags or ["gemini", "tuning"],
        # the demo defaults (PARAMS), with a deployment's own merged over them from the JSON file named by
        # $GEMINI_TUNING_PIPELINE_CONFIG (read at parse time; README "Guard rails")
        params=deployment_params(PARAMS) if params is None else params,
        access_control=access_control,
        **(dag_callbacks or {}),
    )
    with dag, params_set_aside(dag):
        prepare = PrepareTuningDatasetOperator(
            task_id="prepare_dataset",
            source="{{ params.training_data }}",
            destination="{{ params.gcs_prefix }}/datasets",
            target="{{ params.backend }}",
            validation_fraction="{{ params.validation_fraction }}",
            eval_prompts="{{ params.eval_prompts }}",
            epochs="{{ params.epochs }}",
            # the scheduled-run guard also checks these (an unattended run with demo values against Google fails)
            guard_paths={"system_instruction": "{{ params.system_instruction }}"},
            demo_roots=[DEMO],
        )
        tune = GeminiTuningOperator(
            task_id="tune",
            backend="{{ params.backend }}",
            **GOOGLE,
            base_model="{{ params.base_model }}",
            training_uri="{{ ti.xcom_pull(task_ids='prepare_dataset')['train_uri'] }}",
            validation_uri="{{ ti.xcom_pull(task_ids='prepare_dataset')['validation_uri'] }}",
            training_sha256="{{ ti.xcom_pull(task_ids='prepare_dataset')['train_sha256'] }}",
            epochs="{{ params.epochs }}",
            learning_rate_multiplier="{{ params.learning_rate_multiplier if params.backend == 'vertex' else None }}",
            adapter_size="{{ params.adapter_size if params.backend == 'vertex' else None }}",
            batch_size="{{ params.batch_size if params.backend == 'gemini_api' else None }}",
            display_name="{{ params.display_name }}",
            labels={"pipeline": "gemini-tuning"},
            state_uri="{{ params.gcs_prefix }}/state",
            job_timeout="{{ params.job_timeout_hours * 3600 }}",
            max_queue_hours="{{ params.max_queue_hours }}",
            retirement_warn_days="{{ params.retirement_warn_days }}",
            on_base_retirement="{{ params.on_base_retirement }}",
            poll_policy="{{ params.poll_policy }}",
            on_fingerprint_change="{{ params.on_fingerprint_change }}",
            continue_from="{{ params.continue_from }}",
            champion_pointer_uri="{{ params.gcs_prefix }}/champion.json",
            deferrable=True,
            max_training_tokens="{{ params.max_training_tokens }}",
            max_cost="{{ params.max_cost }}",
            price_per_million_training_tokens="{{ params.price_per_million_training_tokens }}",
            dataset_stats="{{ ti.xcom_pull(task_ids='prepare_dataset')['stats'] }}",
        )
        evaluate = GeminiEvaluateOperator(
            task_id="evaluate",
            **GOOGLE,
            prompt_set="{{ params.eval_prompts }}",
            challenger=TUNED,
            results_prefix=RUN_DIR + "/eval",
            champion_pointer_uri="{{ params.gcs_prefix }}/champion.json",
            base_model="{{ params.base_model if params.compare_base_model else None }}",
            system_instruction="{{ params.system_instruction }}",
            temperature="{{ params.temperature }}",
            max_output_tokens="{{ params.max_output_tokens }}",
            rpm="{{ params.eval_rpm }}",
            concurrency="{{ params.eval_concurrency }}",
            mode="{{ params.eval_mode }}",
            poll_policy="{{ params.poll_policy }}",
            evaluate_checkpoints="{{ params.evaluate_checkpoints }}",
            checkpoint_metric="{{ params.gate_primary_metric }}",
            judge="{{ params.judge }}",
            judge_model="{{ params.judge_model }}",
            judge_pointwise_template="{{ params.judge_pointwise_template }}",
            judge_pairwise_template="{{ params.judge_pairwise_template }}",
        )
        gate = GeminiGateOperator(
            task_id="gate",
            evaluation=EVALUATION,
            candidate=TUNED,
            gate_config=GATE_CONFIG,
            verdict_uri=VERDICT,
            promote_task_ids=["review_report", "approval"],
            delete_task_id="delete",
            pipeline=pipeline and provenance(pipeline),
            **extra("gate"),
        )
        # the report as the gate left it, for the reviewer (the approval's body links to it; the api-server serves it
        # until "report" has written the final one)
        review_report = GeminiTuningReportOperator(task_id="review_report", tuning=TUNED, evaluation=EVALUATION,
                                                   gate=GATE, report_uri=RUN_DIR + "/report/review.html",
                                                   decision_task_ids=[], dataset=PREPARED)
        approval = GeminiApprovalOperator(task_id="approval", verdict_uri=VERDICT, candidate=TUNED,
                                          required="{{ params.require_approval }}",
                                          timeout_hours="{{ params.approval_timeout_hours }}",
                                          promote_task_id="promote", reject_task_id="delete_rejected",
                                          **extra("approval"))
        promote = GeminiPromoteOperator(task_id="promote", **GOOGLE, candidate=TUNED, evaluation=EVALUATION,
                                        pointer_uri=POINTER, verdict_uri=VERDICT, gate_config=GATE_CONFIG,
                                        approval_task_id="approval", pipeline=pipeline and provenance(pipeline),
                                        **({"outlets": [champion_asset]} if champion_asset else {}),
                                        **extra("promote"))
        delete = GeminiDeleteTunedModelOperator(task_id="delete", **GOOGLE, candidate=TUNED, pointer_uri=POINTER,
                                                verdict_uri=VERDICT, delete_on=["delete"], **extra("delete"))
        delete_rejected = GeminiDeleteTunedModelOperator(task_id="delete_rejected", **GOOGLE, candidate=TUNED,
                                                         pointer_uri=POINTER, verdict_uri=VERDICT, delete_on=["reject"],
                                                         approval_task_id="approval", **extra("delete_rejected"))
        # teardowns: they run once every decision task has settled (never beside promote) and do not decide the run's
        # state (a failed gate fails the run even though the report is written)
        cleanup = GeminiDeleteTunedModelOperator(
            task_id="cleanup_on_failure", **GOOGLE, candidate=TUNED, pointer_uri=POINTER, verdict_uri=VERDICT,
            delete_on=["delete", "reject"], approval_task_id="approval", skip_if_done_by=["delete", "delete_rejected"],
            retries=3).as_teardown()
        report = GeminiTuningReportOperator(
            task_id="report",
            tuning=TUNED,
            evaluation=EVALUATION,
            gate=GATE,
            report_uri=RUN_DIR + "/report/index.html",
            decision_task_ids=["promote", "delete", "delete_rejected", "cleanup_on_failure"],
            dataset=PREPARED,
        ).as_teardown()

        # approval depends on the gate alone (all_success): a failed gate leaves it upstream_failed, a failed review
        # report cannot hold it back (all_done_min_one_success over gate + review report was tried: Airflow 3.3.2
        # scheduled it once with both upstream_failed, under load)
        prepare >> tune >> evaluate >> gate >> [review_report, approval, delete]
        approval >> [promote, delete_rejected]
        [review_report, promote, delete, delete_rejected] >> cleanup >> report
        if pipeline is not None:
            # the first step: the run's values against the reviewed policy, before anything is read
            GeminiPolicyCheckOperator(task_id="check_policy", pipeline=pipeline, **extra("check_policy")) >> prepare
    if fixed:
        fix_values(dag, fixed)
    return dag


_PARAM_REF = re.compile(r"\bparams\.([A-Za-z_][A-Za-z0-9_]*)\b")


def fix_values(dag: DAG, fixed: dict) -> None:
    """Replace every ``params.<name>`` of ``fixed`` in the tasks' templated fields by the value itself (a Jinja
    literal), so that no run's conf or Params can change it.

    :param dag: the built DAG.
    :param fixed: name → value (str, number, bool, None, or lists/dicts of those).
    """
    def literal(match: re.Match) -> str:
        name = match.group(1)
        return repr(fixed[name]) if name in fixed else match.group(0)

    def walk(value):
        if isinstance(value, str):
            return _PARAM_REF.sub(literal, value) if "params." in value else value
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(walk(v) for v in value)
        return value

    for task in dag.tasks:
        for field in task.template_fields:
            setattr(task, field, walk(getattr(task, field, None)))


# the open pipeline (every value a run Param, so whoever triggers a run sets the gate): for development and the
# tests. A production deployment runs the reviewed pipeline files instead (dags/gemini_tuning_pipelines.py) and
# leaves it off: [gemini_tuning] open_pipeline_dag = False (the default).
# (not when the pipeline factory imports this file by name for pipeline_dag: its DAG would be bagged twice)
if conf.getboolean("gemini_tuning", "open_pipeline_dag", fallback=False) and __name__ != "gemini_tuning_pipeline":
    dag = pipeline_dag()
