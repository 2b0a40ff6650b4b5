"""What a deployment costs per pipeline run: N pipelines (N = 1, 8) on the local cluster (CeleryExecutor, PostgreSQL,
two triggerers; ``tests/harness/cluster.py``) beside the same runs under ``dag.test()``, in one script run.

Per run: wall time (run start -> end), time queued (sum over its tasks of start - queued), the tuning job's own
duration (the emulator's create -> end), the evaluate task's duration, and what is left: the part of the wall time
spent outside the tuning job and the evaluation (scheduling, workers picking tasks up, deferral and resumption,
the other steps). The emulator runs at the same time scale for both. dag.test() runs one run at a time, so its
N = 8 row is 8 runs back to back; the cluster's runs are concurrent.

    .venv/bin/python scripts/bench_cluster.py [--runs 1 8] [--time-scale 0.004]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench_common import code_state, load, plugins_on_path, table

from harness.cluster import BUCKET, Cluster

ROOT = Path(__file__).resolve().parents[1]

DAG_ID = "gemini_tuning_pipeline"
CONF = {"eval_rpm": 12000, "eval_concurrency": 32, "epochs": 1,
        "poll_policy": {"initial_seconds": 1, "min_seconds": 1, "max_seconds": 3, "fallback_max_seconds": 2}}


def ts(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def job_seconds(emulator_url: str, project: str, job_name: str) -> float:
    import requests

    job = requests.get(f"{emulator_url}/v1/{job_name}", timeout=10).json()
    return ts(job["endTime"]) - ts(job["createTime"])


def figures(run: dict, tis: list[dict], job_s: float) -> dict:
    wall = ts(run["end_date"]) - ts(run["start_date"])
    queued = sum(max(0.0, ts(t["start_date"]) - ts(t["queued_when"])) for t in tis
                 if t.get("start_date") and t.get("queued_when"))
    ev = next(t for t in tis if t["task_id"] == "evaluate")
    eval_s = ts(ev["end_date"]) - ts(ev["start_date"])
    return {"wall": wall, "queued": queued, "job": job_s, "evaluate": eval_s, "outside": wall - job_s - eval_s}


def on_cluster(n: int, cluster: Cluster) -> list[dict]:
    s = cluster.services
    rows = (ROOT / "include/demo/train.jsonl").read_text().splitlines()
    data = Path(cluster.dir) / "data"
    data.mkdir(exist_ok=True)
    runs = []
    tag = f"{n}-{int(time.time())}"
    for i in range(n):
        path = data / f"train-{tag}-{i}.jsonl"
        path.write_text("\n".join(rows[i * 12:] + rows[:i * 12]) + "\n")
        runs.append(s.trigger_dag(DAG_ID, {**CONF, "training_data": str(path), "display_name": f"bench-{i}",
                                           "gcs_prefix": f"gs://{BUCKET}/bench/{tag}/{i}"}))
    out = []
    for run_id in runs:
        assert s.wait_run(DAG_ID, run_id, timeout=1800) == "success", run_id
        run = s.dag_run(DAG_ID, run_id)
        tis = s.task_instances(DAG_ID, run_id)
        job = s.xcom(DAG_ID, run_id, "tune")["name"]
        out.append(figures(run, tis, job_seconds(cluster.state.emulator["url"], "demo-project", job)))
    return out


def under_dag_test(n: int, time_scale: float) -> list[dict]:
    """N runs back to back with dag.test() in a child process (its own SQLite home and emulator)."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--child-dag-test", str(n), "--time-scale", str(time_scale)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_dag_test(n: int, time_scale: float) -> None:
    import subprocess

    home = Path(tempfile.mkdtemp(prefix="bench-dagtest-"))
    emu = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--default-bucket",
                            BUCKET, "--time-scale", str(time_scale), "--log-level", "WARNING"], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True, start_new_session=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    info = json.loads(emu.stdout.readline())
    try:
        os.environ.update({
            "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", "NO_GCE_CHECK": "true",
            "AIRFLOW__GEMINI_TUNING__INPUT_ROOTS": os.pathsep.join([str(ROOT / "include"), str(home)]),  # + its files
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({"conn_type": "google_cloud_platform", "extra": {
                "is_anonymous": True, "project": "demo-project"}}),
            "GEMINI_TUNING_EMULATOR_URL": info["url"], "STORAGE_EMULATOR_HOST": info["gcs_url"]})
        plugins_on_path()
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(ROOT / "dags"), safe_mode=False).dags[DAG_ID]
        rows = (ROOT / "include/demo/train.jsonl").read_text().splitlines()
        out = []
        for i in range(n):
            path = home / f"train-{i}.jsonl"
            path.write_text("\n".join(rows[i * 12:] + rows[:i * 12]) + "\n")
            dr = dag.test(run_conf={**CONF, "training_data": str(path), "display_name": f"bench-{i}",
                                    "gcs_prefix": f"gs://{BUCKET}/bench-dagtest/{n}/{i}"})
            assert str(dr.state) == "success", dr.state
            tis = [{"task_id": t.task_id, "start_date": t.start_date, "end_date": t.end_date,
                    "queued_when": t.queued_dttm} for t in dr.get_task_instances()]
            job = next(t for t in dr.get_task_instances() if t.task_id == "tune").xcom_pull(task_ids="tune")["name"]
            out.append(figures({"start_date": dr.start_date, "end_date": dr.end_date}, tis,
                               job_seconds(info["url"], "demo-project", job)))
        print(json.dumps(out))
    finally:
        os.killpg(emu.pid, 9)


def summarize(label: str, n: int, rows: list[dict], total: float) -> list:
    mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    return [label, n, f"{total:.1f}", f"{mean['wall']:.1f}", f"{mean['queued']:.1f}", f"{mean['job']:.1f}",
            f"{mean['evaluate']:.1f}", f"{mean['outside']:.1f}", f"{100 * mean['outside'] / mean['wall']:.0f}%"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--time-scale", type=float, default=0.004)
    ap.add_argument("--child-dag-test", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_dag_test:
        return child_dag_test(args.child_dag_test, args.time_scale)
    print(f"bench_cluster: code {code_state()}; load {load()}; time scale {args.time_scale}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster", time_scale=args.time_scale,
                          extra_env={"GEMINI_TUNING_MAX_ACTIVE_RUNS": str(max(args.runs))})
        t0 = time.monotonic()
        cluster.start()
        print(f"cluster up in {time.monotonic() - t0:.0f} s; load {load()}", flush=True)
        try:
            cluster.services.wait_dag_parsed(DAG_ID)
            for n in args.runs:
                t0 = time.monotonic()
                rows = on_cluster(n, cluster)
                results.append(summarize("cluster (Celery, PostgreSQL)", n, rows, time.monotonic() - t0))
                print(f"   cluster N={n} done; load {load()}", flush=True)
        finally:
            left = cluster.stop()
            assert not left, left
    for n in args.runs:
        t0 = time.monotonic()
        rows = under_dag_test(n, args.time_scale)
        results.append(summarize("dag.test() (in process, SQLite)", n, rows, time.monotonic() - t0))
        print(f"   dag.test N={n} done; load {load()}", flush=True)
    print(table(f"per-run cost (means over the N runs; seconds; load at the end {load()})",
                ["where", "N", "all N s", "wall", "queued", "tuning job", "evaluate", "outside", "outside %"],
                results))
    print("   outside = wall - tuning job - evaluate: scheduling, pick-up, deferral and resumption, other steps.")


if __name__ == "__main__":
    main()
