"""Guard rails end to end, with dag.test() against the emulator: the budget stops the run at `tune` before any
tuning job is created; a scheduled run with the demo values against Google stops at `prepare_dataset` before any
upload; a manual run on the emulator with the demo data still works."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from test_dag_e2e import FAST, pipeline, xcom  # noqa: F401  (pipeline: the fixture)

from harness.clients import BUCKET
from harness.paths import DEMO

pytestmark = pytest.mark.fast

PREFIX_ROOT = f"gs://{BUCKET}/guard"
NO_LIMITS = {"max_training_tokens": None, "max_cost": None, "price_per_million_training_tokens": None}


def creates_since(url: str, t0: float) -> list[dict]:
    rows = requests.get(f"{url}/_emulator/requests", params={"path": "tuningJobs", "method": "POST"},
                        timeout=10).json()["requests"]
    return [r for r in rows if r["t"] >= t0]


def states(dr) -> dict:
    return {ti.task_id: ti for ti in dr.get_task_instances()}


def test_budget_below_the_estimate_fails_at_tune_without_a_create_and_above_it_succeeds(pipeline, emulator,  # noqa: F811
                                                                                          gcs_client, capfd):
    from airflow.utils.state import DagRunState

    url, prefix = emulator.endpoints.url, f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    conf = {**FAST, "training_data": str(DEMO / "train.jsonl"), "gcs_prefix": prefix, "epochs": 3}

    t0 = time.time()
    dr = pipeline.test(run_conf={**conf, **NO_LIMITS, "max_training_tokens": 1_000})
    tis = states(dr)
    assert dr.state == DagRunState.FAILED
    assert tis["prepare_dataset"].state == "success" and tis["tune"].state == "failed"
    assert tis["tune"].try_number == 1                         # AirflowFailException: no retries (retries=2)
    assert tis["evaluate"].state == "upstream_failed"
    assert creates_since(url, t0) == []                        # nothing was created
    state = prefix[len(f"gs://{BUCKET}/"):] + "/state/"
    assert [b.name for b in gcs_client.list_blobs(BUCKET, prefix=state)] == []   # no intent record either
    stats = xcom(tis, "prepare_dataset")["stats"]
    estimate = stats["train_tokens"] * 3
    assert estimate > 1_000
    log = "".join(capfd.readouterr())
    assert (f"AirflowFailException: over budget: estimated {estimate:,} billable training tokens (estimate: "
            f"{stats['train_tokens']:,} tokens of training examples") in log
    assert "above max_training_tokens=1,000. Nothing was created. To tune anyway, raise the limit" in log

    t1 = time.time()
    dr = pipeline.test(run_conf={**conf, **NO_LIMITS, "max_training_tokens": estimate,
                                 "max_cost": 1.0, "price_per_million_training_tokens": 2.0})
    tis = states(dr)
    assert dr.state == DagRunState.SUCCESS, {t: ti.state for t, ti in tis.items()}
    budget = xcom(tis, "tune", "budget")
    assert budget["billable_tokens"] == estimate and budget["epochs"] == 3 and budget["max_training_tokens"] == estimate
    assert budget["cost"] == estimate / 1e6 * 2.0
    assert len(creates_since(url, t1)) == 1
    assert xcom(tis, "tune")["state"] == "JOB_STATE_SUCCEEDED"
    assert [b.name for b in gcs_client.list_blobs(BUCKET, prefix=state)] != []    # the launcher's intent record
    print(f"measured: train_tokens={stats['train_tokens']} estimate={estimate} train_count="
          f"{xcom(tis, 'prepare_dataset')['train_count']}")


def test_a_scheduled_run_with_the_demo_values_against_google_stops_before_any_upload(pipeline, emulator, gcs_client,  # noqa: F811
                                                                                    monkeypatch, capfd):
    """dag.test() makes manual runs; here its run is created as a *scheduled* one (what the scheduler makes on unpause)
    with the Params' defaults (the demo data and bucket), and no emulator URL (Google's real endpoints)."""
    import airflow.models.dagrun as dagrun_module
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType
    from google.api_core.exceptions import NotFound

    real = dagrun_module.get_or_create_dagrun

    def scheduled(*, dag, run_id, **kwargs):
        return real(dag=dag, run_id=run_id.replace("manual__", "scheduled__"), **kwargs)

    def create_scheduled(self, *args, run_type=None, **kwargs):
        return create(self, *args, run_type=DagRunType.SCHEDULED, **kwargs)

    from airflow.serialization.definitions.dag import SerializedDAG

    create = SerializedDAG.create_dagrun
    monkeypatch.setattr(SerializedDAG, "create_dagrun", create_scheduled)
    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", scheduled)
    monkeypatch.delenv("GEMINI_TUNING_EMULATOR_URL")        # Google's endpoints (GCS stays on the emulator: harmless)

    t0 = time.time()
    dr = pipeline.test(run_conf={})
    tis = states(dr)
    assert dr.run_type == DagRunType.SCHEDULED and dr.run_id.startswith("scheduled__")
    assert dr.state == DagRunState.FAILED
    assert tis["prepare_dataset"].state == "failed" and tis["prepare_dataset"].try_number == 1
    assert tis["tune"].state == "upstream_failed"
    assert creates_since(emulator.endpoints.url, t0) == []
    try:
        uploaded = [b.name for b in gcs_client.list_blobs("gemini-tuning-demo", prefix="pipeline/")]
    except NotFound:
        uploaded = []
    assert uploaded == []
    log = "".join(capfd.readouterr())                       # dag.test() runs the task in process: its log
    assert "AirflowFailException: refusing a scheduled run with the demo configuration" in log
    assert "destination=gs://gemini-tuning-demo/pipeline/datasets (the demo bucket" in log
    assert "GEMINI_TUNING_PIPELINE_CONFIG" in log
