#!/usr/bin/env python
"""UI benchmark: the "Gemini tuning" page's data endpoint on a realistic metadata DB, and the status requests the
tuning service sees while people watch running jobs.

Usage: .venv/bin/python scripts/bench_ui.py [--requests 20] [--viewers 10] [--duration 70] [--time-scale 0.25]
                                           [--keep]

Goals (issue):
  (1) ``GET /gemini-tuning/api/overview`` with 200 runs of 20 pipelines answers in <= 200 ms: median of
      ``--requests`` sequential requests after one warm-up, printed with the load average (the machine is shared;
      timings are never asserted by unit tests, house rule).
  (2) the tuning service sees <= 1 status request per job per 30 s (``ui_status_ttl_seconds``) under
      ``--viewers`` concurrent viewers.

What runs: ``python -m emulator`` in its own session / process group (Vertex AI + GCS), and ONLY the Airflow
api-server (``tests/harness/airflow_services.py``, SQLite, SimpleAuthManager admin/admin, the plugin from ROOT/plugins,
the emulator env as in ``tests/harness/ui_stack.py``) -- no dag-processor, so nothing parses (or deactivates)
the DAGs this script writes straight into the metadata DB, and no scheduler / triggerer, so the deferred tune
tasks stay deferred. After ``airflow db migrate`` a child process with the services' environment (``--populate``)
writes, with the Airflow ORM tables:

* 20 ``DagModel`` rows (bundle ``dags-folder``, ``is_stale`` False: SimpleAuthManager's
  ``get_authorized_dag_ids`` reads them), one pipeline each, with its own champion pointer
  ``gs://<bucket>/bench/p<k>/champion.json`` -- written to the GCS emulator with the real ``build_pointer`` (its
  ``previous`` one level deep);
* 10 ``DagRun`` rows per DAG (200), each with the 8 task instances of the pipeline DAG (prepare_dataset, tune,
  evaluate, gate, promote, delete, cleanup_on_failure, report -- ``operator`` = this package's class names) and
  the XComs the operators push: the prepare summary (real ``prepare_dataset`` stats of include/demo/train.jsonl),
  the ``gemini_tuning_job`` pointer and the tune summary (``JobStatus.summary()``, 150 loss points, 3
  checkpoints), the evaluation manifest (the real ``write_results`` over the 120 demo prompts and synthetic
  answers, results.jsonl written to GCS; 10 variants shared by the runs, each run with its own pipeline's
  ``champion_pointer_uri`` / champion), the gate decision (``decide(...).to_dict()``, key ``gate``), the promote
  or delete result and the report result. One run per DAG failed in tune (the rest of it upstream_failed).
* ``--running`` (5) of the newest runs are ``running`` with tune ``deferred`` and a ``gemini_tuning_job`` XCom
  naming a REAL tuning job created in the emulator (360-example file, 3 epochs = 135 steps; with
  ``--time-scale 0.25`` it is PENDING for 30 s and RUNNING for ~8.5 min, so it runs during the whole benchmark
  and the page takes the live path through ``ui/status_cache.py``).

Measure (2): ``--viewers`` threads for ``--duration`` s, each every ~1 s fetching the overview JSON and the HTML
run page of one running run (rotating over them), like auto-refreshing browser tabs. Then the emulator's request
log (``GET /_emulator/requests?path=tuningJobs/&method=GET``; cleared just before (1)'s warm-up) gives the status
requests per job. The window W runs from that clear to the last viewer's end (it includes (1), whose warm-up
makes the first request of every job). "<= 1 per 30 s, the first included" allows at most floor(W / 30) + 1
requests per job (a refresh only when the cached answer is >= 30 s old). The goal is met iff for every job
count <= floor(W / 30) + 1 AND every gap between two requests of one job is >= 30 s - 0.5 s (slack for the
request's own latency between the cache's clock and the emulator's log). Stricter than the issue's
ceil(W / 30) + 1, which the table prints too. A job that has finished is never asked again
(``--finished-jobs N`` makes N of the running runs point at a short job that has already SUCCEEDED: exactly 1
request expected).

Known deviation (reported, plugins/gemini_tuning/ui/views.py ``pipeline_key``): a run without a finished
evaluation (still running, or failed before it) has no ``champion_pointer_uri`` in its XComs, so it is grouped
under a ``dag:<dag_id>`` "pipeline" of its own instead of its pointer's (here: 20 pointer pipelines + 20 such
groups holding the 5 running and the 20 failed runs). The check therefore asserts 200 runs, 20 pointer pipelines
each with its champion, and that only unevaluated runs are outside them; it prints the extra groups.

Besides the wall times it prints the api-server's CPU time per overview request (robust on a shared machine) and,
under the viewers, its CPU seconds per second (one uvicorn worker: ~1.0 means it is saturated).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
from bench_common import code_state, load, offline_env, table  # noqa: E402

PROJECT, LOCATION, BUCKET = "bench-project", "us-central1", "gemini-tuning-bench"
# --pipelines (the populating child process reads it from the environment)
N_PIPELINES, RUNS_PER_PIPELINE = int(os.environ.get("BENCH_UI_PIPELINES", "20")), 10
TTL = 30.0              # ui_status_ttl_seconds (the default)
GAP_SLACK = 0.5
OVERVIEW = "/gemini-tuning/api/overview"
TASKS = (("prepare_dataset", "PrepareTuningDatasetOperator"), ("tune", "GeminiTuningOperator"),
         ("evaluate", "GeminiEvaluateOperator"), ("gate", "GeminiGateOperator"),
         ("promote", "GeminiPromoteOperator"), ("delete", "GeminiDeleteTunedModelOperator"),
         ("cleanup_on_failure", "GeminiDeleteTunedModelOperator"), ("report", "GeminiTuningReportOperator"))
N_VARIANTS = 10
FAILED_RUN_INDEX = 6    # per DAG, this run (0 = newest) failed in tune


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


# ================================================================================================ emulator
class Emulator:
    """``python -m emulator`` in its own session and process group, on free ports; stopped by group."""

    def __init__(self, tmp: Path, time_scale: float):
        import requests

        self.out = tmp / "emulator.out"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--data-dir", str(tmp / "emu"),
             "--default-bucket", BUCKET, "--time-scale", str(time_scale), "--log-level", "WARNING"],
            cwd=str(ROOT), stdout=open(self.out, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.pgid = self.proc.pid
        deadline = time.time() + 60
        while True:
            lines = [x for x in self.out.read_text().splitlines() if x.startswith("{")]
            if lines:
                info = json.loads(lines[0])
                self.url, self.gcs_url = info["url"], info["gcs_url"]
                break
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"emulator did not start: {self.out.read_text()}")
            time.sleep(0.2)
        self.http = requests.Session()

    def upload(self, name: str, data: bytes) -> str:
        self.http.post(f"{self.gcs_url}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name},
                       data=data, timeout=60).raise_for_status()
        return f"gs://{BUCKET}/{name}"

    def create_job(self, train_uri: str, display: str, epochs: int) -> dict:
        r = self.http.post(f"{self.url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs", timeout=30,
                           json={"baseModel": "gemini-2.5-flash", "tunedModelDisplayName": display,
                                 "supervisedTuningSpec": {"trainingDatasetUri": train_uri,
                                                          "hyperParameters": {"epochCount": epochs}}})
        r.raise_for_status()
        return r.json()

    def job(self, name: str) -> dict:
        return self.http.get(f"{self.url}/v1/{name}", timeout=30).json()

    def admin(self, method: str, what: str, **kw):
        r = self.http.request(method, f"{self.url}/_emulator/{what}", timeout=60, **kw)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
                if not _group_alive(self.pgid):
                    return


def _group_alive(pgid: int) -> list[int]:
    from harness.airflow_services import group_pids

    return group_pids(pgid)


# ================================================================================================ populate
def populate(spec: dict) -> dict:
    """Runs in a child process with the services' environment: GCS objects + metadata DB rows (see docstring)."""
    offline_env(pycache=False)
    import io
    import random
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy import insert, select

    from gemini_tuning.backends import gcs
    from gemini_tuning.backends.vertex import VertexTuningBackend
    from gemini_tuning.core.dataset import DatasetOptions, iter_lines, prepare_dataset
    from gemini_tuning.core.gate import GateConfig, decide
    from gemini_tuning.core.generation import GenerationSettings
    from gemini_tuning.core.metrics import Answer, score_all
    from gemini_tuning.core.promptset import parse_prompt_set
    from gemini_tuning.core.states import FAILED, SUCCEEDED, Checkpoint, JobStatus, LossPoint
    from gemini_tuning.hooks import GeminiTuningHook
    from gemini_tuning.services.champion import build_pointer
    from gemini_tuning.services.eval_engine import Target
    from gemini_tuning.services.eval_results import EvaluationPlan, ModelTarget, write_results

    t0 = time.perf_counter()
    rng = random.Random(7)
    storage = GeminiTuningHook(gcp_conn_id="google_cloud_default").storage()
    where = SimpleNamespace(project=PROJECT, location=LOCATION)
    console = lambda name: VertexTuningBackend.console_url(where, name)
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    now = datetime.now(UTC).replace(microsecond=0)
    iso = lambda d: d.isoformat().replace("+00:00", "Z")
    counter = iter(range(10**6))

    def new_id() -> str:
        return str(4_000_000_000_000_000_000 + rng.randrange(10**15) * 1000 + next(counter) % 1000)

    # ---- the prepare summary: real stats of the demo training file
    demo = ROOT / "include" / "demo"
    prompts = parse_prompt_set(iter_lines(io.BytesIO((demo / "eval_prompts.jsonl").read_bytes())),
                               source_name="eval_prompts.jsonl")
    res = prepare_dataset(iter_lines(io.BytesIO((demo / "train.jsonl").read_bytes())), source_name="train.jsonl",
                          options=DatasetOptions(epochs=3), train_sink=io.BytesIO(),
                          eval_prompts=[p.prompt for p in prompts])
    by_rule = dict(Counter(w.rule for w in res.warnings))

    def prepare_summary(k: int) -> dict:
        uri = f"gs://{BUCKET}/bench/p{k}/datasets/{res.train_sha256[:16]}/train.jsonl"
        return {"train_uri": uri, "validation_uri": None, "train_sha256": res.train_sha256,
                "validation_sha256": None, "train_count": res.train_count, "validation_count": 0,
                "dropped_duplicates": res.dropped_duplicates, "created": {"train": False, "validation": None},
                "stats": res.stats, "warnings": {"count": len(res.warnings), "by_rule": by_rule,
                                                 "first": [str(w) for w in res.warnings[:20]]},
                "formats": dict(res.formats), "target": "vertex"}

    # ---- evaluation variants: the real write_results (results.jsonl + summary.json in GCS) and gate
    labels = sorted({p.reference for p in prompts})

    def answers(acc: float, r: random.Random) -> dict:
        out = {}
        for p in prompts:
            text = p.reference if r.random() < acc else r.choice([x for x in labels if x != p.reference] or labels)
            out[p.id] = Answer(p.id, text, latency_s=round(r.uniform(0.25, 1.4), 3))
        return out

    gate_cfg = GateConfig(thresholds={"normalized_match": 0.7}, primary_metric="normalized_match")
    variants = []
    for j in range(N_VARIANTS):
        r = random.Random(100 + j)
        ans = {"challenger": answers(0.70 + 0.025 * j, r), "champion": answers(0.80, r)}
        plan = EvaluationPlan(prompts, [ModelTarget(Target("challenger", "vertex", f"{parent}/endpoints/1{j}"),
                                                    f"{parent}/models/1{j}@1"),
                                        ModelTarget(Target("champion", "vertex", f"{parent}/endpoints/9{j}"),
                                                    f"{parent}/models/9{j}@1")],
                              GenerationSettings(), None, 0, pointer_uri=None)
        manifest = write_results(storage, plan, ans, f"gs://{BUCKET}/bench/evals/v{j}", "online")
        gate = decide(score_all(prompts, ans["challenger"]), score_all(prompts, ans["champion"]), gate_cfg,
                      challenger_summary=manifest["summary"]["challenger"]).to_dict()
        variants.append((manifest, gate))

    def tune_summary(job: str, model_id: str, start, k: int, failed: bool) -> dict:
        steps = 150
        loss = tuple(LossPoint(s, 1 + (s - 1) // 50, round(2.4 * math.exp(-s / 40) + 0.3 + rng.uniform(-.05, .05), 4))
                     for s in range(1, steps + 1))
        val = tuple(LossPoint(50 * e, e, round(2.4 * math.exp(-50 * e / 40) + 0.38, 4)) for e in (1, 2, 3))
        model, ep = f"{parent}/models/{model_id}@1", f"{parent}/endpoints/{model_id}"
        return JobStatus(
            backend="vertex", name=job, state=FAILED if failed else SUCCEEDED, completed_steps=steps,
            total_steps=steps, progress_percent=100.0, loss_history=loss, validation_history=val,
            tuned_model=None if failed else model, endpoint=None if failed else ep,
            error_code=13 if failed else None, error_message="Internal error in tuning" if failed else None,
            labels={"gemini-tuning-pipeline": f"p{k}"}, create_time=iso(start),
            end_time=iso(start + timedelta(minutes=38)), example_count=res.train_count,
            metrics_uri=f"gs://{BUCKET}/bench/p{k}/jobs/{job.rsplit('/', 1)[1]}/metrics",
            checkpoints=() if failed else tuple(Checkpoint(str(e), e, 50 * e, f"{ep}{e}") for e in (1, 2, 3)),
        ).summary()

    running = {k: spec["running_jobs"][k] for k in range(len(spec["running_jobs"]))}
    with create_session() as session:
        if session.get(DagBundleModel, "dags-folder") is None:
            session.add(DagBundleModel(name="dags-folder"))
            session.flush()
        runs, tis, xcoms = [], [], []
        pointers = {}
        for k in range(N_PIPELINES):
            dag_id = f"bench_pipeline_{k:02d}"
            pointer_uri = f"gs://{BUCKET}/bench/p{k}/champion.json"
            session.add(DagModel(dag_id=dag_id, bundle_name="dags-folder", is_stale=False, is_paused=False,
                                 fileloc=str(Path(spec["dags_folder"]) / "bench_pipelines.py"),
                                 relative_fileloc="bench_pipelines.py", owners="airflow", max_active_tasks=16,
                                 max_active_runs=1, max_consecutive_failed_dag_runs=0,
                                 has_task_concurrency_limits=False, last_parsed_time=now,
                                 timetable_summary="0 3 * * 1", timetable_description="At 03:00, only on Monday"))
            old_id = new_id()
            current = build_pointer({"backend": "vertex", "tuned_model": f"{parent}/models/{old_id}@1",
                                     "endpoint": f"{parent}/endpoints/{old_id}",
                                     "display_name": f"support-router-p{k}"},
                                    {"run_id": "scheduled__2026-01-05T03:00:00+00:00", "dag_id": dag_id,
                                     "metrics": variants[0][0]["summary"]["champion"]["metrics"]}, None,
                                    now=iso(now - timedelta(days=60)))
            generation = 1
            for i in reversed(range(RUNS_PER_PIPELINE)):     # oldest first: the pointer evolves
                run_after = now - timedelta(days=i, minutes=3 * k)
                run_id = f"manual__{run_after.isoformat()}"
                is_running = i == 0 and k in running
                failed = i == FAILED_RUN_INDEX
                start = run_after + timedelta(seconds=5)
                end = None if is_running else start + timedelta(minutes=50)
                state = "running" if is_running else "failed" if failed else "success"
                conf = {"backend": "vertex", "base_model": "gemini-2.5-flash", "epochs": 3,
                        "training_data": f"gs://{BUCKET}/bench/p{k}/raw/train.jsonl",
                        "gcs_prefix": f"gs://{BUCKET}/bench/p{k}"}
                runs.append({"dag_id": dag_id, "run_id": run_id, "run_type": "manual", "state": state,
                             "run_after": run_after, "queued_at": run_after, "start_date": start, "end_date": end,
                             "conf": conf, "triggered_by": DagRunTriggeredByType.REST_API,
                             "triggering_user_name": "admin", "clear_number": 0})
                st = {t: None for t, _ in TASKS}
                x = {}
                st["prepare_dataset"] = "success"
                x[("prepare_dataset", "return_value")] = prepare_summary(k)
                if is_running:
                    job = running[k]
                    st["tune"] = "deferred"
                    x[("tune", "gemini_tuning_job")] = {"name": job, "ref": job, "backend": "vertex",
                                                         "url": console(job),
                                                         "decision": "create"}
                else:
                    job = f"{parent}/tuningJobs/{new_id()}"
                    model_id = new_id()
                    x[("tune", "gemini_tuning_job")] = {"name": job, "ref": job, "backend": "vertex",
                                                         "url": console(job),
                                                         "decision": "create"}
                    summary = tune_summary(job, model_id, start, k, failed)
                    if failed:
                        st.update(tune="failed", evaluate="upstream_failed", gate="upstream_failed",
                                  promote="upstream_failed", delete="upstream_failed",
                                  cleanup_on_failure="skipped", report="upstream_failed")
                    else:
                        x[("tune", "return_value")] = summary
                        manifest, gate = variants[(k * RUNS_PER_PIPELINE + i) % N_VARIANTS]
                        cand = {"backend": "vertex", "tuned_model": summary["tuned_model"],
                                "endpoint": summary["endpoint"], "display_name": f"support-router-p{k}"}
                        ev = {**manifest, "champion": current, "champion_generation": generation,
                              "champion_pointer_uri": pointer_uri,
                              "models": {"challenger": cand["endpoint"], "champion": current["endpoint"]}}
                        x[("evaluate", "return_value")] = ev
                        x[("gate", "gate")] = gate
                        promote = gate["decision"] == "promote"
                        x[("gate", "return_value")] = "promote" if promote else "delete"
                        st.update(tune="success", evaluate="success", gate="success", cleanup_on_failure="skipped",
                                  report="success", promote="success" if promote else "skipped",
                                  delete="skipped" if promote else "success")
                        if promote:
                            new = build_pointer(cand, {"run_id": run_id, "dag_id": dag_id,
                                                       "metrics": manifest["summary"]["challenger"]["metrics"]},
                                                current, now=iso(end))
                            x[("promote", "return_value")] = {
                                "status": "promoted", "pointer_uri": pointer_uri, "generation": generation + 1,
                                "champion": {a: b for a, b in new.items() if a != "previous"},
                                "previous_champion": current["tuned_model"],
                                "registry": {"generation": generation + 1, "rounds": 1, "champion": cand["tuned_model"],
                                             "retired": [current["tuned_model"]], "missing": []}}
                            current, generation = new, generation + 1
                        else:
                            eps = [f"{cand['endpoint']}{e}" for e in (1, 2, 3)]
                            x[("delete", "return_value")] = {
                                "backend": "vertex", "tuned_model": cand["tuned_model"], "pointer_uri": pointer_uri,
                                "champion": current["tuned_model"], "model": cand["tuned_model"],
                                "endpoint": cand["endpoint"],
                                "undeployed": [f"{e} ({n})" for n, e in enumerate([cand["endpoint"], *eps])],
                                "undeploy_refused": [], "endpoint_deleted": True,
                                "endpoints_deleted": [cand["endpoint"], *eps], "endpoint_kept": None,
                                "model_deleted": True, "version_only": False, "already_gone": False}
                        x[("report", "return_value")] = {
                            "report_uri": f"gs://{BUCKET}/bench/p{k}/reports/{run_id}/report.html",
                            "url": f"http://localhost:8080/gemini-tuning/report/{dag_id}/{quote(run_id, safe='')}",
                            "decision": gate["decision"]}
                for n, (task_id, op) in enumerate(TASKS):
                    s = st[task_id]
                    done = s not in (None, "deferred")
                    t_start = start + timedelta(minutes=5 * n) if s not in (None, "upstream_failed", "skipped") \
                        else None
                    t_end = t_start + timedelta(minutes=4) if t_start and done else None
                    tis.append({"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": -1,
                                "state": s, "operator": op, "try_number": 1 if t_start else 0, "max_tries": 2,
                                "pool": "default_pool", "pool_slots": 1, "queue": "default", "priority_weight": 1,
                                "start_date": t_start, "end_date": t_end,
                                "duration": (t_end - t_start).total_seconds() if t_end else None,
                                "hostname": "bench-worker" if t_start else None, "unixname": "airflow",
                                "executor": None, "next_method": "execute_complete" if s == "deferred" else None})
                xcoms.append((dag_id, run_id, x, end or start))
            pointers[pointer_uri] = current
        session.flush()
        session.execute(insert(DagRun.__table__), runs)
        session.execute(insert(TaskInstance.__table__), tis)
        ids = {(r.dag_id, r.run_id): r.id for r in session.execute(select(DagRun.id, DagRun.dag_id, DagRun.run_id))}
        rows = []
        for dag_id, run_id, x, when in xcoms:
            for (task_id, key), value in x.items():
                rows.append({"dag_run_id": ids[(dag_id, run_id)], "task_id": task_id, "map_index": -1, "key": key,
                             "dag_id": dag_id, "run_id": run_id, "timestamp": when,
                             "value": XComModel.serialize_value(value)})
        session.execute(insert(XComModel.__table__), rows)
    for uri, pointer in pointers.items():
        gcs.write_json(storage, uri, pointer, if_generation_match=0)
    xcom_bytes = sum(len(r["value"]) for r in rows)
    promoted = sum(1 for _, _, x, _ in xcoms if ("promote", "return_value") in x)
    return {"dags": N_PIPELINES, "runs": len(runs), "tis": len(tis), "xcoms": len(rows), "xcom_bytes": xcom_bytes,
            "promoted": promoted, "seconds": time.perf_counter() - t0,
            "running": [{"dag_id": f"bench_pipeline_{k:02d}", "run_id": r["run_id"], "job": running[k]}
                        for k in running for r in runs
                        if r["dag_id"] == f"bench_pipeline_{k:02d}" and r["state"] == "running"]}


# ================================================================================================ measure
def cpu_s(pids) -> float:
    """CPU seconds (user + system) the processes have used so far."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def overview_latency(af, n: int, cpu) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {af.token()}"}
    with httpx.Client(base_url=af.base_url, headers=headers, timeout=60) as c:
        t0 = time.perf_counter()
        warm = c.get(OVERVIEW)
        warm_ms = 1000 * (time.perf_counter() - t0)
        warm.raise_for_status()
        load0, c0 = load(), cpu()
        ms, sizes, body = [], [], None
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.get(OVERVIEW)
            ms.append(1000 * (time.perf_counter() - t0))
            r.raise_for_status()
            sizes.append(len(r.content))
            body = r.json()
        cpu_ms = 1000 * (cpu() - c0) / n
    return {"warm_ms": warm_ms, "ms": ms, "bytes": sizes[-1], "body": body, "load": [load0, load()], "cpu_ms": cpu_ms}


def viewers(af, n_viewers: int, duration: float, run_paths: list[str], cpu) -> dict:
    import httpx

    token = af.token()
    results: list[tuple[str, int, float]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def viewer(i: int) -> None:
        time.sleep(i * 1.0 / n_viewers)       # tabs opened at different moments
        with httpx.Client(base_url=af.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            n, next_t = 0, time.monotonic()
            while time.monotonic() < stop_at:
                for kind, path in (("overview", OVERVIEW), ("run page", run_paths[(i + n) % len(run_paths)])):
                    t0 = time.perf_counter()
                    try:
                        status = c.get(path).status_code
                    except httpx.HTTPError:
                        status = -1
                    with lock:
                        results.append((kind, status, 1000 * (time.perf_counter() - t0)))
                n += 1
                next_t += 1.0
                time.sleep(max(0.0, next_t - time.monotonic()))
                next_t = max(next_t, time.monotonic())

    t0, c0 = time.monotonic(), cpu()
    load0 = load()
    threads = [threading.Thread(target=viewer, args=(i,), daemon=True) for i in range(n_viewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    return {"results": results, "wall": wall, "load": [load0, load()], "cpu_share": (cpu() - c0) / wall}


def status_requests(emu: Emulator) -> dict[str, list[float]]:
    rows = emu.admin("GET", "requests", params={"path": "tuningJobs/", "method": "GET"})["requests"]
    out: dict[str, list[float]] = {}
    for q in rows:
        m = re.search(r"tuningJobs/([^/:?]+)", q["path"])
        if m:
            out.setdefault(m[1], []).append(q["t"])
    return out


# ================================================================================================ main
def main(argv=None) -> int:
    global N_PIPELINES   # --pipelines sets it (its default is the module's value)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20, help="sequential overview requests for (1)")
    p.add_argument("--viewers", type=int, default=10)
    p.add_argument("--duration", type=float, default=70.0, help="seconds of concurrent viewing for (2)")
    p.add_argument("--pipelines", type=int, default=N_PIPELINES, help="pipelines (DAGs), 10 runs each")
    p.add_argument("--running", type=int, default=5, help="running runs with a real tuning job (<= 20)")
    p.add_argument("--finished-jobs", type=int, default=0,
                   help="of the running runs, how many point at a job that has already SUCCEEDED")
    p.add_argument("--time-scale", type=float, default=0.25,
                   help="emulator time scale: 0.25 = 30 s PENDING, then ~8.5 min RUNNING for the 360-example job")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--populate", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    N_PIPELINES = args.pipelines
    os.environ["BENCH_UI_PIPELINES"] = str(args.pipelines)
    if args.populate:                                   # the child process
        spec = json.loads(Path(args.populate).read_text())
        Path(spec["out"]).write_text(json.dumps(populate(spec)))
        return 0

    offline_env()
    from harness.airflow_services import AirflowServices, Component

    print(f"bench_ui: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load()}; "
          f"code {code_state()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    emu = Emulator(tmp, args.time_scale)
    af = None
    t_start = time.monotonic()
    timings: dict[str, float] = {}
    try:
        # ---- real tuning jobs (created first: they queue while Airflow migrates)
        train = (ROOT / "include" / "demo" / "train.jsonl").read_bytes()
        long_uri = emu.upload("bench/jobs/train.jsonl", train)
        short_uri = emu.upload("bench/jobs/train-small.jsonl", b"".join(train.splitlines(keepends=True)[:24]))
        n_running = min(args.running, N_PIPELINES)
        n_finished = min(args.finished_jobs, n_running)
        jobs, short_jobs = [], set()
        for k in range(n_running):
            short = k >= n_running - n_finished
            jobs.append(emu.create_job(short_uri if short else long_uri, f"bench-ui-p{k}", 1 if short else 3)["name"])
            if short:
                short_jobs.add(jobs[-1])
        # ---- Airflow: migrate, populate, then only the api-server
        env = {"GEMINI_TUNING_EMULATOR_URL": emu.url, "STORAGE_EMULATOR_HOST": emu.gcs_url,
               "AIRFLOW__GEMINI_TUNING__UI_CACHE_DIR": str(tmp / "ui-cache"),
               "AIRFLOW__GEMINI_TUNING__UI_STATUS_TTL_SECONDS": str(int(TTL)),
               # the overview lists every run of the bench (the default [gemini_tuning] ui_max_runs is 200)
               "AIRFLOW__GEMINI_TUNING__UI_MAX_RUNS": str(max(200, N_PIPELINES * RUNS_PER_PIPELINE)),
               "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({"conn_type": "google_cloud_platform",
                                                                "extra": {"is_anonymous": True, "project": PROJECT}})}
        dags = tmp / "dags"
        dags.mkdir()
        af = AirflowServices(dags_folder=dags, plugins_folder=ROOT / "plugins", extra_env=env, home=tmp / "airflow",
                             components=[Component("api-server", ("api-server",))])
        t0 = time.monotonic()
        af.airflow("db", "migrate", timeout=300)
        timings["db migrate"] = time.monotonic() - t0
        spec_path, out_path = tmp / "populate.json", tmp / "populated.json"
        spec_path.write_text(json.dumps({"running_jobs": jobs, "dags_folder": str(dags), "out": str(out_path)}))
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, __file__, "--populate", str(spec_path)], env=af.env, cwd=str(ROOT),
                             capture_output=True, text=True, timeout=300, start_new_session=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"populate failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
        pop = json.loads(out_path.read_text())
        timings["populate"] = time.monotonic() - t0
        print(f"   populated {pop['dags']} DAGs, {pop['runs']} runs, {pop['tis']} task instances, {pop['xcoms']} XComs "
              f"({pop['xcom_bytes'] / 1e6:.1f} MB serialized; {pop['promoted']} promotions) in {pop['seconds']:.1f} s",
              flush=True)
        t0 = time.monotonic()
        af.start_component("api-server", wait=True)
        timings["api-server start"] = time.monotonic() - t0
        running = pop["running"]
        run_paths = [f"/gemini-tuning/runs/{quote(r['dag_id'], safe='')}/{quote(r['run_id'], safe='')}"
                     for r in running]
        # wait until the long jobs are RUNNING (the live path then has progress and a loss curve) and the short
        # ones have SUCCEEDED
        deadline = time.monotonic() + 120
        while True:
            states0 = {j: emu.job(j).get("state") for j in jobs}
            if all((st == "JOB_STATE_SUCCEEDED") if j in short_jobs else st != "JOB_STATE_PENDING"
                   for j, st in states0.items()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        print(f"   tuning jobs before the measurement: {sorted(Counter(states0.values()).items())}; "
              f"setup {time.monotonic() - t_start:.0f} s, load average {load()}", flush=True)

        # ---- (1) sequential latency (the request log is cleared first: the warm-up makes each job's 1st request)
        emu.admin("DELETE", "requests")
        w0 = time.time()
        api_cpu = lambda: cpu_s(af.component_pids("api-server"))
        lat = overview_latency(af, args.requests, api_cpu)
        body = lat["body"]
        n_runs, pipes = body["n_runs"], body["pipelines"]
        pointer_pipes = [q for q in pipes if q["pointer_uri"]]
        dag_groups = [q for q in pipes if not q["pointer_uri"]]
        assert n_runs == N_PIPELINES * RUNS_PER_PIPELINE, f"n_runs {n_runs}"
        assert len(pointer_pipes) == N_PIPELINES, f"{len(pointer_pipes)} pointer pipelines"
        assert all(q["champion"] for q in pointer_pipes), "a pipeline without its champion"
        # the known deviation: runs without a finished evaluation (running, or failed before it) are grouped by DAG
        assert all(r["steps"].get("evaluate") != "success" for q in dag_groups for r in q["runs"]), \
            "an evaluated run outside its pointer's pipeline"
        n_unevaluated = sum(len(q["runs"]) for q in dag_groups)

        # ---- (2) concurrent viewers
        view = viewers(af, args.viewers, args.duration, run_paths, api_cpu)
        w1 = time.time()
        reqs = status_requests(emu)
        final = {j: emu.job(j) for j in jobs}
        last = af.get(OVERVIEW)
    finally:
        t0 = time.monotonic()
        left = []
        if af is not None:
            af.stop()
            left += af.leftover_pids()
        emu.stop()
        left += _group_alive(emu.pgid)
        timings["stop"] = time.monotonic() - t0
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---------------------------------------------------------------------------------------------- report
    ms = lat["ms"]
    med = statistics.median(ms)
    print(table(f"(1) GET {OVERVIEW}: {n_runs} runs, {len(pipes)} groups = {len(pointer_pipes)} pipelines (pointer) "
                f"+ {len(dag_groups)} 'dag:' groups ({n_unevaluated} runs not evaluated); {args.requests} sequential "
                f"requests after 1 warm-up ({lat['warm_ms']:.0f} ms)",
                ["median ms", "p90 ms", "max ms", "min ms", "api-server CPU ms/request", "payload", "goal", "",
                 "load (1 5 15 min) before / after"],
                [[f"{med:.0f}", f"{pct(ms, 90):.0f}", f"{max(ms):.0f}", f"{min(ms):.0f}", f"{lat['cpu_ms']:.0f}",
                  f"{lat['bytes'] / 1e3:.0f} kB", "<= 200 ms", "PASS" if med <= 200 else "FAIL",
                  f"{lat['load'][0]} / {lat['load'][1]}"]]))

    res_ = view["results"]
    ok = [r for r in res_ if r[1] == 200]
    bad = len(res_) - len(ok)
    rows = []
    for kind in ("overview", "run page"):
        k_ms = [r[2] for r in ok if r[0] == kind]
        if k_ms:
            rows.append([kind, len(k_ms), f"{len(k_ms) / view['wall']:.1f}", f"{statistics.median(k_ms):.0f}",
                         f"{pct(k_ms, 90):.0f}", f"{max(k_ms):.0f}"])
    rows.append(["all", len(ok), f"{len(ok) / view['wall']:.1f}", f"{statistics.median([r[2] for r in ok]):.0f}",
                 f"{pct([r[2] for r in ok], 90):.0f}", f"{max(r[2] for r in ok):.0f}"])
    print(table(f"(2) {args.viewers} viewers for {view['wall']:.0f} s (each every ~1 s: overview + one running run's "
                f"page); non-200: {bad}; api-server CPU {view['cpu_share']:.2f} s/s of {os.cpu_count()} CPUs; "
                f"load {view['load'][0]} / {view['load'][1]}",
                ["request", "served", "per s", "median ms", "p90 ms", "max ms"], rows))

    window = w1 - w0
    strict = math.floor(window / TTL) + 1
    loose = math.ceil(window / TTL) + 1
    job_rows, met = [], bad == 0
    live = {(r["dag_id"], r["run_id"]): r for q in last["pipelines"] for r in q["runs"]}
    for r in running:
        jid = r["job"].rsplit("/", 1)[1]
        times = sorted(reqs.get(jid, []))
        gaps = [b - a for a, b in zip(times, times[1:])]
        final_state = final[r["job"]].get("state")
        terminal = final_state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
        allowed = strict
        ok_job = 1 <= len(times) <= allowed and all(g >= TTL - GAP_SLACK for g in gaps)
        if terminal and states0.get(r["job"]) in ("JOB_STATE_SUCCEEDED",):
            ok_job = len(times) == 1              # finished before anyone looked: asked once, never again
        met &= ok_job
        v = live.get((r["dag_id"], r["run_id"]), {})
        job_rows.append([r["dag_id"], jid[-6:], f"{v.get('tuning_state')} {v.get('progress_percent') or 0:.0f}%",
                         final_state, len(times), f"{min(gaps):.1f}" if gaps else "-",
                         " ".join(f"{t - w0:.0f}" for t in times), "ok" if ok_job else "OVER"])
    print(table(f"(2) status requests per job seen by the service (emulator log), window W = {window:.0f} s from "
                f"(1)'s warm-up to the last viewer; ttl {TTL:.0f} s; bound floor(W/30)+1 = {strict} "
                f"(issue's ceil(W/30)+1 = {loose}); {len(running)} jobs x {len(res_)} page loads",
                ["dag", "job", "page showed", "service state", "requests", "min gap s", "at s (from W start)", ""],
                job_rows))
    max_per_job = max((len(reqs.get(r["job"].rsplit("/", 1)[1], [])) for r in running), default=0)
    print(table("bench_ui: goals", ["figure", "value", "goal", ""], [
        [f"overview median ms ({N_PIPELINES * RUNS_PER_PIPELINE} runs, {N_PIPELINES} pipelines)", f"{med:.0f}",
         "<= 200",
         "goal met" if med <= 200 else "NOT met"],
        [f"status requests per job, max (window {window:.0f} s)", max_per_job, f"<= {strict} and gaps >= 30 s",
         "goal met" if met else "NOT met"],
        ["page loads served to viewers per s", f"{len(ok) / view['wall']:.1f}", "(info)", ""],
        ["non-200 page loads", bad, "0", "ok" if bad == 0 else "ERRORS"]]))
    print("   setup: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + f"; total {time.monotonic() - t_start:.0f} s; processes left after stop: {len(left)}"
          + (f" {left}" if left else "") + f"; load average at the end {load()}")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
