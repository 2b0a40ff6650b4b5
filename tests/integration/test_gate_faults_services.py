"""Issue "Only a model that passed the gate is ever promoted": the fault matrix on a REAL scheduler, triggerer,
dag-processor and api-server (LocalExecutor), against the emulator in its own process.

One run per fault, all in parallel, each with its own champion pointer: a crash injected at prepare, evaluate,
gate, review_report or approval (``fault_dags/pipeline_with_faults.py``), the service failing the tuning job, a
judge outage (every ``evaluateInstances`` call 503), a registry outage during promote (every call on the
candidate's model 503), an approval rejected and one timed out, and a run with no fault. For each: the final task
states, that ``promote`` started no try unless the verdict said promote, the pointer, the registry's aliases and
labels, and which models exist afterwards.

Then the race: the pre-fix wiring (``gemini_tuning_pipeline_leaky``: approval ``none_skipped``, promote
``all_done``, clean-up ``one_failed``), a gate that crashes, promote and clean-up both runnable: 20 repetitions
(clearing the gate and what follows it), never a champion change.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from harness.paths import DEMO, FAULT_DAGS

DAG, LEAKY = "gemini_tuning_pipeline", "gemini_tuning_pipeline_leaky"
FAST = {"poll_policy": {"initial_seconds": 1, "min_seconds": 1, "max_seconds": 3, "fallback_max_seconds": 2},
        "eval_rpm": 12000, "eval_concurrency": 32}
RACE_REPETITIONS = 20
#: tasks that act on a candidate only with a verdict; "never started" is try_number 0
NEVER_STARTED = ("upstream_failed", "skipped", "removed", None)

pytestmark = [pytest.mark.services, pytest.mark.timeout(1800), pytest.mark.full]


def demo(name: str, n: int) -> list[dict]:
    return [json.loads(x) for x in (DEMO / name).read_text().splitlines() if x.strip()][:n]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from harness.ui_stack import ui_stack, upload

    tmp = tmp_path_factory.mktemp("gate-faults")
    faults = tmp / "faults"
    faults.mkdir()
    with ui_stack(tmp, time_scale=0.01, dag_files=(FAULT_DAGS / "pipeline_with_faults.py",),
                  dag_ids=(DAG, LEAKY),
                  extra_env={"GEMINI_TUNING_MAX_ACTIVE_RUNS": "16", "GEMINI_TUNING_FAULTS_DIR": str(faults)}
                  ) as (af, info):
        train = upload(info, "faults/train.jsonl",
                       "".join(json.dumps(r) + "\n" for r in demo("train.jsonl", 24)).encode())
        prompts = tmp / "prompts.jsonl"
        prompts.write_text("".join(json.dumps(r) + "\n" for r in demo("eval_prompts.jsonl", 12)))
        yield af, info, faults, {**FAST, "training_data": train, "eval_prompts": str(prompts), "epochs": 1,
                                 "gate_min_prompts": 5, "gate_min_score": 0.0}


# ------------------------------------------------------------------------------------------------ helpers
def gcs_object(info: dict, uri: str) -> dict | None:
    bucket, name = uri[5:].split("/", 1)
    r = requests.get(f"{info['gcs_url']}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", params={"alt": "media"},
                     timeout=10)
    return None if r.status_code == 404 else r.json()


def run_prefix(prefix: str, run_id: str) -> str:
    return f"{prefix}/runs/{run_id.replace(':', '-').replace('+', '-')}"


def run_dir(run_id: str) -> str:
    """The marker folder of a run: as ``fault_dags/pipeline_with_faults.run_dir`` names it (not imported here: that
    module patches the operator classes of the process that imports it)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def crash(faults: Path, run_id: str, task_id: str) -> None:
    (faults / run_dir(run_id)).mkdir(parents=True, exist_ok=True)
    (faults / run_dir(run_id) / task_id).write_text("fault matrix")


def trigger_with_crash(af, faults: Path, conf: dict, task_id: str | None, dag_id: str = DAG,
                       label: str = "") -> str:
    """A run whose ``task_id`` crashes: the marker exists before the run does (its id is chosen here)."""
    run_id = f"fault__{label or task_id or 'none'}__{uuid.uuid4().hex[:8]}"
    if task_id:
        crash(faults, run_id, task_id)
    return af.trigger_dag(dag_id, conf, run_id=run_id)


def emulator_post(info: dict, what: str, body) -> dict:
    r = requests.post(f"{info['url']}/_emulator/{what}", json=body, timeout=10)
    r.raise_for_status()
    return r.json()


def tis(af, run_id: str, dag_id: str = DAG) -> dict:
    return {ti["task_id"]: ti for ti in af.task_instances(dag_id, run_id)}


def states(ti_map: dict) -> dict:
    return {k: v["state"] for k, v in ti_map.items()}


def model_status(info: dict, name: str | None) -> int | None:
    return None if not name else requests.get(f"{info['url']}/v1/{name}", timeout=10).status_code


def hitl(af, run_id: str, choice: str) -> None:
    path = f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/approval/-1/hitlDetails"
    af.request("PATCH", path, json={"chosen_options": [choice]}, expect=(200, 409))


def wait_finished(af, run_id: str, dag_id: str = DAG, answer: str | None = None, timeout: float = 600) -> str:
    """Wait for the run to end; ``answer``: the approver's answer whenever the approval asks (Airflow 3.3.2 can ask
    twice under load: README "Known issues")."""
    deadline = time.monotonic() + timeout
    while (state := af.dag_run(dag_id, run_id)["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, states(tis(af, run_id, dag_id))
        if answer and af.task_instance(dag_id, run_id, "approval")["state"] == "awaiting_input":
            hitl(af, run_id, answer)
        time.sleep(1)
    return state


def assert_promote_never_started(ti_map: dict, why: str) -> None:
    p = ti_map["promote"]
    assert p["state"] in NEVER_STARTED and p["try_number"] == 0, f"{why}: promote {p['state']} try {p['try_number']}"
    a = ti_map["approval"]
    assert a["state"] in NEVER_STARTED and a["try_number"] == 0, f"{why}: approval {a['state']} try {a['try_number']}"


# ------------------------------------------------------------------------------------------------ the matrix
def test_fault_matrix_only_a_promote_verdict_reaches_production(stack):
    af, info, faults, base = stack
    t0 = time.monotonic()
    prefixes, runs = {}, {}

    def start(case: str, task_id: str | None = None, **conf):
        prefixes[case] = f"gs://gemini-tuning-ui/faults/{case}-{uuid.uuid4().hex[:6]}"
        runs[case] = trigger_with_crash(af, faults, {**base, "gcs_prefix": prefixes[case], **conf}, task_id,
                                        label=case)

    # the service fails the tuning job (every try: the plan matches this run's display name)
    emulator_post(info, "job-failures", {"match": "^fault-tune$", "count": 10, "at_fraction": 0.3,
                                         "message": "Internal error encountered while tuning (fault matrix)."})
    # the judge is down: every evaluateInstances call answers 503 (Retry-After keeps the retries short)
    emulator_post(info, "faults", {"kind": "status", "status": 503, "path": r":evaluateInstances$",
                                   "retry_after": 0.05})
    start("none")
    start("prepare", "prepare_dataset")
    start("tune", display_name="fault-tune")
    start("evaluate", "evaluate")
    start("gate", "gate")
    start("review_report", "review_report")
    start("approval", "approval")
    start("judge_outage", judge="pointwise", gate_primary_metric="judge_score")
    start("approval_reject", require_approval=True)
    start("approval_timeout", require_approval=True, approval_timeout_hours=0.004)
    start("promote_registry_503", require_approval=True)

    # the registry outage: once this run's candidate exists and waits for approval, every call on its model 503s;
    # then the approval lets promote run into it
    run = runs["promote_registry_503"]
    af.wait_ti_state(DAG, run, "approval", "awaiting_input", timeout=600)
    outage_model = af.xcom(DAG, run, "tune")["tuned_model"]
    model_path = outage_model.split("@")[0].split("/models/")[1]
    emulator_post(info, "faults", {"kind": "status", "status": 503, "path": rf"/models/{model_path}(@|:|$)",
                                   "retry_after": 0.05})
    hitl(af, run, "Approve")

    answers = {"approval_reject": "Reject", "promote_registry_503": "Approve"}
    final = {case: wait_finished(af, run_id, answer=answers.get(case)) for case, run_id in runs.items()}
    elapsed = round(time.monotonic() - t0, 1)

    def facts(case: str) -> dict:
        run_id = runs[case]
        ti_map = tis(af, run_id)
        tuned = af.xcom(DAG, run_id, "tune") if ti_map["tune"]["state"] == "success" else None
        verdict = gcs_object(info, run_prefix(prefixes[case], run_id) + "/verdict.json")
        return {"run": final[case], "tis": ti_map, "states": states(ti_map), "tuned": tuned, "verdict": verdict,
                "pointer": gcs_object(info, prefixes[case] + "/champion.json"),
                "model": model_status(info, tuned and tuned["tuned_model"])}

    table = {case: facts(case) for case in runs}
    print(f"\nfault matrix: {len(runs)} runs in {elapsed} s")
    for case, f in table.items():
        st = f["states"]
        print(f"  {case:22} run={f['run']:7} verdict={(f['verdict'] or {}).get('decision')!s:11} "
              f"promote={st['promote']!s:15} cleanup={st['cleanup_on_failure']!s:8} report={st['report']!s:8} "
              f"model={f['model']} champion={'yes' if f['pointer'] else 'no'}")

    # --- no fault: promoted, the alias and labels on the candidate, the verdict names it
    f = table["none"]
    assert f["run"] == "success" and f["states"]["promote"] == "success", f["states"]
    assert f["verdict"]["decision"] == "promote" and f["verdict"]["candidate"]["tuned_model"] == \
        f["tuned"]["tuned_model"]
    assert f["pointer"]["tuned_model"] == f["tuned"]["tuned_model"]
    assert f["pointer"]["verdict_id"] == f["verdict"]["verdict_id"]
    champ = requests.get(f"{info['url']}/v1/{f['tuned']['tuned_model'].split('@')[0]}@champion", timeout=10).json()
    assert "champion" in champ["versionAliases"] and champ["labels"]["gemini-tuning-role"] == "champion"

    # --- failures before the verdict: the run fails, approval and promote never start, nobody becomes champion
    for case, failed_task in (("prepare", "prepare_dataset"), ("tune", "tune"), ("evaluate", "evaluate"),
                              ("gate", "gate")):
        f = table[case]
        assert f["run"] == "failed", (case, f["states"])
        assert f["states"][failed_task] == "failed", (case, f["states"])
        assert_promote_never_started(f["tis"], case)
        assert f["verdict"] is None and f["pointer"] is None, case
        assert f["states"]["delete"] in NEVER_STARTED and f["states"]["cleanup_on_failure"] == "skipped", case
        assert f["states"]["report"] == "success", case         # a report for every run, saying what happened
    assert table["prepare"]["tuned"] is None and table["tune"]["tuned"] is None
    tune_error = af.ti_log(DAG, runs["tune"], "tune", try_number=table["tune"]["tis"]["tune"]["try_number"])
    assert "fault matrix" in tune_error
    for case in ("evaluate", "gate"):            # a paid, unjudged candidate is kept for a rerun (clear evaluate)
        assert table[case]["model"] == 200, case

    # --- a judge outage: no decision; the candidate is kept; the run failed with that reason
    f = table["judge_outage"]
    assert f["run"] == "failed" and f["states"]["gate"] == "failed", f["states"]
    assert f["verdict"]["decision"] == "no_decision" and "judge_error_rate" in f["verdict"]["summary"]
    assert_promote_never_started(f["tis"], "judge outage")
    assert f["states"]["delete"] in NEVER_STARTED and f["model"] == 200 and f["pointer"] is None
    gate_log = af.ti_log(DAG, runs["judge_outage"], "gate", try_number=f["tis"]["gate"]["try_number"])
    assert "no decision: not enough evidence" in gate_log and "is kept" in gate_log
    report = requests.get(f"{info['gcs_url']}/storage/v1/b/gemini-tuning-ui/o/" + quote(
        run_prefix(prefixes["judge_outage"], runs["judge_outage"])[len("gs://gemini-tuning-ui/"):]
        + "/report/index.html", safe=""), params={"alt": "media"}, timeout=10).text
    assert "no_decision" in report.replace("no decision", "no_decision") and "judge_error_rate" in report

    # --- a failed review report still reaches the approval, which follows the promote verdict
    f = table["review_report"]
    assert f["run"] == "failed" and f["states"]["review_report"] == "failed", f["states"]
    assert f["states"]["approval"] == "success", f["states"]
    assert f["states"]["promote"] == "success" and f["pointer"]["tuned_model"] == f["tuned"]["tuned_model"]

    # --- the approval crashes: not promoted, not deleted (the verdict said promote and nobody rejected it)
    f = table["approval"]
    assert f["run"] == "failed" and f["states"]["approval"] == "failed", f["states"]
    assert f["tis"]["promote"]["try_number"] == 0 and f["states"]["delete_rejected"] in NEVER_STARTED
    assert f["model"] == 200 and f["pointer"] is None and f["states"]["cleanup_on_failure"] == "skipped"

    # --- rejected, and timed out (the default answer is Reject): deleted by delete_rejected, promote skipped
    for case in ("approval_reject", "approval_timeout"):
        f = table[case]
        assert f["run"] == "success", (case, f["states"])
        assert (f["states"]["promote"], f["states"]["delete_rejected"]) == ("skipped", "success"), case
        assert f["tis"]["promote"]["try_number"] == 0 and f["model"] == 404 and f["pointer"] is None, case

    # --- the registry is down while promoting: promote fails, nothing moved, the candidate is kept
    f = table["promote_registry_503"]
    assert f["run"] == "failed" and f["states"]["promote"] == "failed", f["states"]
    assert f["pointer"] is None and f["states"]["cleanup_on_failure"] == "skipped"
    requests.delete(f"{info['url']}/_emulator/faults", timeout=10).raise_for_status()
    model = requests.get(f"{info['url']}/v1/{outage_model}", timeout=10).json()
    assert "champion" not in model.get("versionAliases", []) and "gemini-tuning-role" not in model.get("labels", {})

    # every run: promote started a try only where a promote verdict exists
    for case, f in table.items():
        if f["tis"]["promote"]["try_number"] > 0:
            assert (f["verdict"] or {}).get("decision") == "promote", (case, f["states"])


# ------------------------------------------------------------------------------------------------ the race
def test_race_gate_crash_with_promote_and_cleanup_runnable_never_changes_the_champion(stack):
    """The pre-fix wiring: after a crashed gate, promote (all_done) and clean-up (one_failed) both run, side by side.
    Only the verdict check stands between them and production: 20 repetitions, the champion never moves."""
    af, info, faults, base = stack
    prefix = f"gs://gemini-tuning-ui/faults/race-{uuid.uuid4().hex[:6]}"
    first = af.trigger_dag(DAG, {**base, "gcs_prefix": prefix})
    assert wait_finished(af, first) == "success"
    champion = gcs_object(info, prefix + "/champion.json")
    assert champion and champion["run_id"] == first

    run_id = trigger_with_crash(af, faults, {**base, "gcs_prefix": prefix}, "gate", dag_id=LEAKY)
    t0 = time.monotonic()
    seen = []
    for rep in range(RACE_REPETITIONS):
        if rep:
            tries = af.task_instance(LEAKY, run_id, "gate")["try_number"]
            af.post(f"/api/v2/dags/{LEAKY}/clearTaskInstances",
                    {"dag_run_id": run_id, "task_ids": ["gate", "review_report", "approval", "promote", "delete",
                                                        "delete_rejected", "cleanup_on_failure"],
                     "include_downstream": False, "only_failed": False, "reset_dag_runs": True, "dry_run": False})
            deadline = time.monotonic() + 600          # the event: the cleared gate has started its next try
            while af.task_instance(LEAKY, run_id, "gate")["try_number"] <= tries:
                assert time.monotonic() < deadline, f"the gate did not start again: {states(tis(af, run_id, LEAKY))}"
                time.sleep(0.5)
        wait_finished(af, run_id, dag_id=LEAKY)   # its state: the leaky wiring's (clean-up, skipped, is its leaf)
        ti_map = tis(af, run_id, LEAKY)
        seen.append((ti_map["promote"]["state"], ti_map["cleanup_on_failure"]["state"]))
        assert ti_map["gate"]["state"] == "failed"
        assert ti_map["promote"]["state"] == "failed", states(ti_map)   # it ran, and refused
        assert ti_map["cleanup_on_failure"]["state"] == "skipped", states(ti_map)
        assert gcs_object(info, prefix + "/champion.json") == champion, f"repetition {rep}: the champion moved"
    candidate = af.xcom(LEAKY, run_id, "tune")["tuned_model"]
    log = af.ti_log(LEAKY, run_id, "promote", try_number=tis(af, run_id, LEAKY)["promote"]["try_number"])
    assert "not promoting: no verdict record at" in log
    assert model_status(info, candidate) == 200                    # kept: nobody judged it
    model = requests.get(f"{info['url']}/v1/{candidate}", timeout=10).json()
    assert "champion" not in model.get("versionAliases", [])
    print(f"\nrace: {RACE_REPETITIONS} repetitions in {time.monotonic() - t0:.0f} s; (promote, cleanup) states: "
          f"{sorted(set(seen))}")
