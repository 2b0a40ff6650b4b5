#!/usr/bin/env python
"""Issue 4 benchmarks: what waiting for a tuning job costs (worker slots, status requests, triggerer RSS/CPU).

Usage: .venv/bin/python scripts/bench_tuning_wait.py [--part a|b|c|all] [--triggers 1000] [--warmup 15]
           [--window 60] [--populations datetime,ours,datetime-split,ours-split] [--json FILE]
       (--part all takes ~7 min on 2 shared cores, most of it part c; each part runs alone too: a ~1.5 min,
        b ~0.5 min, c ~5 min)

  a. Worker-slot seconds held / job duration, for a ~60 s emulated Vertex job, deferrable vs non-deferrable,
     through the real GeminiTuningOperator against the in-process emulator (+ its GCS).  Deferrable is measured
     twice: "cold" (first google-genai client in the process, as in a fresh task process) and "warm"; the
     non-deferrable task runs beside them in the same run.  Goal: <= 0.01 for deferrable.
  b. Status requests per job-hour and the delay between the job's end and the task noticing it, on a 1 h job on a
     virtual clock shared by the in-process emulator (``Emulator.now``) and the trigger (``triggers._now/_sleep``),
     default poll policy, Vertex and Gemini API.  Goals: <= 60 requests per job-hour, <= 30 s notice delay.
  c. 1,000 concurrent TuningJobTriggers vs 1,000 Airflow DateTimeTriggers, each population in a fresh child
     process (``--child``) one after the other, against ``python -m emulator`` in its own process with 1,000 jobs
     that stay RUNNING and report progress (so the Vertex loss reader runs); RSS (VmRSS) and CPU (process_time)
     over a 60 s window that starts --warmup s after the start-up burst.  Goals: <= 1.25x the (total) RSS,
     <= 5 % of one core.  The triggers of one event loop share one backend (one client, one HTTP session).

The machine is shared (2 cores): the load average is printed beside every figure; compare the figures of one run
(side by side), not figures across runs; counts (requests, polls, objects) are the robust figures.  Timings here
are never asserted by unit tests (house rule).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from bench_common import code_state, load, offline_env, table  # noqa: E402

DEMO = ROOT / "include" / "demo"
BUCKET = "bench-tuning-wait"
PROJECT, LOCATION = "bench-project", "us-central1"
VERTEX_BASE, GEMINI_API_BASE = "gemini-2.5-flash", "models/gemini-1.5-flash-001-tuning"
VERTEX_BATCH = 8   # the emulator's (and Vertex's) fixed batch size: steps = epochs * ceil(n / 8)


# ----------------------------------------------------------------------------------------------- environment
def setup_env(pycache: bool = True) -> None:
    """What tests/conftest.py does, before anything imports Airflow or a Google client.

    With ``pycache`` (default), bytecode is cached under $TMPDIR/bench-pycache: this machine's venv ships no .pyc
    files and sets PYTHONDONTWRITEBYTECODE, so every process would otherwise compile Airflow and google-genai from
    source (seconds per process), which no installed deployment does.
    """
    offline_env(pycache=pycache)
    if "AIRFLOW_HOME" not in os.environ or not os.environ["AIRFLOW_HOME"].startswith(tempfile.gettempdir()):
        os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-airflow-")
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")   # children of part c log at INFO
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{os.environ['AIRFLOW_HOME']}/airflow.db")
    os.environ["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"] = json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": PROJECT}})


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> float:
    """user+system CPU seconds of another process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def reset_trigger_caches(triggers) -> None:
    """Forget the backends the trigger module shares (per event loop, ``_LOOPS``)."""
    for name in ("_LOOPS",):
        cache = getattr(triggers, name, None)
        if cache is not None:
            cache.clear()


def demo_vertex_rows(n: int | None = None) -> list[str]:
    rows = [line for line in (DEMO / "train.jsonl").read_text().splitlines() if line.strip()]
    return rows[:n] if n else rows


def demo_gemini_examples(n: int | None = None) -> list[dict]:
    """The demo set flattened to the Gemini API's text_input/output form."""
    out = []
    for line in demo_vertex_rows(n):
        row = json.loads(line)
        user = "\n".join(p["text"] for c in row["contents"] if c["role"] == "user" for p in c["parts"])
        model = "".join(p["text"] for c in row["contents"] if c["role"] == "model" for p in c["parts"])
        out.append({"text_input": user, "output": model})
    return out


def gcs_client():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(credentials=AnonymousCredentials(), project=PROJECT)


def upload(text: str, name: str) -> str:
    gcs_client().bucket(BUCKET).blob(name).upload_from_string(text.encode(), content_type="application/jsonl")
    return f"gs://{BUCKET}/{name}"


class BenchTI:
    """The bits of a task instance GeminiTuningOperator.execute uses."""

    def __init__(self, task_id: str):
        self.dag_id, self.task_id, self.map_index = "bench_tuning_wait", task_id, -1
        self.run_id = f"bench__{uuid.uuid4().hex[:10]}"
        self.xcom: dict = {}

    def xcom_push(self, key, value, **_):
        self.xcom[key] = value


async def first_event(trigger):
    gen = trigger.run()
    try:
        return await gen.__anext__()
    finally:
        await gen.aclose()          # the trigger closes the loop's backends (and their sessions) when it ends


def request_count(url: str, path_rx: str, method: str = "GET") -> list[dict]:
    import requests

    r = requests.get(f"{url}/_emulator/requests", params={"path": path_rx, "method": method}, timeout=30)
    r.raise_for_status()
    return r.json()["requests"]


# ----------------------------------------------------------------------------------------------- part a
def part_a(args) -> dict:
    """Deferrable vs non-deferrable worker time on a ~60 s job (real time, in-process emulator).

    Order: deferrable task 1 (first use of google-genai in this process: "cold") defers; then the non-deferrable
    task starts in a thread and blocks for the whole job; then deferrable task 2 ("warm") defers; both triggers
    then run in one event loop (the triggerer's share, no worker slot), and execute_complete() resumes each.
    """
    from airflow.sdk.exceptions import TaskDeferred

    from emulator.app import EmulatorConfig
    from emulator.server import EmulatorServer
    from gemini_tuning.operators.tune import GeminiTuningOperator
    from gemini_tuning.triggers import base_job as triggers

    n_examples, epochs = 24, 3
    steps = epochs * math.ceil(n_examples / VERTEX_BATCH)                   # 9
    pending = 15.0
    step_s = (args.a_job_seconds - pending) / steps                          # 60 s job: 15 + 9 x 5
    print(f"\n== a. worker-slot time vs job duration: ~{args.a_job_seconds:.0f} s Vertex job "
          f"(pending {pending:.0f} s + {steps} steps x {step_s:.1f} s, time_scale 1.0); load {load()}", flush=True)
    # compile google-genai & co. to bytecode in a throw-away process, as an installed deployment would have it
    subprocess.run([sys.executable, "-c", "import google.genai, google.genai.types, google.cloud.storage"],
                   check=True, env=os.environ)
    load_before = os.getloadavg()[0]
    srv = EmulatorServer(config=EmulatorConfig(time_scale=1.0, pending_seconds=pending, step_seconds=step_s),
                         default_bucket=BUCKET)
    endpoints = srv.start()
    os.environ.update(endpoints.env())
    reset_trigger_caches(triggers)
    try:
        uri = upload("\n".join(demo_vertex_rows(n_examples)) + "\n", f"a/{uuid.uuid4().hex[:8]}.jsonl")
        common = {"base_model": VERTEX_BASE, "training_uri": uri, "backend": "vertex", "epochs": epochs,
                  "job_timeout": timedelta(hours=1)}
        out: dict = {}

        def defer(label: str):
            ti = BenchTI(f"tune_{label}")
            op = GeminiTuningOperator(task_id=ti.task_id, deferrable=True, **common)
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                op.execute({"ti": ti})
            except TaskDeferred as td:
                out[label] = {"execute_s": time.perf_counter() - t0, "execute_cpu_s": time.thread_time() - c0,
                              "op": op, "ti": ti, "trigger": td.trigger}
                return
            raise RuntimeError("execute() returned instead of deferring")

        errors: list = []

        def blocking():
            try:
                ti = BenchTI("tune_blocking")
                op = GeminiTuningOperator(task_id=ti.task_id, deferrable=False, **common)
                t0, c0 = time.perf_counter(), time.thread_time()
                res = op.execute({"ti": ti})
                out["blocking"] = {"execute_s": time.perf_counter() - t0, "execute_cpu_s": time.thread_time() - c0,
                                   "complete_s": 0.0, "result": res, "noticed": time.time()}
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        defer("deferrable_cold")
        defer("deferrable_warm")
        th = threading.Thread(target=blocking, name="blocking")
        th.start()

        async def triggerer():
            async def one(label):
                ev = await first_event(out[label]["trigger"])
                out[label]["noticed"], out[label]["event"] = time.time(), ev
            await asyncio.gather(one("deferrable_cold"), one("deferrable_warm"))

        asyncio.run(triggerer())
        for label in ("deferrable_cold", "deferrable_warm"):
            o = out[label]
            t2 = time.perf_counter()
            o["result"] = o["op"].execute_complete({"ti": o["ti"]}, event=o["event"].payload)
            o["complete_s"] = time.perf_counter() - t2
        th.join(args.a_job_seconds * 4)
        if errors or "blocking" not in out:
            raise RuntimeError(f"part a failed: {errors}")
        rows, result = [], {}
        for mode in ("deferrable_cold", "deferrable_warm", "blocking"):
            o = out[mode]
            res = o["result"]
            created, ended = ts(res["create_time"]), ts(res["end_time"])
            job_s = ended - created
            worker_s = o["execute_s"] + o["complete_s"]
            polls = len(request_count(endpoints.url, res["name"].rsplit("/", 1)[1]))
            ratio = worker_s / job_s
            deferrable = mode != "blocking"
            rows.append([mode, f"{o['execute_s']:.3f}", f"{o['execute_cpu_s']:.3f}", f"{o['complete_s']:.4f}",
                         f"{worker_s:.3f}",
                         f"{job_s:.1f}", f"{ratio:.4f}", "<= 0.01" if deferrable else "(reference)",
                         ("PASS" if ratio <= 0.01 else "FAIL") if deferrable else "", polls,
                         f"{o['noticed'] - ended:.1f}", res["state"].removeprefix("JOB_STATE_")])
            result[mode] = {"worker_s": worker_s, "execute_s": o["execute_s"], "execute_cpu_s": o["execute_cpu_s"],
                            "complete_s": o["complete_s"],
                            "job_s": job_s, "ratio": ratio, "status_gets": polls,
                            "notice_delay_s": o["noticed"] - ended}
        print(table(f"a. worker-slot seconds / job duration (load before {load_before:.2f}, after {load()})",
                    ["mode", "execute() s", "its CPU s", "execute_complete() s", "worker s", "job s (create->end)",
                     "ratio",
                     "goal", "", "status GETs", "end->noticed s", "state"], rows))
        print("   worker s = execute() until TaskDeferred + execute_complete() (wall); its CPU s = CPU of the calling\n"
              "   thread (less sensitive to the shared machine).  cold = first google-genai client in\n"
              "   the process (import + client + GCS client + create), as in a fresh task process; warm = the same\n"
              "   in a process that already has them.  Not measured: the task-process start and DAG parse that each\n"
              "   worker leg pays in a deployment.  The non-deferrable row holds its slot for the whole job plus the\n"
              "   end->noticed delay of its poll loop.")
        result["load"] = [load_before, os.getloadavg()[0]]
        return result
    finally:
        srv.stop()


# ----------------------------------------------------------------------------------------------- part b
class VirtualClock:
    def __init__(self, start: float):
        self.t = start
        self.sleeps: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.t += max(0.0, delay)
        await asyncio.sleep(0)


def part_b(args) -> dict:
    import google.oauth2.credentials

    from emulator.app import EmulatorConfig
    from emulator.server import EmulatorServer
    from gemini_tuning.backends.contract import JobIdentity
    from gemini_tuning.backends.gemini_api import GeminiApiTuningBackend, tuned_model_id
    from gemini_tuning.backends.vertex import VertexTuningBackend
    from gemini_tuning.core.polling import PollPolicy
    from gemini_tuning.core.tuning import TuningSpec
    from gemini_tuning.triggers import TuningJobTrigger
    from gemini_tuning.triggers import base_job as triggers

    job_s, pending = args.b_job_seconds, 120.0
    n, epochs, batch = 360, 3, 8
    steps = epochs * math.ceil(n / batch)                     # 135 steps on both backends (batch 8)
    step_s = (job_s - pending) / steps
    print(f"\n== b. status requests and notice delay on a {job_s / 3600:.2f} h job (virtual clock; pending "
          f"{pending:.0f} s + {steps} steps x {step_s:.2f} s; default PollPolicy {PollPolicy().to_dict()}); "
          f"load {load()}", flush=True)
    load_before = os.getloadavg()[0]
    clock = VirtualClock(time.time())
    srv = EmulatorServer(config=EmulatorConfig(time_scale=1.0, pending_seconds=pending, step_seconds=step_s),
                         default_bucket=BUCKET)
    endpoints = srv.start()
    os.environ.update(endpoints.env())
    emu = srv.emulator
    emu.now = lambda: clock.t                        # the emulator's clock (instance attribute shadows the method)
    saved = (triggers._now, triggers._sleep)
    triggers._now, triggers._sleep = (lambda: clock.t), clock.sleep
    reset_trigger_caches(triggers)
    rows, result = [], {}
    try:
        creds = google.oauth2.credentials.Credentials(token="bench")
        for kind in ("vertex", "gemini_api"):
            clock.sleeps.clear()
            if kind == "vertex":
                uri = upload("\n".join(demo_vertex_rows(n)) + "\n", f"b/{uuid.uuid4().hex[:8]}.jsonl")
                backend = VertexTuningBackend(project=PROJECT, location=LOCATION, credentials=creds,
                                              base_url=endpoints.url)
                spec = TuningSpec(backend="vertex", base_model=VERTEX_BASE, training_uri=uri, epochs=epochs)
                status = backend.create(spec, JobIdentity(f"kbenchb{uuid.uuid4().hex[:8]}", "fbench", 1))
                store_kind, name, ref, id_rx = "tuningJobs", status.name, status.name, status.name.rsplit("/", 1)[1]
            else:
                examples = "".join(json.dumps(e) + "\n" for e in demo_gemini_examples(n))
                gem_uri = upload(examples, f"b/{uuid.uuid4().hex[:8]}-gemini.jsonl")
                backend = GeminiApiTuningBackend(base_url=endpoints.url, credentials=creds, quota_project=PROJECT,
                                                 storage=gcs_client)
                spec = TuningSpec(backend="gemini_api", base_model=GEMINI_API_BASE, training_uri=gem_uri,
                                  epochs=epochs, batch_size=batch)
                identity = JobIdentity(f"kbenchb{uuid.uuid4().hex[:8]}", "fbench", 1)
                mid = tuned_model_id(identity.key, identity.attempt)
                status = backend.create(spec, identity)
                store_kind, name, ref, id_rx = "tunedModels", f"tunedModels/{mid}", status.operation, mid
            created_clock = clock.t
            # let the real learner finish (ms..s of real time) before the virtual clock moves, so the job's
            # schedule is exactly pending + steps x step_s on the virtual clock
            deadline = time.time() + 120
            while not (emu.store.get(store_kind, name) or {}).get("emu", {}).get("trained"):
                if time.time() > deadline:
                    raise RuntimeError(f"{name}: training did not finish in 120 s")
                time.sleep(0.05)
            trig = TuningJobTrigger(backend=kind, job_name=ref, project_id=PROJECT, location=LOCATION,
                                    deadline=clock.t + 24 * 3600)
            t0 = time.perf_counter()
            ev = asyncio.run(first_event(trig))
            wall = time.perf_counter() - t0
            noticed = clock.t
            job = ev.payload.get("job") or {}
            if ev.payload.get("status") != "success":
                raise RuntimeError(f"{kind}: trigger ended with {ev.payload}")
            res = emu.store.get(store_kind, name)["resource"]
            end = ts(res["endTime"] if kind == "vertex" else res["tuningTask"]["completeTime"])
            create = ts(res["createTime"])
            gets = request_count(endpoints.url, id_rx)
            hours = (end - create) / 3600
            per_hour = len(gets) / hours
            delay = noticed - end
            sl = clock.sleeps
            rows.append([kind, f"{end - create:.0f}", len(gets), f"{per_hour:.1f}", "<= 60",
                         "PASS" if per_hour <= 60 else "FAIL", f"{delay:.1f}", "<= 30",
                         "PASS" if delay <= 30 else "FAIL", f"{min(sl):.0f}/{statistics.median(sl):.0f}/{max(sl):.0f}",
                         f"{wall:.1f}"])
            result[kind] = {"job_s": end - create, "status_gets": len(gets), "per_hour": per_hour,
                            "notice_delay_s": delay, "sleeps": [round(s, 1) for s in sl],
                            "job_state": job.get("state"), "created_on_clock": created_clock}
            print(f"   {kind}: poll intervals (virtual s): {', '.join(f'{s:.0f}' for s in sl)}", flush=True)
        print(table(f"b. status requests per job-hour and end->noticed delay (virtual clock; load before "
                    f"{load_before:.2f}, after {load()})",
                    ["backend", "job s", "status GETs", "per job-hour", "goal", "", "notice delay s", "goal", "",
                     "interval min/med/max s", "real s"], rows))
        print("   status GETs = every GET the emulator logged for the job (path contains its id), creation excluded;\n"
              "   notice delay = virtual time of the trigger's event - the job's endTime (completeTime).")
        result["load"] = [load_before, os.getloadavg()[0]]
        return result
    finally:
        triggers._now, triggers._sleep = saved[0], saved[1]
        reset_trigger_caches(triggers)
        srv.stop()


# ----------------------------------------------------------------------------------------------- part c
def start_emulator_process(workdir: Path) -> tuple[subprocess.Popen, dict]:
    log = open(workdir / "emulator.out", "w")  # noqa: SIM115 - the emulator process writes it until it stops
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--time-scale", "1.0",
                             "--default-bucket", BUCKET, "--log-level", "WARNING"],
                            cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        text = (workdir / "emulator.out").read_text()
        for line in text.splitlines():
            if line.startswith("{"):
                return proc, json.loads(line)
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited: {text}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("emulator did not start in 60 s")


SUMMED = ("rss_start_kib", "rss_after_imports_kib", "rss_pre_kib", "rss_lazy_imports_kib", "rss_window_max_kib",
          "rss_window_min_kib", "rss_window_end_kib", "vm_hwm_kib", "n", "burst_cpu_s", "cpu_warmup_s",
          "cpu_window_s", "rusage_window_s", "done_early", "warmup_lag_over_200ms")
MAXED = ("burst_s", "warmup_s", "lag_p99_ms", "lag_max_ms", "warmup_lag_max_ms", "burst_rss_max_kib")


def combine(parts: list[dict]) -> dict:
    """The figures of several triggerer processes as one population: memory and CPU added up, the window the
    overlap of theirs, lags and durations the worst."""
    if len(parts) == 1:
        return parts[0]
    out = dict(parts[0])
    out.update({k: sum(p[k] for p in parts) for k in SUMMED if k in parts[0]})
    out.update({k: max(p[k] for p in parts) for k in MAXED if k in parts[0]})
    out["window_start"] = max(p["window_start"] for p in parts)
    out["window_end"] = min(p["window_end"] for p in parts)
    out["window_s"] = statistics.fmean(p["window_s"] for p in parts)
    out["cpu_pct_window"] = 100.0 * out["cpu_window_s"] / out["window_s"]
    out["load_window"] = [min(p["load_window"][0] for p in parts), max(p["load_window"][1] for p in parts)]
    out["events"] = sorted({e for p in parts for e in p["events"]})[:5]
    if "census" in parts[0]:
        out["census"] = {k: (sum(p["census"][k] for p in parts) if isinstance(parts[0]["census"][k], int)
                             and not isinstance(parts[0]["census"][k], bool)
                             else any(p["census"][k] for p in parts)) for k in parts[0]["census"]}
    out["processes"] = len(parts)
    return out


def part_c(args) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    import google.oauth2.credentials
    import requests

    from gemini_tuning.backends.contract import JobIdentity
    from gemini_tuning.backends.vertex import VertexTuningBackend
    from gemini_tuning.core.tuning import TuningSpec

    n = args.triggers
    print(f"\n== c. {n} concurrent triggers: TuningJobTrigger vs DateTimeTrigger, each in a fresh child process "
          f"(warm-up {args.warmup:.0f} s, window {args.window:.0f} s); load {load()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-triggers-"))
    proc, info = start_emulator_process(workdir)
    url, gcs_url = info["url"], info["gcs_url"]
    env = dict(os.environ, AIRFLOW__LOGGING__LOGGING_LEVEL="INFO", GEMINI_TUNING_EMULATOR_URL=url,
               GOOGLE_VERTEX_BASE_URL=url, GOOGLE_GEMINI_BASE_URL=url, STORAGE_EMULATOR_HOST=gcs_url,
               NO_GCE_CHECK="true", PYTHONUNBUFFERED="1")
    os.environ.update({k: env[k] for k in ("GEMINI_TUNING_EMULATOR_URL", "STORAGE_EMULATOR_HOST")})
    try:
        # jobs that stay RUNNING for the whole part and report progress every step_seconds (so the triggers' Vertex
        # loss reader runs too): no pending phase, epochs x ceil(examples / 8) steps (time_scale 1.0)
        c_steps = 3 * math.ceil(args.c_examples / VERTEX_BATCH)
        requests.patch(f"{url}/_emulator/config", json={"pending_seconds": 0.0, "step_seconds": args.c_step_seconds},
                       timeout=10).raise_for_status()
        print(f"   jobs: {args.c_examples} examples, {c_steps} steps x {args.c_step_seconds:.0f} s = "
              f"{c_steps * args.c_step_seconds / 60:.0f} min RUNNING", flush=True)
        uri = upload("\n".join(demo_vertex_rows(args.c_examples)) + "\n", "c/train.jsonl")
        backend = VertexTuningBackend(project=PROJECT, location=LOCATION,
                                      credentials=google.oauth2.credentials.Credentials(token="bench"), base_url=url)
        spec = TuningSpec(backend="vertex", base_model=VERTEX_BASE, training_uri=uri, epochs=3)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            names = list(pool.map(lambda i: backend.create(spec, JobIdentity(f"kbenchc{i}", "fbench", 1)).name,
                                  range(n)))
        print(f"   created {len(names)} jobs in {time.perf_counter() - t0:.1f} s (emulator pid {proc.pid})", flush=True)
        deadline = time.time() + 300
        while True:
            jobs = requests.get(f"{url}/_emulator/resources", params={"kind": "tuningJobs"}, timeout=60).json()
            objs = jobs.get("tuningJobs", [])
            trained = sum(1 for o in objs if o["emu"].get("trained"))
            running = sum(1 for o in objs if o["resource"]["state"] == "JOB_STATE_RUNNING")
            if trained >= n or time.time() > deadline:
                break
            time.sleep(2)
        print(f"   emulator: {trained}/{n} trained, {running} RUNNING after {time.perf_counter() - t0:.1f} s",
              flush=True)
        (workdir / "jobs.json").write_text(json.dumps(names))
        results = {}
        pops = [x.strip() for x in args.populations.split(",") if x.strip()]
        for kind in pops:
            child_kind, parts = kind.removesuffix("-split"), 2 if kind.endswith("-split") else 1
            procs = []
            emu_cpu0 = proc_cpu_s(proc.pid)
            t1 = time.perf_counter()
            for j in range(parts):         # "-split": two triggerer processes, each with its share of the triggers
                (workdir / f"jobs-{kind}-{j}.json").write_text(json.dumps(names[j::parts]))
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child_kind, "--jobs-file",
                       str(workdir / f"jobs-{kind}-{j}.json"), "--out", str(workdir / f"{kind}-{j}.json"),
                       "--triggers", str(n // parts), "--warmup", str(args.warmup), "--window", str(args.window),
                       "--max-burst", str(args.max_burst)]
                log = open(workdir / f"{kind}-{j}.log", "w")  # noqa: SIM115 - closed when the child has ended
                procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
            for j, (child_proc, log) in enumerate(procs):
                rc = child_proc.wait(timeout=args.max_burst + args.warmup + args.window + 240)
                log.close()
                if rc != 0:
                    raise RuntimeError(f"child {kind}-{j} failed (rc {rc}); see {workdir / f'{kind}-{j}.log'}:\n"
                                       + (workdir / f"{kind}-{j}.log").read_text()[-3000:])
            emu_cpu1 = proc_cpu_s(proc.pid)
            r = combine([json.loads((workdir / f"{kind}-{j}.json").read_text()) for j in range(parts)])
            if kind.startswith("ours"):
                gets = requests.get(f"{url}/_emulator/requests", params={"path": "tuningJobs/", "method": "GET"},
                                    timeout=60).json()["requests"]
                r["status_gets_in_window"] = sum(1 for q in gets if r["window_start"] <= q["t"] < r["window_end"])
                r["status_gets_total"] = sum(1 for q in gets if q["t"] >= r["window_start"] - r["warmup_s"] - 5
                                             and q["t"] < r["window_end"])
            r["emulator_cpu_s"] = emu_cpu1 - emu_cpu0
            results[kind] = r
            print(f"   child {kind}: {time.perf_counter() - t1:.0f} s (burst {r['burst_s']:.0f} s); "
                  f"logs {workdir}/{kind}-*.log", flush=True)
        mib = lambda k: k / 1024
        rows = []
        for kind, r in results.items():
            inc = r["rss_window_max_kib"] - r["rss_pre_kib"]
            lazy = r["rss_lazy_imports_kib"] - r["rss_pre_kib"]
            rows.append([kind, f"{mib(r['rss_after_imports_kib']):.1f}", f"{mib(r['rss_pre_kib']):.1f}",
                         f"{mib(r['rss_window_max_kib']):.1f}", f"{mib(inc):.1f}", f"{mib(lazy):.1f}",
                         f"{(inc - lazy) / r['n']:.1f}",
                         f"{mib(r['vm_hwm_kib']):.1f}", f"{r['burst_s']:.0f}/{r['burst_cpu_s']:.1f}",
                         f"{r['warmup_lag_max_ms']:.0f}/{r['warmup_lag_over_200ms']}",
                         f"{r['cpu_window_s']:.2f}", f"{r['cpu_pct_window']:.2f}",
                         r.get("status_gets_in_window", "-"), f"{r['lag_p99_ms']:.0f}/{r['lag_max_ms']:.0f}",
                         r["done_early"], f"{r['load_window'][0]:.2f}-{r['load_window'][1]:.2f}"])
        print(table(f"c. {n} triggers in one event loop per fresh child process (-split: the same {n} over two "
                    f"triggerer processes side by side, {n // 2} each, figures added up), window {args.window:.0f} s "
                    f"starting {args.warmup:.0f} s after the start-up burst",
                    ["population", "RSS after imports MiB", "RSS pre-trigger MiB", "RSS peak in window MiB",
                     "RSS increase MiB", "of which lazy imports MiB", "KiB/trigger (excl. imports)", "VmHWM MiB",
                     "burst s/CPU s", "burst loop lag max ms/#>200ms",
                     "CPU s window", "CPU % of 1 core", "status GETs in window", "window lag p99/max ms",
                     "ended early", "load"], rows))
        ratios = []
        summary = {"populations": results}
        for kind in (k for k in results if k.startswith("ours")):
            dt = results.get("datetime-split" if kind.endswith("-split") else "datetime")
            us = results[kind]
            cpu = us["cpu_pct_window"]
            polls = us.get("status_gets_in_window") or 0
            per_poll_ms = 1000 * us["cpu_window_s"] / polls if polls else float("nan")
            # long-run cadences of the default policy: 60 s while no progress is reported, 300 s once it is
            proj60 = 100 * (n / 60.0) * per_poll_ms / 1000
            proj300 = 100 * (n / 300.0) * per_poll_ms / 1000
            if dt:
                total = us["rss_window_max_kib"] / dt["rss_window_max_kib"]
                inc = ((us["rss_window_max_kib"] - us["rss_pre_kib"])
                       / max(1, dt["rss_window_max_kib"] - dt["rss_pre_kib"]))
                ratios += [[f"{kind}: total RSS (peak in window) / DateTime", f"{total:.3f}x", "<= 1.25x",
                            "PASS" if total <= 1.25 else "FAIL"],
                           [f"{kind}: VmHWM (lifetime peak) / DateTime", f"{us['vm_hwm_kib'] / dt['vm_hwm_kib']:.3f}x",
                            "(info)", ""],
                           [f"{kind}: RSS increase due to the triggers / DateTime's", f"{inc:.0f}x", "(info)", ""]]
                summary[kind] = {"total_rss_ratio": total, "rss_increase_ratio": inc}
            ratios += [[f"{kind}: CPU % of one core in the window ({polls} polls = {polls / us['window_s']:.1f}/s)",
                        f"{cpu:.2f} %", "<= 5 %", "PASS" if cpu <= 5 else "FAIL"],
                       [f"{kind}: CPU per status poll (window CPU / window GETs)", f"{per_poll_ms:.2f} ms", "(info)",
                        ""],
                       [f"{kind}: projected, every trigger at the 60 s cadence ({n / 60:.1f} polls/s)",
                        f"{proj60:.2f} %",
                        "<= 5 %", "PASS" if proj60 <= 5 else "FAIL"],
                       [f"{kind}: projected, every trigger at the 300 s cadence ({n / 300:.1f} polls/s)",
                        f"{proj300:.2f} %", "<= 5 %", "PASS" if proj300 <= 5 else "FAIL"]]
            summary.setdefault(kind, {}).update(cpu_pct=cpu, cpu_ms_per_poll=per_poll_ms, proj60=proj60,
                                                proj300=proj300)
            print(f"   {kind}: objects alive after the window: {us['census']}; events before the window end: "
                  f"{us['events']}")
        for kind in (k for k in results if k.startswith("datetime")):
            ratios.append([f"{kind}: CPU % of one core in the window", f"{results[kind]['cpu_pct_window']:.2f} %",
                           "(reference)", ""])
        print(table("c. ratios (same run, child processes one after the other)", ["figure", "value", "goal", ""],
                    ratios))
        print("   emulator CPU (its own process, not counted above) while each child ran: "
              + ", ".join(f"{k} {r['emulator_cpu_s']:.1f} s" for k, r in results.items()))
        print("   Read the RSS goal against total RSS: it is what a triggerer process costs and what its memory limit\n"
              "   sees; the DateTimeTrigger's own increase is a few KiB per trigger, so the increase ratio mostly\n"
              "   measures that near-zero denominator.  KiB/trigger is the figure to track for our triggers.")
        return summary
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def child(args) -> None:
    """One population in a fresh process: imports like a triggerer, n triggers in one loop, sample RSS and CPU.

    Warm-up = until the start-up burst is over (CPU below 25 % of a core for 3 s; at most --max-burst s), then
    --warmup more seconds; then the --window.  Loop lag is probed every 100 ms (the triggerer warns at 0.2 s).
    """
    import gc

    rss_start = rss_kib()
    # what a triggerer process has imported before it runs any trigger
    import airflow.jobs.triggerer_job_runner  # noqa: F401
    from airflow.sdk.module_loading import import_string
    from airflow.triggers.base import BaseTrigger  # noqa: F401

    gc.collect()
    rss_after_imports = rss_kib()
    n = args.triggers
    ours = args.child.startswith("ours")
    if ours:
        from gemini_tuning.core.polling import PollPolicy

        cls = import_string("gemini_tuning.triggers.TuningJobTrigger")
        names = json.loads(Path(args.jobs_file).read_text())
        deadline = time.time() + 24 * 3600
        # kwargs from serialize(), the way the triggerer re-creates a trigger
        kwargs = [cls(backend="vertex", job_name=names[i % len(names)], project_id=PROJECT, location=LOCATION,
                      poll=PollPolicy().to_dict(), deadline=deadline).serialize()[1] for i in range(n)]
    else:
        cls = import_string("airflow.providers.standard.triggers.temporal.DateTimeTrigger")
        moment = datetime.now(UTC) + timedelta(days=1)
        kwargs = [cls(moment=moment).serialize()[1] for _ in range(n)]
    gc.collect()
    rss_pre = rss_kib()
    rss_lazy = rss_pre
    if ours:
        # what the first trigger imports lazily (the hook with providers-google's credentials, aiohttp): one-time,
        # not per trigger. (google-genai and google-cloud-storage are not imported by the trigger: the census
        # below says whether anything loaded them.)
        import aiohttp  # noqa: F401

        import gemini_tuning.hooks  # noqa: F401

        gc.collect()
        rss_lazy = rss_kib()
    out: dict = {"kind": args.child, "n": n, "rss_start_kib": rss_start, "rss_after_imports_kib": rss_after_imports,
                 "rss_pre_kib": rss_pre, "rss_lazy_imports_kib": rss_lazy}

    async def main():
        trigs = [cls(**kw) for kw in kwargs]
        events: list = []

        async def first(t):
            ev = await t.run().__anext__()
            events.append(ev.payload if not isinstance(ev.payload, datetime) else "datetime")
            return ev

        cpu0, wall0 = time.process_time(), time.perf_counter()
        lags: dict[str, list[float]] = {"warmup": [], "window": []}
        phase = {"name": "warmup"}
        samples: list[tuple[float, int, float]] = []

        async def sampler():
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.1)
                lags[phase["name"]].append(time.perf_counter() - t - 0.1)
                samples.append((time.perf_counter() - wall0, rss_kib(), time.process_time() - cpu0))

        s = asyncio.create_task(sampler())
        tasks = [asyncio.create_task(first(t)) for t in trigs]
        # start-up burst: until CPU < 25 % of a core over the last 3 s
        per_s: list[float] = []
        last = time.process_time()
        while True:
            await asyncio.sleep(1.0)
            now_cpu = time.process_time()
            per_s.append(now_cpu - last)
            last = now_cpu
            elapsed = time.perf_counter() - wall0
            if (len(per_s) >= 5 and sum(per_s[-3:]) / 3 < 0.25) or elapsed >= args.max_burst:
                break
        burst_s, burst_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        burst_rss_max = max(r for _, r, _ in samples) if samples else rss_kib()
        await asyncio.sleep(args.warmup)
        phase["name"] = "window"
        cpu_w0, wall_w0, ru0 = time.process_time(), time.time(), resource.getrusage(resource.RUSAGE_SELF)
        warmup_s = time.perf_counter() - wall0
        load0 = os.getloadavg()[0]
        i0 = len(samples)
        await asyncio.sleep(args.window)
        cpu_w1, wall_w1, ru1 = time.process_time(), time.time(), resource.getrusage(resource.RUSAGE_SELF)
        phase["name"] = "warmup"
        window_rss = [r for _, r, _ in samples[i0:]]

        def p99(xs):
            return 1000 * sorted(xs)[int(0.99 * (len(xs) - 1))] if xs else 0.0

        out.update(
            burst_s=burst_s, burst_cpu_s=burst_cpu, burst_rss_max_kib=burst_rss_max,
            cpu_warmup_s=cpu_w0 - cpu0, warmup_s=warmup_s,
            cpu_window_s=cpu_w1 - cpu_w0, window_s=wall_w1 - wall_w0,
            cpu_pct_window=100.0 * (cpu_w1 - cpu_w0) / (wall_w1 - wall_w0),
            rusage_window_s=(ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            window_start=wall_w0, window_end=wall_w1, rss_window_max_kib=max(window_rss),
            rss_window_min_kib=min(window_rss), rss_window_end_kib=window_rss[-1], vm_hwm_kib=rss_kib("VmHWM"),
            lag_p99_ms=p99(lags["window"]), lag_max_ms=1000 * max(lags["window"] or [0.0]),
            warmup_lag_max_ms=1000 * max(lags["warmup"] or [0.0]),
            warmup_lag_over_200ms=sum(1 for x in lags["warmup"] if x > 0.2),
            done_early=sum(t.done() for t in tasks),
            events=sorted({json.dumps(e, default=str)[:200] for e in events})[:5],
            load_window=[load0, os.getloadavg()[0]],
            rss_timeline=[(round(t, 1), r) for t, r, _ in samples[::20]],
            cpu_timeline=[(round(t, 1), round(c, 2)) for t, _, c in samples[::20]])
        if ours:
            import ssl

            import aiohttp

            from gemini_tuning.backends.vertex import VertexTuningBackend

            objs = gc.get_objects()
            out["census"] = {
                "VertexTuningBackend": sum(isinstance(o, VertexTuningBackend) for o in objs),
                "aiohttp.ClientSession": sum(isinstance(o, aiohttp.ClientSession) for o in objs),
                "ssl.SSLContext": sum(isinstance(o, ssl.SSLContext) for o in objs),
                "google.genai loaded": "google.genai" in sys.modules,
                "google.cloud.storage loaded": "google.cloud.storage" in sys.modules,
                "threads": threading.active_count()}
            del objs
        s.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(s, *tasks, return_exceptions=True)

    if args.profile:
        import cProfile

        cProfile.runctx("asyncio.run(main())", globals(), locals(), args.profile)
    else:
        asyncio.run(main())
    Path(args.out).write_text(json.dumps(out))


# ----------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    p.add_argument("--a-job-seconds", type=float, default=60.0)
    p.add_argument("--b-job-seconds", type=float, default=3600.0)
    p.add_argument("--triggers", type=int, default=1000)
    p.add_argument("--warmup", type=float, default=15.0,
                   help="part c: seconds after the start-up burst (CPU < 25 %% of a core) before the window")
    p.add_argument("--window", type=float, default=60.0, help="part c: steady-state window (seconds)")
    p.add_argument("--c-examples", type=int, default=120, help="part c: training examples per job")
    p.add_argument("--c-step-seconds", type=float, default=60.0, help="part c: seconds per training step")
    p.add_argument("--max-burst", type=float, default=240.0, help="part c: longest start-up burst waited for")
    p.add_argument("--populations", default="datetime,ours,datetime-split,ours-split",
                   help="part c, comma-separated: datetime, ours")
    p.add_argument("--child", choices=["ours", "datetime"], help=argparse.SUPPRESS)
    p.add_argument("--jobs-file", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--profile", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write all figures to this file")
    p.add_argument("--no-pycache", action="store_true", help="compile from source in every process (see setup_env)")
    args = p.parse_args(argv)
    setup_env(pycache=not args.no_pycache)
    if args.child:
        child(args)
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(f"bench_tuning_wait: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load()}; "
          f"code {code_state()}", flush=True)
    t0 = time.perf_counter()
    results = {}
    for part, fn in (("a", part_a), ("b", part_b), ("c", part_c)):
        if args.part in (part, "all"):
            results[part] = fn(args)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average at the end {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
