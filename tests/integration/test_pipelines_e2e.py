"""Pipelines as reviewed configuration, end to end with dag.test() on the emulator: the factory builds a DAG per file,
each promotes and deletes against its own champion, a hostile conf is refused before anything is uploaded or
created, and broken files are one import error that names each of them while the other pipelines load."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from harness.clients import BUCKET
from harness.paths import DEMO, PIPELINE_FILES, ROOT

pytestmark = pytest.mark.fast

FACTORY = ROOT / "dags" / "gemini_tuning_pipelines.py"
FAST_POLL = {"initial_seconds": 0.5, "min_seconds": 0.5, "max_seconds": 2, "fallback_max_seconds": 1}


def pipeline_file(folder: Path, pid: str, prefix: str, **policy) -> Path:
    """A pipeline file like the demo's router, with its own prefix (and policy changes)."""
    spec = yaml.safe_load((ROOT / "pipelines" / "router.yaml").read_text())
    spec.update(id=pid, description=f"test pipeline {pid}", schedule=None)
    spec["storage"] = {"gcs_prefix": prefix}
    spec["data"] = {k: str(DEMO / Path(v).name) if isinstance(v, str) else v for k, v in spec["data"].items()}
    spec["tuning"].update(poll_policy=FAST_POLL, display_name=pid)
    spec["evaluation"].update(rpm=12000, concurrency=32)
    spec["policy"]["allowed_storage_roots"] = [prefix, str(ROOT / "include")]
    spec.pop("notifications", None)
    spec.pop("access", None)
    for key, value in policy.items():
        if key == "gate":
            spec["policy"]["gate"].update(value)
        elif key == "budget":
            spec["policy"]["budget"].update(value)
        else:
            spec["policy"][key] = value
    path = folder / f"{pid}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def factory(airflow_db, emulator, monkeypatch, tmp_path):
    """Loads the factory's DAGs from a pipelines folder of the test's own (``load()``; a fresh DagBag each time,
    because dag.test() keeps an earlier run's conf on the same DAG object)."""
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "test-project"}}))
    folder = tmp_path / "pipelines"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW__GEMINI_TUNING__PIPELINES_FOLDER", str(folder))

    def load():
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(FACTORY), safe_mode=False)

    return folder, load


def blob_json(gcs_client, uri: str) -> dict | None:
    blob = gcs_client.bucket(BUCKET).blob(uri[len(f"gs://{BUCKET}/"):])
    return json.loads(blob.download_as_text()) if blob.exists() else None


def run(dag, **conf):
    dr = dag.test(run_conf=conf)
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    return dr, tis


@pytest.mark.timeout(900)   # three pipeline runs
def test_two_pipelines_promote_and_delete_against_their_own_champions(factory, emulator, gcs_client):
    from airflow.utils.state import DagRunState

    folder, load = factory
    tag = uuid.uuid4().hex[:8]
    prefixes = {pid: f"gs://{BUCKET}/pipes-{tag}/{pid}" for pid in ("alpha", "beta")}
    files = {pid: pipeline_file(folder, pid, prefix) for pid, prefix in prefixes.items()}
    bag = load()
    assert bag.import_errors == {}
    assert {"gemini_tuning__alpha", "gemini_tuning__beta", "gemini_tuning__alpha__rollback",
            "gemini_tuning__beta__rollback"} <= set(bag.dags)

    # alpha: the good set is promoted (alpha's first champion)
    dr, tis = run(bag.dags["gemini_tuning__alpha"], training_data=str(DEMO / "train.jsonl"), epochs=2)
    assert dr.state == DagRunState.SUCCESS, {t: ti.state for t, ti in tis.items()}
    assert tis["check_policy"].state == "success" and tis["promote"].state == "success"
    alpha_champion = blob_json(gcs_client, prefixes["alpha"] + "/champion.json")
    assert alpha_champion["tuned_model"] == tis["tune"].xcom_pull(task_ids="tune")["tuned_model"]
    verdict = blob_json(gcs_client, tis["gate"].xcom_pull(task_ids="gate", key="gate")["verdict_uri"])
    from gemini_tuning.pipelines.loader import load_file

    alpha = load_file(files["alpha"])
    assert verdict["pipeline"] == {"id": "alpha", "file": str(files["alpha"]), "revision": alpha.revision,
                                   "policy_hash": alpha.policy_hash}

    # beta: its own first champion, not compared with alpha's
    dr, tis = run(load().dags["gemini_tuning__beta"], training_data=str(DEMO / "train.jsonl"), epochs=2)
    assert dr.state == DagRunState.SUCCESS and tis["promote"].state == "success"
    assert "champion" not in tis["evaluate"].xcom_pull(task_ids="evaluate")["models"]
    beta_champion = blob_json(gcs_client, prefixes["beta"] + "/champion.json")

    # beta again with shuffled labels: compared with beta's champion, deleted; both champions untouched
    dr, tis = run(load().dags["gemini_tuning__beta"], training_data=str(DEMO / "train_shuffled.jsonl"), epochs=2)
    assert dr.state == DagRunState.SUCCESS, {t: ti.state for t, ti in tis.items()}
    ev = tis["evaluate"].xcom_pull(task_ids="evaluate")
    assert ev["models"]["champion"] == beta_champion["endpoint"] != alpha_champion["endpoint"], ev["models"]
    assert tis["gate"].xcom_pull(task_ids="gate", key="gate")["decision"] == "delete"
    assert tis["delete"].state == "success" and tis["promote"].state == "skipped"
    assert blob_json(gcs_client, prefixes["beta"] + "/champion.json")["tuned_model"] == beta_champion["tuned_model"]
    assert blob_json(gcs_client, prefixes["alpha"] + "/champion.json")["tuned_model"] == alpha_champion["tuned_model"]

    # the page's data layer lists the runs of both pipelines
    from gemini_tuning.ui.data import load_runs

    listed = {r.dag_id for r in load_runs(readable=None, limit=50)}
    assert {"gemini_tuning__alpha", "gemini_tuning__beta"} <= listed


OTHER = f"gs://{BUCKET}/pipes-other/champion"
HOSTILE = [
    {"gate_min_score": 0.0}, {"gate_max_error_rate": 0.9}, {"gate_min_prompts": 1}, {"gate_min_margin": -1},
    {"gate_confidence": 0.51}, {"gate_pairwise_min_decisive": 1}, {"require_approval": False},
    {"approval_timeout_hours": 1000}, {"approval_timeout_hours": None}, {"max_training_tokens": 10**9},
    {"max_training_tokens": None}, {"max_cost": 1000.0}, {"max_cost": None},
    {"gcs_prefix": OTHER}, {"gate_primary_metric": "exact_match"}, {"backend": "gemini_api"}, {"judge": "both"},
    {"price_per_million_training_tokens": 0.0001},
    {"training_data": "/etc/passwd"}, {"training_data": str(ROOT / "include" / ".." / "README.md")},
    {"training_data": f"{OTHER}/train.jsonl"}, {"eval_prompts": "gs://another-bucket/prompts.jsonl"},
    {"location": "europe-west4"}, {"location": "evil.example.com"}, {"base_model": "gemini-2.5-flash"},
    {"project_id": "another-project"}, {"gate_min_score": "0"},
]


@pytest.mark.timeout(900)   # 27 runs (each a fresh DagBag); a regression that lets one through waits at approval
def test_a_hostile_conf_is_refused_before_any_upload_or_create(factory, emulator, gcs_client):
    from airflow.sdk.definitions.param import ParamValidationError
    from airflow.utils.state import DagRunState

    folder, load = factory
    prefix = f"gs://{BUCKET}/locked-{uuid.uuid4().hex[:8]}"
    pipeline_file(folder, "locked", prefix, gate={"min_prompts": 30, "min_margin": 0.0, "confidence": 0.9},
                  require_approval=True, approval_timeout_hours=24,
                  budget={"max_training_tokens": 10**7, "max_cost": 50.0, "price_per_million_training_tokens": 2.0})
    url = emulator.endpoints.url
    requests.delete(f"{url}/_emulator/requests", timeout=10)
    refused = {}
    for conf in HOSTILE:
        dag = load().dags["gemini_tuning__locked"]
        try:
            dr, tis = run(dag, **conf)
        except ParamValidationError as exc:                  # the form's / REST API's check (the Param schema)
            refused[json.dumps(conf)] = f"params: {exc}"[:120]
            continue
        assert dr.state == DagRunState.FAILED, (conf, {t: ti.state for t, ti in tis.items()})
        assert tis["check_policy"].state == "failed", conf
        assert tis["prepare_dataset"].state == "upstream_failed", conf
        refused[json.dumps(conf)] = "check_policy"
    assert len(refused) == len(HOSTILE)
    # the reviewed file's own check refused at least the conf keys the form does not offer
    assert refused[json.dumps({"gcs_prefix": OTHER})] == "check_policy"
    assert refused[json.dumps({"gate_min_score": 0.0})]
    # nothing was uploaded and nothing was created: the only objects are the refused runs' reports (the report
    # teardown says why the run failed)
    written = [b.name for b in gcs_client.list_blobs(BUCKET, prefix=prefix[len(f"gs://{BUCKET}/"):])]
    assert written and all(name.endswith("/report/index.html") for name in written), written
    assert len(written) == list(refused.values()).count("check_policy")
    assert list(gcs_client.list_blobs(BUCKET, prefix="pipes-other/")) == []
    rows = requests.get(f"{url}/_emulator/requests", params={"method": "POST"}, timeout=10).json()["requests"]
    assert rows == [], rows


def test_ten_broken_files_are_one_import_error_naming_each_and_the_others_load(factory, tmp_path):
    folder, load = factory
    shutil.copytree(PIPELINE_FILES / "broken", folder, dirs_exist_ok=True)
    pipeline_file(folder, "healthy", f"gs://{BUCKET}/healthy")
    from gemini_tuning.pipelines.loader import load_folder

    result = load_folder(folder)
    broken = sorted(Path(e.file).name for e in result.errors)
    assert len(broken) == 10, broken
    bag = load()
    assert {"gemini_tuning__healthy", "gemini_tuning__good_a", "gemini_tuning__good_b"} <= set(bag.dags)
    assert "gemini_tuning__broken_pipeline_files" not in bag.dags
    (message,) = bag.import_errors.values()
    assert "10 pipeline file(s) did not load" in message
    for name in broken:
        assert name in message, name
    for file_error in result.errors:
        for error in file_error.errors:
            assert str(error) in message
