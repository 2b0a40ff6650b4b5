"""The rollback DAG with dag.test() against the emulator: two promotions, then the DAG restores the first."""

from __future__ import annotations

import json

import pytest
from test_champion import FAST, assert_one_champion, run, tune_vertex

from gemini_tuning.backends.vertex_registry import VertexRegistry
from gemini_tuning.services import champion as ch
from harness.clients import BUCKET, LOCATION, PROJECT
from harness.data import unique
from harness.paths import ROOT

pytestmark = pytest.mark.fast


@pytest.fixture
def rollback_dag(airflow_db, emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": PROJECT}}))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"), safe_mode=False)
    assert bag.import_errors == {}
    return bag.dags["gemini_tuning_rollback"]


def test_rollback_dag_restores_the_first_champion(rollback_dag, emulator, gcs_client, small_train_uri):
    from airflow.utils.state import DagRunState
    from google.auth.credentials import AnonymousCredentials

    registry = VertexRegistry(PROJECT, LOCATION, AnonymousCredentials(), base_url=emulator.endpoints.url,
                              retry_policy=FAST)
    pointer_uri = f"gs://{BUCKET}/{unique('rollback-dag')}/champion.json"
    a, b = tune_vertex(emulator.endpoints.url, small_train_uri, 2)
    ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=registry, run=run(1))
    _, gen = ch.read_champion(gcs_client, pointer_uri)
    ch.promote(gcs_client, pointer_uri, b, expected_generation=gen, registry=registry, run=run(2))
    before = ch.read_champion(gcs_client, pointer_uri)

    # expecting another model than the previous champion: the run fails at once (no retry), nothing changes
    other = f"projects/{PROJECT}/locations/{LOCATION}/models/424242@1"
    dr = rollback_dag.test(run_conf={"pointer_uri": pointer_uri, "to": other})
    assert dr.state == DagRunState.FAILED
    (ti,) = dr.get_task_instances()
    assert ti.try_number == 1 and ch.read_champion(gcs_client, pointer_uri) == before

    dr = rollback_dag.test(run_conf={"pointer_uri": pointer_uri, "to": a["tuned_model"]})
    assert dr.state == DagRunState.SUCCESS
    (ti,) = dr.get_task_instances()
    result = ti.xcom_pull(task_ids="rollback")
    assert result["status"] == "rolled_back" and result["rolled_back"] == b["tuned_model"]
    assert result["champion"]["tuned_model"] == a["tuned_model"] and result["pointer_uri"] == pointer_uri
    ptr = assert_one_champion(registry, gcs_client, pointer_uri, [a, b])
    assert ptr["tuned_model"] == a["tuned_model"] and ptr["via"] == "rollback"
    assert (ptr["dag_id"], ptr["run_id"]) == ("gemini_tuning_rollback", dr.run_id)
    assert registry.get_model(b["tuned_model"]).labels[ch.ROLE_LABEL] == "retired"
