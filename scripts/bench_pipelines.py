#!/usr/bin/env python
"""Pipeline factory benchmark: the parse time of ``dags/gemini_tuning_pipelines.py`` with 0, 1 and 50 pipeline files.

Usage: .venv/bin/python scripts/bench_pipelines.py [--files 50] [--repeats 5]

Goal (issue "Pipelines as reviewed configuration"): parse <= 1.0 s for all 50 pipelines. What is timed is what the
DAG processor does for the file: ``DagBag.process_file`` (a fresh import of the factory module, reading and
validating every YAML file, building 2 DAGs per file, and Airflow's own validation of each), in a child process
with its own Airflow home, after one warm-up parse (the imports of Airflow and the operators are paid once per
DAG-processor process, not per parse). ``load_folder`` alone (the YAML + schema part) is timed beside it. The
median of ``--repeats`` is printed with the load average (the machine is shared; timings are never asserted by
tests). The overview page with 50 pipelines: ``scripts/bench_ui.py --pipelines 50``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import code_state, load, table

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, statistics, sys, time
from airflow.dag_processing.dagbag import DagBag
from gemini_tuning.pipelines.loader import load_folder

factory, folder, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
DagBag(dag_folder=factory, safe_mode=False)          # warm-up: the imports
parse, loads, dags, errors = [], [], 0, {}
for _ in range(repeats):
    t = time.perf_counter()
    bag = DagBag(dag_folder=factory, safe_mode=False)
    parse.append(time.perf_counter() - t)
    dags, errors = len(bag.dags), bag.import_errors
    t = time.perf_counter()
    load_folder(folder)
    loads.append(time.perf_counter() - t)
print("RESULT", json.dumps({"parse": statistics.median(parse), "load": statistics.median(loads), "dags": dags,
                            "errors": len(errors)}))
"""


def write_files(folder: Path, n: int) -> None:
    """``n`` pipeline files made from ``pipelines/router.yaml`` (own id, prefix and storage root each)."""
    template = (ROOT / "pipelines" / "router.yaml").read_text()
    include = str(ROOT / "include")
    for k in range(n):
        text = template.replace("id: router", f"id: bench_{k:02d}").replace("/router", f"/bench-{k:02d}")
        text = text.replace("../include", include)
        (folder / f"bench_{k:02d}.yaml").write_text(text)


def measure(n: int, repeats: int, tmp: Path) -> dict:
    folder = tmp / f"pipelines-{n}"
    folder.mkdir()
    write_files(folder, n)
    home = tmp / f"home-{n}"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__UNIT_TEST_MODE="True",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
               AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"), AIRFLOW__GEMINI_TUNING__PIPELINES_FOLDER=str(folder),
               PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "dags")]))
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "dags" / "gemini_tuning_pipelines.py"),
                          str(folder), str(repeats)], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SystemExit(f"the child failed:\n{out.stderr[-4000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"code: {code_state()}; load before: {load()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pipelines-") as tmp:
        results = {n: measure(n, args.repeats, Path(tmp)) for n in (0, 1, args.files)}
    for n, r in results.items():
        rows.append([n, r["dags"], r["errors"], f"{r['load'] * 1000:.0f}", f"{r['parse'] * 1000:.0f}",
                     f"{(r['parse'] - results[0]['parse']) / max(n, 1) * 1000:.1f}" if n else "-"])
    print(table(f"factory parse, median of {args.repeats} (after a warm-up parse)",
                ["files", "DAGs", "import errors", "load_folder ms", "DagBag.process_file ms", "ms per file"], rows))
    parse = results[args.files]["parse"]
    print(table("bench_pipelines: goals", ["figure", "value", "goal", ""], [
        [f"parse of the factory with {args.files} files (s)", f"{parse:.2f}", "<= 1.0",
         "goal met" if parse <= 1.0 else "NOT met"]]))
    print(f"load after: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
