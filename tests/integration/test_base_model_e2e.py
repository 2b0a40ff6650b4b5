"""The base model, asked of the service before anything is paid for (dag.test() on the emulator): a retired base
fails the tune task on its first try with the message users see, and nothing is created; a served base goes on, with
its retirement date (from the lifecycle table) in the ``base_model`` XCom for the UI and the report."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from test_dag_e2e import FAST, pipeline, xcom  # noqa: F401  (pipeline: the fixture)

from harness.clients import BUCKET
from harness.paths import DEMO

pytestmark = pytest.mark.fast

NO_LIMITS = {"max_training_tokens": None, "max_cost": None, "price_per_million_training_tokens": None}


def posts_since(url: str, t0: float, path: str) -> list[dict]:
    rows = requests.get(f"{url}/_emulator/requests", params={"path": path, "method": "POST"},
                        timeout=10).json()["requests"]
    return [r for r in rows if r["t"] >= t0]


def states(dr) -> dict:
    return {ti.task_id: ti for ti in dr.get_task_instances()}


@pytest.mark.parametrize("today, base, instead", [
    # retired on 2026-02-05, on the emulator's default date; the table lists no replacement
    (None, "gemini-2.0-flash-001", "a currently tunable model such as gemini-3.5-flash"),
    # the old default base model, today: retired on 2026-10-20
    ("2026-12-08", "gemini-2.5-flash", "gemini-3.5-flash-lite or gemini-3.1-flash-lite (Google's listed "
                                       "replacements that the table lists as tunable)"),
])
def test_a_retired_base_model_fails_before_any_create(pipeline, emulator, capfd, today, base, instead):  # noqa: F811
    from airflow.utils.state import DagRunState

    url, prefix = emulator.endpoints.url, f"gs://{BUCKET}/base-model/{uuid.uuid4().hex[:8]}"
    if today:
        requests.post(f"{url}/_emulator/config", json={"today": today}, timeout=10).raise_for_status()
    t0 = time.time()
    dr = pipeline.test(run_conf={**FAST, **NO_LIMITS, "training_data": str(DEMO / "train.jsonl"),
                                 "gcs_prefix": prefix, "base_model": base})
    tis = states(dr)
    assert dr.state == DagRunState.FAILED
    assert tis["prepare_dataset"].state == "success" and tis["tune"].state == "failed"
    assert tis["tune"].try_number == 1                       # AirflowFailException: a retry would not help
    assert posts_since(url, t0, "tuningJobs") == []          # nothing was created
    log = "".join(capfd.readouterr())
    assert (f"nothing was created: base model {base} is not served in us-central1 (Vertex AI answered 404 "
            "NOT_FOUND: Publisher Model") in log
    assert f"Set base_model to {instead}, or choose a location that offers it." in log
    assert "the lifecycle table (as of " in log and f"{base} retired on 20" in log
    seen = xcom(tis, "tune", "base_model")
    assert seen["served"] is False and seen["model"] == base and seen["state"] == "retired"


def test_a_served_base_model_goes_on_and_publishes_its_retirement_date(pipeline, emulator):  # noqa: F811
    from airflow.utils.state import DagRunState

    url, prefix = emulator.endpoints.url, f"gs://{BUCKET}/base-model/{uuid.uuid4().hex[:8]}"
    t0 = time.time()
    dr = pipeline.test(run_conf={**FAST, **NO_LIMITS, "training_data": str(DEMO / "train.jsonl"),
                                 "gcs_prefix": prefix, "base_model": "gemini-3.5-flash", "require_approval": False})
    tis = states(dr)
    assert tis["tune"].state == "success", {t: ti.state for t, ti in tis.items()}
    assert dr.state in (DagRunState.SUCCESS, DagRunState.FAILED)   # the gate decides the rest; not this test's
    assert len(posts_since(url, t0, "tuningJobs")) == 1
    seen = xcom(tis, "tune", "base_model")
    assert seen["served"] is True and seen["model"] == "gemini-3.5-flash" and seen["location"] == "us-central1"
    assert seen["retirement"] == "2027-05-19" and seen["state"] in ("ok", "warn") and seen["table_as_of"]
