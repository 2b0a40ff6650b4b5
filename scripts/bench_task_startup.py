#!/usr/bin/env python
"""Task start-up cost: CPU of pipeline runs on a real Airflow (LocalExecutor), without and with preloading.

Usage: .venv/bin/python scripts/bench_task_startup.py [--runs 3]

Starts the services harness twice, one stack after the other, against the emulator (``tests/harness/
ui_stack.py``), and triggers ``--runs`` pipeline runs at once on each:

* ``lazy``: Airflow's defaults (``[core] lazy_load_plugins = True``): every task process imports the Google
  provider's hook, google-genai, the aiplatform clients, google-cloud-storage and the report renderer itself;
* ``preload``: ``[core] lazy_load_plugins = False`` and ``[gemini_tuning] preload_task_modules = True``: the
  scheduler loads the plugin, which imports them, before the LocalExecutor forks its workers.

It prints, for each, the stack's start-up (wall, CPU), the runs' (wall, CPU of the whole machine from
``/proc/stat``, so run it on a quiet machine: the load average is printed), the memory of the stack's Airflow
processes afterwards (PSS: shared pages split between the processes sharing them), and the ratios.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_common import ROOT, code_state, load, table

from harness.ui_stack import ui_stack, upload

FAST = {"poll_policy": {"initial_seconds": 1, "min_seconds": 1, "max_seconds": 3, "fallback_max_seconds": 2},
        "eval_rpm": 12000, "eval_concurrency": 32, "epochs": 1, "gate_min_prompts": 5, "gate_min_score": 0.0}
MODES = {
    "lazy": {"AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "True", "AIRFLOW__GEMINI_TUNING__PRELOAD_TASK_MODULES": "False"},
    "preload": {"AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False", "AIRFLOW__GEMINI_TUNING__PRELOAD_TASK_MODULES": "True"},
}


def cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (``/proc/stat``: all fields but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / 100


def demo(name: str, n: int) -> str:
    lines = [x for x in (ROOT / "include" / "demo" / name).read_text().splitlines() if x.strip()][:n]
    return "".join(line + "\n" for line in lines)


def measure(mode: str, runs: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-startup-{mode}-"))
    c0, t0 = cpu_seconds(), time.monotonic()
    with ui_stack(tmp, time_scale=0.01, extra_env={"GEMINI_TUNING_MAX_ACTIVE_RUNS": "16", **MODES[mode]}) as (af, info):
        c1, t1 = cpu_seconds(), time.monotonic()
        train = upload(info, "bench/train.jsonl", demo("train.jsonl", 24).encode())
        prompts = tmp / "prompts.jsonl"
        prompts.write_text(demo("eval_prompts.jsonl", 12))
        conf = {**FAST, "training_data": train, "eval_prompts": str(prompts)}
        ids = [af.trigger_dag("gemini_tuning_pipeline", {**conf, "gcs_prefix": f"gs://gemini-tuning-ui/b{i}"})
               for i in range(runs)]
        states = [af.wait_run("gemini_tuning_pipeline", run_id, timeout=900) for run_id in ids]
        c2, t2 = cpu_seconds(), time.monotonic()
        tasks = sum(1 for run_id in ids for ti in af.task_instances("gemini_tuning_pipeline", run_id)
                    if ti["try_number"])
        pss = stack_pss_mb(af)
    if set(states) != {"success"}:
        raise SystemExit(f"{mode}: runs ended {states}")
    return {"start_wall": t1 - t0, "start_cpu": c1 - c0, "runs_wall": t2 - t1, "runs_cpu": c2 - c1, "tasks": tasks,
            "pss_mb": pss}


def stack_pss_mb(af) -> float:
    """Proportional set size (shared pages split between their sharers) of every Airflow process of the stack."""
    import psutil

    total = 0
    for pid in af.leftover_pids():
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="pipeline runs triggered at once on each stack")
    args = parser.parse_args()
    print(f"{code_state()}; load before: {load()}")
    results = {mode: measure(mode, args.runs) for mode in MODES}
    rows = [[mode, f"{r['start_wall']:.1f}", f"{r['start_cpu']:.1f}", f"{r['runs_wall']:.1f}", f"{r['runs_cpu']:.1f}",
             r["tasks"], f"{r['runs_cpu'] / r['tasks']:.2f}", f"{r['pss_mb']:.0f}"] for mode, r in results.items()]
    print(table(f"{args.runs} pipeline runs at once, LocalExecutor (parallelism 4), emulator", [
        "mode", "stack start wall s", "start CPU s", "runs wall s", "runs CPU s", "task tries", "CPU s per task",
        "stack PSS MB after"],
        rows))
    lazy, pre = results["lazy"], results["preload"]
    print(f"preload / lazy: runs CPU {pre['runs_cpu'] / lazy['runs_cpu']:.2f}, runs wall "
          f"{pre['runs_wall'] / lazy['runs_wall']:.2f}, stack start CPU {pre['start_cpu'] / lazy['start_cpu']:.2f}; "
          f"load after: {load()}")
    print(json.dumps({"runs": args.runs, **{m: {k: round(v, 2) for k, v in r.items()} for m, r in results.items()}}))


if __name__ == "__main__":
    main()
