"""Safe schedules (issue: guard rails 4): the pure decision (run type x endpoint x paths), the operators applying it
before any call, a deployment's Param defaults, and the unpause gotcha of the pipeline's schedule."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest

from gemini_tuning.core.safety import DEMO_BUCKET, REPO_DEMO_DIR, decide, is_demo_location, load_pipeline_config
from harness.paths import DEMO, ROOT

pytestmark = pytest.mark.fast

DEMO_ARGS = {"training_data": str(DEMO / "train.jsonl"), "gcs_prefix": f"gs://{DEMO_BUCKET}/pipeline"}
REAL_ARGS = {"training_data": "gs://acme-ml/tickets/2026-12.jsonl", "gcs_prefix": "gs://acme-ml/gemini"}
EMULATOR = "http://127.0.0.1:8123"


def test_demo_locations():
    assert REPO_DEMO_DIR == str(ROOT / "include" / "demo")
    assert "demo data" in is_demo_location(str(DEMO / "train.jsonl"))
    assert "demo data" in is_demo_location(str(DEMO / ".." / "demo" / "eval_prompts.jsonl"))   # normalised
    assert "demo bucket" in is_demo_location(f"gs://{DEMO_BUCKET}/pipeline/datasets")
    assert is_demo_location(f"gs://{DEMO_BUCKET}-copy/x") is None
    assert is_demo_location(str(ROOT / "include" / "demo-not" / "x.jsonl")) is None
    assert is_demo_location("/srv/data/demo/train.jsonl") is None
    assert is_demo_location("/srv/data/train.jsonl", demo_roots=["/srv/data"]) == "demo data under /srv/data"
    for value in (None, "", "None", "Answer with one label.\nBe brief.", "https://example.com/x", 3):
        assert is_demo_location(value) is None


@pytest.mark.parametrize("run_type", ["scheduled", "asset_triggered", "backfill", "operator_triggered",
                                      "asset_materialization", None])
def test_unattended_runs_with_demo_values_against_google_are_refused(run_type):
    v = decide(run_type=run_type, api_base_url=None, arguments=DEMO_ARGS)
    assert not v.allowed and len(v.demo_arguments) == 2
    assert f"refusing a {run_type or 'unknown-type'} run" in v.message
    assert "training_data=" in v.message and f"gs://{DEMO_BUCKET}" in v.message
    assert "Nothing was uploaded or created" in v.message
    assert "GEMINI_TUNING_PIPELINE_CONFIG" in v.message and "trigger the run manually" in v.message


def test_only_the_demo_bucket_is_enough_to_refuse():
    v = decide(run_type="scheduled", api_base_url=None,
               arguments={**REAL_ARGS, "gcs_prefix": f"gs://{DEMO_BUCKET}/pipeline"})
    assert not v.allowed and v.demo_arguments == (f"gcs_prefix=gs://{DEMO_BUCKET}/pipeline (the demo bucket "
                                                  f"gs://{DEMO_BUCKET})",)


@pytest.mark.parametrize("run_type", ["scheduled", "asset_triggered", "manual"])
def test_the_emulator_allows_the_demo(run_type):
    v = decide(run_type=run_type, api_base_url=EMULATOR, arguments=DEMO_ARGS)
    assert v.allowed and not v.warn and EMULATOR in v.message


@pytest.mark.parametrize("run_type", ["scheduled", "asset_triggered", "manual"])
@pytest.mark.parametrize("url", [None, EMULATOR])
def test_real_values_are_always_allowed(run_type, url):
    v = decide(run_type=run_type, api_base_url=url, arguments=REAL_ARGS)
    assert v.allowed and not v.warn and v.demo_arguments == ()


def test_a_manual_run_with_the_demo_against_google_is_allowed_loudly():
    v = decide(run_type="manual", api_base_url=None, arguments=DEMO_ARGS)
    assert v.allowed and v.warn and "MANUAL RUN USES THE DEMO CONFIGURATION" in v.message


# ---------------------------------------------------------------------------------------------- operators
class _Log:
    def __init__(self):
        self.warnings = []

    def warning(self, fmt, *args):
        self.warnings.append(fmt % args)


def fake_context(run_type):
    return {"dag_run": SimpleNamespace(run_type=run_type), "ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r",
                                                                                  map_index=-1)}


def test_the_guard_the_operators_use_with_a_scheduled_context():
    from airflow.sdk.exceptions import AirflowFailException
    from airflow.utils.types import DagRunType

    from gemini_tuning.operators.guards import guard_demo_configuration, run_type_of

    op = SimpleNamespace(hook=SimpleNamespace(api_base_url=None), log=_Log())
    assert run_type_of(fake_context(DagRunType.SCHEDULED)) == "scheduled" and run_type_of({}) is None
    with pytest.raises(AirflowFailException, match="refusing a scheduled run"):
        guard_demo_configuration(op, fake_context(DagRunType.SCHEDULED), DEMO_ARGS)
    with pytest.raises(AirflowFailException, match="refusing a asset_triggered run"):
        guard_demo_configuration(op, fake_context("asset_triggered"), DEMO_ARGS)
    assert guard_demo_configuration(op, fake_context(DagRunType.MANUAL), DEMO_ARGS).warn
    assert "MANUAL RUN USES THE DEMO" in op.log.warnings[0] and op.log.warnings[0].startswith("\n!!!!")
    assert guard_demo_configuration(op, fake_context("scheduled"), REAL_ARGS).allowed
    op.hook.api_base_url = EMULATOR
    assert guard_demo_configuration(op, fake_context("scheduled"), DEMO_ARGS).allowed


def stub_hook(op, url=None):
    """A hook that knows its base URL and nothing else: any GCS or Vertex call raises AttributeError."""
    op.__dict__["hook"] = SimpleNamespace(api_base_url=url)
    return op


def test_prepare_refuses_a_scheduled_demo_run_before_reading_or_uploading():
    from airflow.sdk.exceptions import AirflowFailException

    from gemini_tuning.operators.prepare import PrepareTuningDatasetOperator

    op = stub_hook(PrepareTuningDatasetOperator(
        task_id="prepare", source="gs://acme-ml/train.jsonl", destination="gs://acme-ml/datasets",
        eval_prompts="gs://acme-ml/eval.jsonl",
        guard_paths={"system_instruction": str(DEMO / "system_instruction.txt")}))
    with pytest.raises(AirflowFailException, match=r"system_instruction=.*system_instruction\.txt \(demo data"):
        op.execute(fake_context("scheduled"))
    op = stub_hook(PrepareTuningDatasetOperator(task_id="prepare", source="/srv/x/train.jsonl",
                                                destination="gs://acme-ml/datasets", demo_roots=["/srv/x"]))
    with pytest.raises(AirflowFailException, match="demo data under /srv/x"):
        op.execute(fake_context("asset_triggered"))


def test_tune_refuses_a_scheduled_run_on_the_demo_bucket_before_the_budget_and_the_launcher():
    from airflow.sdk.exceptions import AirflowFailException

    from gemini_tuning.operators.tune import GeminiTuningOperator

    op = stub_hook(GeminiTuningOperator(task_id="tune", base_model="gemini-2.5-flash",
                                        training_uri=f"gs://{DEMO_BUCKET}/pipeline/datasets/abc/train.jsonl",
                                        state_uri=f"gs://{DEMO_BUCKET}/pipeline/state"))
    with pytest.raises(AirflowFailException, match=r"refusing a scheduled run .*training_uri=gs://gemini-tuning-demo"):
        op.execute(fake_context("scheduled"))


# ---------------------------------------------------------------------------------------------- deployment config
def write(tmp_path, obj) -> str:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


def test_load_pipeline_config(tmp_path):
    assert load_pipeline_config(write(tmp_path, {"_comment": "x", "epochs": 2}), ["epochs"]) == {"epochs": 2}
    with pytest.raises(ValueError, match="unknown Param.*trainig_data"):
        load_pipeline_config(write(tmp_path, {"trainig_data": "x"}), ["training_data"])
    with pytest.raises(ValueError, match="cannot read"):
        load_pipeline_config(write(tmp_path, "{not json"), [])
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_pipeline_config(write(tmp_path, [1]), [])
    with pytest.raises(ValueError, match="cannot read"):
        load_pipeline_config(str(tmp_path / "missing.json"), [])


def test_deployment_params_merge_over_the_demo_defaults_and_are_validated(tmp_path, monkeypatch):
    from airflow.sdk import Param

    from gemini_tuning.operators.guards import deployment_params

    params = {"gcs_prefix": Param("gs://gemini-tuning-demo/pipeline", type="string", pattern=r"^gs://",
                                  title="GCS prefix"),
              "epochs": Param(3, type="integer", minimum=1)}
    monkeypatch.delenv("GEMINI_TUNING_PIPELINE_CONFIG", raising=False)
    assert deployment_params(params) is params
    monkeypatch.setenv("GEMINI_TUNING_PIPELINE_CONFIG", write(tmp_path, {"gcs_prefix": "gs://acme-ml/gemini"}))
    merged = deployment_params(params)
    assert merged["gcs_prefix"].value == "gs://acme-ml/gemini" and merged["gcs_prefix"].schema["title"] == "GCS prefix"
    assert params["gcs_prefix"].value == "gs://gemini-tuning-demo/pipeline" and merged["epochs"] is params["epochs"]
    with pytest.raises(ValueError, match="epochs=0 is not a valid value"):
        deployment_params(params, write(tmp_path, {"epochs": 0}))


def load_pipeline(monkeypatch, config: str | None):
    from airflow.dag_processing.dagbag import DagBag

    if config:
        monkeypatch.setenv("GEMINI_TUNING_PIPELINE_CONFIG", config)
    else:
        monkeypatch.delenv("GEMINI_TUNING_PIPELINE_CONFIG", raising=False)
    bag = DagBag(dag_folder=str(ROOT / "dags" / "gemini_tuning_pipeline.py"), safe_mode=False)
    return bag


def test_the_pipeline_reads_a_deployment_config_at_parse_time(tmp_path, monkeypatch):
    conf = {"training_data": "gs://acme-ml/tickets.jsonl", "eval_prompts": "gs://acme-ml/eval.jsonl",
            "system_instruction": None, "gcs_prefix": "gs://acme-ml/gemini", "project_id": "acme-prod",
            "max_training_tokens": 5_000_000}
    bag = load_pipeline(monkeypatch, write(tmp_path, conf))
    assert bag.import_errors == {}
    params = bag.dags["gemini_tuning_pipeline"].params
    assert {k: params[k] for k in conf} == conf and params["backend"] == "vertex"
    bad = load_pipeline(monkeypatch, write(tmp_path, {"gcs_prefix": "s3://nope"}))
    assert "gcs_prefix='s3://nope' is not a valid value" in next(iter(bad.import_errors.values()))


def test_unpausing_starts_a_scheduled_run_at_once_and_unconfigured_it_is_refused(monkeypatch):
    """The gotcha: cron schedule + catchup=False + a start_date in the past -> on unpause the scheduler creates a run
    for the latest cron time right away (run type "scheduled", the Params' defaults). Unconfigured, those are the demo
    values, which the guard refuses against Google."""
    import pendulum
    from airflow.timetables.base import TimeRestriction

    bag = load_pipeline(monkeypatch, None)
    dag = bag.dags["gemini_tuning_pipeline"]
    timetable = dag.timetable.timetable if hasattr(dag.timetable, "timetable") else dag.timetable
    now = pendulum.now("UTC")
    info = timetable.next_dagrun_info(last_automated_data_interval=None,
                                      restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=False))
    assert info.run_after <= now and now - info.run_after < timedelta(days=7)   # due already: runs at unpause
    assert info.run_after.day_of_week == pendulum.MONDAY and info.run_after.hour == 3
    defaults = {k: dag.params[k] for k in ("training_data", "eval_prompts", "system_instruction", "gcs_prefix")}
    verdict = decide(run_type="scheduled", api_base_url=None, arguments=defaults,
                     demo_roots=dag.task_dict["prepare_dataset"].demo_roots)
    assert not verdict.allowed and len(verdict.demo_arguments) == 4, verdict


def test_loud_warning_reaches_the_task_log(caplog):
    from gemini_tuning.operators.guards import guard_demo_configuration

    op = SimpleNamespace(hook=SimpleNamespace(api_base_url=None), log=logging.getLogger("test.guard"))
    with caplog.at_level(logging.WARNING, "test.guard"):
        guard_demo_configuration(op, fake_context("manual"), DEMO_ARGS)
    assert "MANUAL RUN USES THE DEMO CONFIGURATION AGAINST GOOGLE'S REAL SERVICES" in caplog.text
