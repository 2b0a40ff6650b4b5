"""End-to-end runs of the pipeline DAG with dag.test() against the emulator (issue 4 §2, issue 5 §2)."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from harness.clients import BUCKET
from harness.paths import DEMO, ROOT

pytestmark = pytest.mark.fast

PREFIX_ROOT = f"gs://{BUCKET}/e2e"


@pytest.fixture
def pipeline(airflow_db, emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "test-project"}}))
    monkeypatch.setenv("AIRFLOW_CONN_GEMINI_API_DEFAULT", json.dumps({"conn_type": "generic", "password": "test-key"}))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"), safe_mode=False)
    assert bag.import_errors == {}
    return bag.dags["gemini_tuning_pipeline"]


FAST = {"poll_policy": {"initial_seconds": 0.5, "min_seconds": 0.5, "max_seconds": 2, "fallback_max_seconds": 1},
        "eval_rpm": 12000, "eval_concurrency": 32}


def run(dag, **conf):
    from airflow.utils.state import DagRunState

    dr = dag.test(run_conf={**FAST, **conf})
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert dr.state == DagRunState.SUCCESS, {t: ti.state for t, ti in tis.items()}
    return dr, tis


def xcom(tis, task_id, key="return_value"):
    return tis[task_id].xcom_pull(task_ids=task_id, key=key)


def test_vertex_good_set_promoted_then_shuffled_set_deleted(pipeline, emulator, gcs_client):
    prefix = f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    url = emulator.endpoints.url
    # --- 1: the good set: tuned, evaluated, promoted
    _, tis = run(pipeline, training_data=str(DEMO / "train.jsonl"), gcs_prefix=prefix)
    tuned = xcom(tis, "tune")
    assert tuned["state"] == "JOB_STATE_SUCCEEDED" and tuned["tuned_model"].endswith("@1")
    assert "/endpoints/" in tuned["endpoint"]
    losses = [p[2] for p in tuned["loss_history"]]          # from the emulator's real training (metrics file)
    assert len(losses) > 10 and sum(losses[-5:]) < sum(losses[:5])
    job = requests.get(f"{url}/v1beta1/{tuned['name']}", timeout=10).json()
    assert job["tuningDataStats"]["supervisedTuningDataStats"]["tuningStepCount"] == str(tuned["total_steps"])
    assert xcom(tis, "gate", "gate")["decision"] == "promote"
    assert tis["promote"].state == "success" and tis["delete"].state == "skipped"
    model = requests.get(f"{url}/v1/{tuned['tuned_model'].split('@')[0]}@champion", timeout=10).json()
    assert model["versionId"] == "1" and "champion" in model["versionAliases"]
    pointer = json.loads(gcs_client.bucket(BUCKET).blob(prefix[len(f"gs://{BUCKET}/"):] + "/champion.json")
                         .download_as_text())
    assert pointer["tuned_model"] == tuned["tuned_model"]
    ev = xcom(tis, "evaluate")
    assert sum(ev["counts"]["challenger"].values()) == ev["n_prompts"] == ev["rows"]
    assert xcom(tis, "report")["report_uri"].endswith("/report/index.html")

    # --- 2: shuffled labels: evaluated against the champion, deleted; the champion untouched
    _, tis2 = run(pipeline, training_data=str(DEMO / "train_shuffled.jsonl"), gcs_prefix=prefix)
    bad = xcom(tis2, "tune")
    gate = xcom(tis2, "gate", "gate")
    assert gate["decision"] == "delete", gate
    assert "champion" in xcom(tis2, "evaluate")["models"]
    assert tis2["delete"].state == "success" and tis2["promote"].state == "skipped"
    assert requests.get(f"{url}/v1/{bad['tuned_model']}", timeout=10).status_code == 404
    assert requests.get(f"{url}/v1/{bad['endpoint']}", timeout=10).status_code == 404
    assert requests.get(f"{url}/v1/{tuned['tuned_model']}", timeout=10).status_code == 200
    pointer2 = json.loads(gcs_client.bucket(BUCKET).blob(prefix[len(f"gs://{BUCKET}/"):] + "/champion.json")
                          .download_as_text())
    assert pointer2["tuned_model"] == tuned["tuned_model"]


def test_gemini_api_backend_end_to_end(pipeline, emulator, upload):
    prefix = f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    rows = [json.loads(x) for x in (DEMO / "seeds_numbers.jsonl").read_text().splitlines() if x.strip()]
    prompts = upload("".join(json.dumps({"prompt": r["text_input"], "reference": r["output"]}) + "\n" for r in rows))
    _, tis = run(pipeline, backend="gemini_api", base_model="models/gemini-1.5-flash-001-tuning",
                 training_data=str(DEMO / "seeds_numbers.jsonl"), eval_prompts=prompts, system_instruction=None,
                 epochs=20, batch_size=4, gcs_prefix=prefix, gate_min_score=0.0)
    tuned = xcom(tis, "tune")
    assert tuned["backend"] == "gemini_api" and tuned["tuned_model"].startswith("tunedModels/gt-")
    assert tuned["state"] == "JOB_STATE_SUCCEEDED"
    losses = [p[2] for p in tuned["loss_history"]]            # from the operation's snapshots
    assert len(losses) == tuned["total_steps"] and losses[-1] < losses[0]
    assert xcom(tis, "evaluate")["summary"]["challenger"]["n_answered"] == len(rows)


def test_vertex_batch_evaluation_mode(pipeline, emulator):
    """Evaluation through Vertex batch prediction jobs (deferred), results read from predictions.jsonl."""
    prefix = f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    _, tis = run(pipeline, training_data=str(DEMO / "train.jsonl"), gcs_prefix=prefix, eval_mode="batch",
                 compare_base_model=True)
    ev = xcom(tis, "evaluate")
    assert ev["mode"] == "batch" and set(ev["models"]) == {"challenger", "base"}
    assert ev["counts"]["challenger"] == {"answered": ev["n_prompts"], "error": 0, "missing": 0}
    assert ev["rows"] == ev["n_prompts"] == 120
    assert ev["summary"]["challenger"]["metrics"]["normalized_match"] > 0.7
    assert ev["summary"]["base"]["metrics"]["normalized_match"] < 0.2
    jobs = requests.get(f"{emulator.endpoints.url}/v1/projects/test-project/locations/us-central1/batchPredictionJobs",
                        timeout=10).json()["batchPredictionJobs"]
    mine = [j for j in jobs if j["outputConfig"]["gcsDestination"]["outputUriPrefix"].startswith(prefix)]
    assert len(mine) == 2 and all(j["state"] == "JOB_STATE_SUCCEEDED" for j in mine)


# ---------------------------------------------------------------------------------------------- continuous tuning
def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def demo(name: str) -> list[dict]:
    return [json.loads(x) for x in (DEMO / name).read_text().splitlines() if x.strip()]


def tuning_jobs(url: str) -> list[dict]:
    return requests.get(f"{url}/_emulator/resources", params={"kind": "tuningJobs"}, timeout=10).json()["tuningJobs"]


def pointer_of(gcs_client, prefix: str) -> dict:
    return json.loads(gcs_client.bucket(BUCKET).blob(prefix[len(f"gs://{BUCKET}/"):] + "/champion.json")
                      .download_as_text())


def test_continuous_tuning_from_the_champion(pipeline, emulator, gcs_client, tmp_path):
    """No champion: a clear error before any job exists. Then a champion from the base model; a run that continues
    from it promotes the next version of the same model; a losing continuation deletes only its own version."""
    from airflow.utils.state import DagRunState

    url, prefix = emulator.endpoints.url, f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    train = demo("train.jsonl")
    # a champion from a small first batch; then a larger new batch of the same task
    first, second = write_jsonl(tmp_path / "a.jsonl", train[:60]), write_jsonl(tmp_path / "b.jsonl", train[60:])
    shuffled = write_jsonl(tmp_path / "bad.jsonl", demo("train_shuffled.jsonl")[180:])
    conf = {**FAST, "gcs_prefix": prefix, "evaluate_checkpoints": False, "gate_min_score": 0.3}  # varying keys: always

    jobs_before = len(tuning_jobs(url))
    dr = pipeline.test(run_conf={**conf, "training_data": first, "continue_from": "champion", "epochs": 3,
                                 "gate_min_margin": 0.0, "gate_confidence": 0.95})
    tune_ti = next(ti for ti in dr.get_task_instances() if ti.task_id == "tune")
    assert dr.state == DagRunState.FAILED and tune_ti.state == "failed"
    assert len(tuning_jobs(url)) == jobs_before                      # nothing was paid for

    _, tis = run(pipeline, **conf, training_data=first, continue_from=None, epochs=3, gate_min_margin=0.0,
                 gate_confidence=0.95)
    champion = xcom(tis, "tune")
    assert tis["promote"].state == "success" and champion["tuned_model"].endswith("@1")
    model = champion["tuned_model"].split("@")[0]

    _, tis = run(pipeline, **conf, training_data=second, continue_from="champion", epochs=1, gate_min_margin=0.0,
                 gate_confidence=0.95)
    nxt = xcom(tis, "tune")
    assert nxt["tuned_model"] == f"{model}@2" and nxt["continued_from"].startswith(champion["tuned_model"])
    assert tis["promote"].state == "success", xcom(tis, "gate", "gate")
    assert pointer_of(gcs_client, prefix)["tuned_model"] == f"{model}@2"
    assert "champion" in requests.get(f"{url}/v1/{model}@2", timeout=10).json()["versionAliases"]

    _, tis = run(pipeline, **conf, training_data=shuffled, continue_from="champion", epochs=1, gate_min_margin=0.0,
                 gate_confidence=0.95)
    loser = xcom(tis, "tune")
    assert loser["tuned_model"] == f"{model}@3"
    assert tis["delete"].state == "success" and tis["promote"].state == "skipped", xcom(tis, "gate", "gate")
    versions = requests.get(f"{url}/v1/{model}:listVersions", timeout=10).json()["models"]
    assert [v["versionId"] for v in versions] == ["1", "2"]
    assert all(requests.get(f"{url}/v1/{c['endpoint']}", timeout=10).status_code == 404 for c in loser["checkpoints"])
    body = {"contents": [{"role": "user", "parts": [{"text": "My card was charged twice."}]}]}
    served = requests.post(f"{url}/v1/{nxt['endpoint']}:generateContent", json=body, timeout=10)
    assert served.status_code == 200 and pointer_of(gcs_client, prefix)["tuned_model"] == f"{model}@2"


def overfit_training_set(path) -> str:
    """The demo set plus 40 near-copies of evaluation prompts with wrong labels: epoch by epoch the learner
    memorises them, so the held-out score of later checkpoints falls (over-fitting to label noise)."""
    labels = ["account", "billing", "other", "refund", "shipping", "technical"]
    system = (DEMO / "system_instruction.txt").read_text().strip()
    twins = [{"systemInstruction": {"role": "system", "parts": [{"text": system}]},
              "contents": [{"role": "user", "parts": [{"text": p["prompt"] + " Thanks."}]},
                           {"role": "model", "parts": [{"text": labels[(labels.index(p["reference"]) + 1) % 6]}]}]}
             for p in demo("eval_prompts.jsonl")[:40]]
    return write_jsonl(path, demo("train.jsonl") + twins)


def test_the_best_checkpoint_is_gated_and_promoted_not_the_last(pipeline, emulator, gcs_client, tmp_path):
    url, prefix = emulator.endpoints.url, f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    _, tis = run(pipeline, gcs_prefix=prefix, training_data=overfit_training_set(tmp_path / "overfit.jsonl"),
                 epochs=3, evaluate_checkpoints=True, continue_from=None, gate_min_score=0.3, gate_min_margin=0.0,
                 gate_confidence=0.95)
    tuned, ev = xcom(tis, "tune"), xcom(tis, "evaluate")
    best, scores = ev["best_checkpoint"], ev["best_checkpoint"]["scores"]
    assert [s["checkpoint_id"] for s in scores] == ["1", "2", "3"] and len(tuned["checkpoints"]) == 3
    assert best["checkpoint_id"] != "3" and best["score"] == max(s["score"] for s in scores) > scores[-1]["score"]
    assert ev["summary"]["challenger"]["metrics"]["normalized_match"] == best["score"]
    assert tis["promote"].state == "success"
    model = requests.get(f"{url}/v1/{tuned['tuned_model']}", timeout=10).json()
    assert model["defaultCheckpointId"] == best["checkpoint_id"]
    pointer = pointer_of(gcs_client, prefix)
    assert (pointer["checkpoint_id"], pointer["endpoint"]) == (best["checkpoint_id"], best["endpoint"])
    html = gcs_client.bucket(BUCKET).blob(xcom(tis, "report")["report_uri"][len(f"gs://{BUCKET}/"):]).download_as_text()
    assert "Checkpoints" in html and f"checkpoint {best['checkpoint_id']}" in html


# ---------------------------------------------------------------------------------------------- model-based evaluation
REPLIES = ROOT / "include" / "demo" / "replies"


def test_pairwise_judge_promotes_the_good_replies_and_deletes_the_corrupted(pipeline, emulator, gcs_client,
                                                                           tmp_path):
    """The generative demo task through the pipeline with the autorater: a first champion from 40 examples, the
    good set beats it in the order-swapped pairwise judging and is promoted, the corrupted set loses and is
    deleted. Judge results are in the rows, the summary, gate.json and the report."""
    prefix = f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    few = tmp_path / "few.jsonl"
    few.write_text("".join((REPLIES / "train.jsonl").read_text().splitlines(keepends=True)[:40]))
    conf = {"gcs_prefix": prefix, "eval_prompts": str(REPLIES / "eval_prompts.jsonl"), "judge": "both",
            "system_instruction": str(REPLIES / "system_instruction.txt"), "gate_primary_metric": "rouge_l_f1",
            "gate_min_score": 0.1, "gate_min_margin": 0.0, "gate_confidence": 0.95, "evaluate_checkpoints": False,
            "continue_from": None}
    _, tis = run(pipeline, **conf, training_data=str(few), epochs=1)
    assert tis["promote"].state == "success"
    first_gate = xcom(tis, "gate", "gate")
    assert next(r for r in first_gate["rules"] if r["name"] == "pairwise_win_rate")["verdict"] == "skipped"

    _, tis = run(pipeline, **conf, training_data=str(REPLIES / "train.jsonl"), epochs=3)
    gate, ev = xcom(tis, "gate", "gate"), xcom(tis, "evaluate")
    rule = next(r for r in gate["rules"] if r["name"] == "pairwise_win_rate")
    pw = ev["judge"]["pairwise"]
    assert rule["verdict"] == "pass" and rule["details"]["wins"] == pw["wins"] > pw["losses"] == rule["details"][
        "losses"]
    assert pw["wins"] + pw["losses"] + pw["ties"] + pw["errors"] == ev["n_prompts"]
    assert ev["summary"]["challenger"]["metrics"]["judge_score"] > ev["summary"]["champion"]["metrics"]["judge_score"]
    assert ev["tokens"]["challenger"]["total"] > 0 and tis["promote"].state == "success"
    assert ev["judge"]["examples"] and ev["judge"]["examples"][0]["pairwise"]["explanations"][0]
    rows = [json.loads(x) for x in gcs_client.bucket(BUCKET).blob(ev["results_uri"][len(f"gs://{BUCKET}/"):])
            .download_as_text().splitlines()]
    assert all(r["pairwise"]["outcome"] in ("win", "loss", "tie", "error") for r in rows)
    html = gcs_client.bucket(BUCKET).blob(xcom(tis, "report")["report_uri"][len(f"gs://{BUCKET}/"):]) \
        .download_as_text()
    assert "Model-based evaluation" in html and "Sign test p-value" in html

    _, tis = run(pipeline, **conf, training_data=str(REPLIES / "train_corrupted.jsonl"), epochs=3)
    rule = next(r for r in xcom(tis, "gate", "gate")["rules"] if r["name"] == "pairwise_win_rate")
    assert rule["verdict"] == "fail" and tis["delete"].state == "success" and tis["promote"].state == "skipped"


def test_a_generation_outage_is_no_decision_and_keeps_the_candidate(pipeline, emulator, gcs_client):
    """Every generateContent call 503 (the tuned model's endpoint is down): the gate says no decision, not delete.
    The run fails with that reason, approval and promote never start, the candidate is kept and the report says
    why."""
    from airflow.utils.state import DagRunState

    prefix = f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    emulator.emulator.faults.add({"kind": "status", "status": 503, "path": r":generateContent$", "retry_after": 0})
    dr = pipeline.test(run_conf={**FAST, "training_data": str(DEMO / "train.jsonl"), "gcs_prefix": prefix})
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    st = {t: ti.state for t, ti in tis.items()}
    assert dr.state == DagRunState.FAILED, st
    assert st["evaluate"] == "success" and st["gate"] == "failed", st
    assert st["approval"] == "upstream_failed" and st["promote"] == "upstream_failed" and tis["promote"].try_number == 0
    assert st["delete"] == "upstream_failed" and st["cleanup_on_failure"] == "skipped" and st["report"] == "success"
    gate = xcom(tis, "gate", "gate")
    assert gate["decision"] == "no_decision" and "max_error_rate" in gate["summary"]
    key = prefix[len(f"gs://{BUCKET}/"):] + "/runs/" + dr.run_id.replace(":", "-").replace("+", "-")
    verdict = json.loads(gcs_client.bucket(BUCKET).blob(key + "/verdict.json").download_as_text())
    tuned = xcom(tis, "tune")
    assert verdict["decision"] == "no_decision" and verdict["candidate"]["tuned_model"] == tuned["tuned_model"]
    assert requests.get(f"{emulator.endpoints.url}/v1/{tuned['tuned_model']}", timeout=10).status_code == 200
    report = gcs_client.bucket(BUCKET).blob(key + "/report/index.html").download_as_text()
    assert "NO DECISION" in report and "max_error_rate" in report
    assert gcs_client.bucket(BUCKET).blob(prefix[len(f"gs://{BUCKET}/"):] + "/champion.json").exists() is False


@pytest.mark.parametrize("crashed", ["evaluate", "gate"])
def test_a_crash_before_the_verdict_never_starts_approval_or_promote(pipeline, emulator, gcs_client, monkeypatch,
                                                                      crashed):
    """The reproduction of the issue, in process: a crashed evaluate or gate leaves approval and promote unrun
    (no try), nothing is deleted and nobody becomes champion. (The real scheduler's matrix:
    test_gate_faults_services.py.)"""
    from airflow.sdk.exceptions import AirflowFailException
    from airflow.utils.state import DagRunState

    from gemini_tuning.operators.evaluate import GeminiEvaluateOperator, GeminiGateOperator

    cls = {"evaluate": GeminiEvaluateOperator, "gate": GeminiGateOperator}[crashed]

    def crash(self, context, *a, **k):
        raise AirflowFailException(f"injected crash in {crashed}")   # no retry: the test stays fast

    monkeypatch.setattr(cls, "execute", crash)
    prefix = f"{PREFIX_ROOT}/{uuid.uuid4().hex[:8]}"
    dr = pipeline.test(run_conf={**FAST, "training_data": str(DEMO / "train.jsonl"), "gcs_prefix": prefix})
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    st = {t: ti.state for t, ti in tis.items()}
    assert dr.state == DagRunState.FAILED, st
    assert st[crashed] == "failed", st
    for task_id in ("approval", "promote", "delete", "delete_rejected"):
        assert st[task_id] == "upstream_failed" and tis[task_id].try_number == 0, (task_id, st)
    assert st["cleanup_on_failure"] == "skipped" and st["report"] == "success", st
    tuned = xcom(tis, "tune")
    assert requests.get(f"{emulator.endpoints.url}/v1/{tuned['tuned_model']}", timeout=10).status_code == 200
    assert not gcs_client.bucket(BUCKET).blob(prefix[len(f"gs://{BUCKET}/"):] + "/champion.json").exists()
    report = xcom(tis, "report")
    assert report["decision"] == "no verdict"


@pytest.mark.parametrize(("field", "value"), [("location", "x@attacker.example/"), ("location", "attacker.example#"),
                                              ("location", "us-central1.attacker.example"),
                                              ("project_id", "p/../../x"), ("project_id", "evil.example.com#")])
def test_the_trigger_form_refuses_a_location_or_project_that_could_build_a_host(pipeline, field, value):
    """The Params carry core.names' patterns: a run with such a value is refused before it exists."""
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="does not match"):
        pipeline.params.get_param(field).resolve(value)
    assert pipeline.params.get_param("location").resolve("europe-west4") == "europe-west4"
    assert pipeline.params.get_param("project_id").resolve("my-project-1") == "my-project-1"
