#!/usr/bin/env python
"""Issue 5 benchmark: online evaluation throughput against a requests-per-minute quota.

Usage: .venv/bin/python scripts/bench_eval.py [--prompts 2000] [--rpm 1200] [--latency 0.1] [--concurrency 16]
                                             [--sequential 200] [--fault-prompts 2000] [--fault-rate 0.10]
                                             [--judge-prompts 2000]

Starts ``python -m emulator`` in its own process, adds a latency rule (100 ms on generateContent), and runs
``run_online`` over N prompts for one target (base model gemini-2.5-flash through the real
``VertexTuningBackend.agenerate``, built like the hook builds it) with ``EngineConfig(rpm=1200)``.  Reports
prompts/s / (rpm / 60) -- goal >= 0.9 -- beside a plain sequential loop (one await after another, no limiter) over a
sample in the same run, errors (must be 0) and, with --fault-prompts, a second run with ~10 % 429/503 answers
(lost prompts must be 0), and (issue 12) generation by two models plus pairwise judging of every prompt in both
orders, pipelined through one engine with a quota of ``--rpm`` per model (challenger, champion, judge) and the same
fault rate on every call: judged prompts/s against the judge-bound maximum (rpm / 60 / 2 calls per prompt; the
faulted attempts count against the quota, so the reachable maximum is that times the share of attempts that
succeed) - goal >= 0.9 - and 0 prompts without a verdict.  Counts come from the emulator's request log (robust on
a shared machine); the load average is printed beside every rate.  Timings are never asserted by unit tests
(house rule).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from bench_common import code_state, load, offline_env, table  # noqa: E402

PROJECT, LOCATION, MODEL = "bench-project", "us-central1", "gemini-2.5-flash"


def setup_env() -> None:
    offline_env()


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Emulator:
    """``python -m emulator`` in its own process (own GIL), on free ports, output to a file."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-eval-"))
        self.out = self.dir / "emulator.out"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--log-level", "WARNING"],
            cwd=str(ROOT), stdout=open(self.out, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True)
        deadline = time.time() + 60
        while True:
            lines = [x for x in self.out.read_text().splitlines() if x.startswith("{")]
            if lines:
                self.url = json.loads(lines[0])["url"]
                break
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"emulator did not start: {self.out.read_text()}")
            time.sleep(0.2)
        import requests

        self.http = requests.Session()

    def admin(self, method: str, what: str, **kw):
        r = self.http.request(method, f"{self.url}/_emulator/{what}", timeout=60, **kw)
        r.raise_for_status()
        return r.json()

    def generate_requests(self) -> list[dict]:
        return self.admin("GET", "requests", params={"path": "generateContent", "method": "POST"})["requests"]

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def prompts(n: int):
    from gemini_tuning.core.promptset import Prompt

    lines = (ROOT / "include" / "demo" / "eval_prompts.jsonl").read_text().splitlines()
    base = [json.loads(x) for x in lines if x.strip()]
    return [Prompt(id=f"p{i:05d}", prompt=base[i % len(base)]["prompt"] + f"\n(#{i})",
                   reference=base[i % len(base)]["reference"]) for i in range(n)]


def max_in_window(times: list[float], window: float = 60.0) -> int:
    """Largest number of requests the service saw in any sliding ``window`` seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


async def engine_run(generate, items, target, cfg) -> dict:
    from gemini_tuning.services.eval_engine import run_online

    c0, t0 = time.process_time(), time.perf_counter()
    answers = await run_online(generate, items, [target], cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    got = answers[target.label]
    errors = [a for a in got.values() if a.error]
    answered = sum(1 for a in got.values() if a.error is None and a.text is not None)
    return {"wall_s": wall, "cpu_s": cpu, "rate": len(items) / wall, "answered": answered, "errors": len(errors),
            "missing": len(items) - len(got), "error_samples": sorted({e.error[:120] for e in errors})[:3]}


async def judge_run(emu, backend, settings, args) -> dict:
    import google.oauth2.credentials

    from gemini_tuning.backends.vertex_evaluation import VertexEvaluationBackend
    from gemini_tuning.services.eval_engine import EngineConfig, Target, run_online
    from gemini_tuning.services.eval_judge import Judge, JudgeConfig

    half = args.fault_rate / 2
    emu.admin("POST", "faults", json=[
        {"kind": "latency", "path": "evaluateInstances", "delay_s": args.latency},
        {"kind": "status", "path": "(generateContent|evaluateInstances)", "status": 429, "probability": half,
         "retry_after": 1},
        {"kind": "status", "path": "(generateContent|evaluateInstances)", "status": 503,
         "probability": min(1.0, half / (1 - half))}])
    judge_backend = VertexEvaluationBackend(project=PROJECT, location=LOCATION, base_url=emu.url,
                                            credentials=google.oauth2.credentials.Credentials(token="bench"))
    judge = Judge(judge_backend, JudgeConfig(mode="pairwise", model="gemini-2.5-flash"))
    targets = [Target("challenger", "vertex", "gemini-2.5-flash"), Target("champion", "vertex", "gemini-2.5-pro")]
    items = prompts(args.judge_prompts)

    async def generate(t, prompt):
        return await backend.agenerate(t.model, prompt.prompt, settings)

    cfg = EngineConfig(rpm=args.rpm, concurrency=args.concurrency * 2)
    load0, e0 = os.getloadavg()[0], emu.cpu_s()
    t0 = time.perf_counter()
    try:
        answers = await run_online(generate, items, targets, cfg, after_prompt=judge)
    finally:
        await judge_backend.aclose()
    wall = time.perf_counter() - t0
    reqs = emu.admin("GET", "requests")["requests"]
    gen = [q for q in reqs if "generateContent" in q["path"]]
    jud = [q for q in reqs if "evaluateInstances" in q["path"]]
    outcomes = judge.results.outcomes()
    lost = [p.id for p in items if outcomes.get(p.id) in (None, "error")
            or any(answers[t.label][p.id].error for t in targets)]
    quota = args.rpm / 60.0
    faulted = sum(1 for q in jud if q["status"] in (429, 503))
    return {"n": len(items), "wall_s": wall, "rate": len(items) / wall,
            # judge-bound: two judge calls per prompt at the judge model's quota
            "max_rate": quota / 2, "max_rate_faults": quota * (1 - faulted / max(1, len(jud))) / 2,
            "gen_requests": len(gen), "judge_requests": len(jud), "judge_faulted": faulted,
            "gen_faulted": sum(1 for q in gen if q["status"] in (429, 503)),
            "judge_max_per_60s": max_in_window([q["t"] for q in jud]),
            "gen_max_per_60s": max(max_in_window([q["t"] for q in gen if m in q["path"]])
                                   for m in ("gemini-2.5-flash:", "gemini-2.5-pro:")),
            "lost": len(lost), "counts": judge.results.counts(), "load": [load0, os.getloadavg()[0]],
            "emulator_cpu_s": emu.cpu_s() - e0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=2000)
    p.add_argument("--rpm", type=float, default=1200.0)
    p.add_argument("--latency", type=float, default=0.1, help="emulator latency on generateContent (s)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--sequential", type=int, default=200, help="prompts in the sequential sample")
    p.add_argument("--fault-prompts", type=int, default=2000, help="prompts in the fault run (0 = skip it)")
    p.add_argument("--fault-rate", type=float, default=0.10, help="share of answers that are 429 or 503")
    p.add_argument("--judge-prompts", type=int, default=2000,
                   help="prompts in the generation + pairwise judging run (0 = skip it)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    setup_env()
    print(f"bench_eval: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load()}; "
          f"code {code_state()}", flush=True)

    import google.oauth2.credentials

    from gemini_tuning.backends.vertex import VertexTuningBackend
    from gemini_tuning.core.generation import GenerationSettings
    from gemini_tuning.services.eval_engine import EngineConfig, Target

    emu = Emulator()
    results: dict = {}
    try:
        emu.admin("POST", "faults", json={"kind": "latency", "path": "generateContent", "delay_s": args.latency})
        # built like GeminiTuningHook.vertex(): genai Vertex mode, OAuth token credentials, base_url = emulator
        backend = VertexTuningBackend(project=PROJECT, location=LOCATION,
                                      credentials=google.oauth2.credentials.Credentials(token="bench"),
                                      base_url=emu.url)
        settings = GenerationSettings()
        target = Target("base", "vertex", MODEL)
        quota = args.rpm / 60.0

        async def generate(t, prompt):
            return await backend.agenerate(t.model, prompt.prompt, settings)

        async def run_all():
            # warm-up: import + client + connection (not timed), then clear the request log
            await generate(target, prompts(1)[0])
            emu.admin("DELETE", "requests")

            # 1. the engine, quota-limited
            items = prompts(args.prompts)
            cfg = EngineConfig(rpm=args.rpm, concurrency=args.concurrency)
            load0, e0 = os.getloadavg()[0], emu.cpu_s()
            r = await engine_run(generate, items, target, cfg)
            reqs = emu.generate_requests()
            r.update(load=[load0, os.getloadavg()[0]], requests=len(reqs), emulator_cpu_s=emu.cpu_s() - e0,
                     max_per_60s=max_in_window([q["t"] for q in reqs]),
                     non_200=sum(1 for q in reqs if q["status"] != 200))
            # what this limiter allows at best: its bucket starts full (burst = rate), then rpm/60 per second
            burst = max(1.0, quota)
            r["ideal_rate"] = len(items) / max(1e-9, (len(items) - burst) / quota)
            results["engine"] = r
            emu.admin("DELETE", "requests")

            # 2. sequential: one await after another, no limiter, same backend and latency
            sample = prompts(args.sequential)
            load0 = os.getloadavg()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            errs = 0
            for pr in sample:
                try:
                    await generate(target, pr)
                except Exception:  # noqa: BLE001
                    errs += 1
            wall = time.perf_counter() - t0
            results["sequential"] = {"wall_s": wall, "cpu_s": time.process_time() - c0, "rate": len(sample) / wall,
                                     "errors": errs, "n": len(sample), "load": [load0, os.getloadavg()[0]],
                                     "requests": len(emu.generate_requests())}
            emu.admin("DELETE", "requests")

            # 3. faults: ~fault_rate of the answers are 429 (Retry-After 1) or 503, on top of the latency
            if args.fault_prompts:
                half = args.fault_rate / 2
                emu.admin("POST", "faults", json=[
                    {"kind": "status", "path": "generateContent", "status": 429, "probability": half,
                     "retry_after": 1},
                    {"kind": "status", "path": "generateContent", "status": 503,
                     "probability": min(1.0, half / (1 - half))}])      # rules are tried in order
                items = prompts(args.fault_prompts)
                load0, e0 = os.getloadavg()[0], emu.cpu_s()
                r = await engine_run(generate, items, target, cfg)
                reqs = emu.generate_requests()
                r.update(load=[load0, os.getloadavg()[0]], requests=len(reqs), emulator_cpu_s=emu.cpu_s() - e0,
                         max_per_60s=max_in_window([q["t"] for q in reqs]),
                         s429=sum(1 for q in reqs if q["status"] == 429),
                         s503=sum(1 for q in reqs if q["status"] == 503),
                         n=len(items))
                results["faults"] = r
                emu.admin("DELETE", "faults")
                emu.admin("POST", "faults", json={"kind": "latency", "path": "generateContent",
                                                  "delay_s": args.latency})
                emu.admin("DELETE", "requests")

            # 4. generation (challenger + champion) and pairwise judging (both orders) of every prompt, pipelined
            # through one engine: a quota of rpm per model (two generators, one judge), the same latency on the
            # judge, ~fault_rate 429/503 on every call
            if args.judge_prompts:
                results["judge"] = await judge_run(emu, backend, settings, args)

        asyncio.run(run_all())
    finally:
        emu.stop()

    e, s = results["engine"], results["sequential"]
    ratio = e["rate"] / quota
    rows = [
        [f"run_online, rpm {args.rpm:.0f}, concurrency {args.concurrency}", args.prompts, f"{e['wall_s']:.1f}",
         f"{e['rate']:.2f}", f"{ratio:.3f}", ">= 0.9", "PASS" if ratio >= 0.9 else "FAIL", e["errors"] + e["missing"],
         e["requests"], e["max_per_60s"], f"{1000 * e['cpu_s'] / e['requests']:.2f}",
         f"{e['load'][0]:.2f}-{e['load'][1]:.2f}"],
        ["sequential loop (no limiter)", s["n"], f"{s['wall_s']:.1f}", f"{s['rate']:.2f}", f"{s['rate'] / quota:.3f}",
         "(reference)", "", s["errors"], s["requests"], "-", f"{1000 * s['cpu_s'] / max(1, s['requests']):.2f}",
         f"{s['load'][0]:.2f}-{s['load'][1]:.2f}"]]
    if "faults" in results:
        f = results["faults"]
        lost = f["errors"] + f["missing"]
        rows.append([f"run_online with {100 * args.fault_rate:.0f} % 429/503", f["n"], f"{f['wall_s']:.1f}",
                     f"{f['rate']:.2f}", f"{f['rate'] / quota:.3f}", "(info)", "", lost, f["requests"],
                     f["max_per_60s"], f"{1000 * f['cpu_s'] / f['requests']:.2f}",
                     f"{f['load'][0]:.2f}-{f['load'][1]:.2f}"])
    print(table(f"eval throughput: {MODEL} (Vertex backend), emulator latency {1000 * args.latency:.0f} ms, quota "
                f"{args.rpm:.0f} rpm = {quota:.1f}/s",
                ["run", "prompts", "wall s", "prompts/s", "/ quota", "goal", "", "errors+lost", "requests",
                 "max requests in 60 s", "client CPU ms/request", "load"], rows))
    checks = [["engine prompts/s / quota-limited maximum", f"{ratio:.3f}", ">= 0.9",
               "PASS" if ratio >= 0.9 else "FAIL"],
              ["engine prompts/s / this limiter's best (bucket starts full)", f"{e['rate'] / e['ideal_rate']:.3f}",
               "(info)", ""],
              ["engine / sequential loop (same run)", f"{e['rate'] / s['rate']:.2f}x", "(info)", ""],
              ["errors, engine run", e["errors"] + e["missing"], "0",
               "PASS" if e["errors"] + e["missing"] == 0 else "FAIL"],
              ["requests in any 60 s window, engine run", e["max_per_60s"], f"<= {args.rpm:.0f} (quota)",
               "ok" if e["max_per_60s"] <= args.rpm else "OVER"]]
    if "faults" in results:
        f = results["faults"]
        lost = f["errors"] + f["missing"]
        checks += [["lost prompts with faults", lost, "0", "PASS" if lost == 0 else "FAIL"],
                   ["faulted answers (429 / 503) -> retries", f"{f['s429']} / {f['s503']} -> {f['requests'] - f['n']}",
                    "(info)", ""],
                   ["requests in any 60 s window, fault run", f["max_per_60s"], f"<= {args.rpm:.0f} (quota)",
                    "ok" if f["max_per_60s"] <= args.rpm else "OVER"]]
        if f["error_samples"]:
            print("   fault-run errors:", f["error_samples"])
    if "judge" in results:
        j = results["judge"]
        ratio_j, ratio_jf = j["rate"] / j["max_rate"], j["rate"] / j["max_rate_faults"]
        print(table(f"generation + pairwise judging (both orders), {j['n']} prompts, {args.rpm:.0f} rpm per model "
                    f"(challenger, champion, judge), {100 * args.fault_rate:.0f} % 429/503 on every call",
                    ["wall s", "prompts judged/s", "quota-limited max (judge-bound, 2 calls/prompt)",
                     "/ max", "max if every attempt counts against the quota", "/ that max", "lost",
                     "judge requests (429/503)", "generation requests (429/503)", "load"],
                    [[f"{j['wall_s']:.1f}", f"{j['rate']:.2f}", f"{j['max_rate']:.2f}", f"{ratio_j:.3f}",
                      f"{j['max_rate_faults']:.2f}", f"{ratio_jf:.3f}", j["lost"],
                      f"{j['judge_requests']} ({j['judge_faulted']})", f"{j['gen_requests']} ({j['gen_faulted']})",
                      f"{j['load'][0]:.2f}-{j['load'][1]:.2f}"]]))
        checks += [["judged prompts/s / quota-limited max, with faults (attempts count against the quota)",
                    f"{ratio_jf:.3f}", ">= 0.9", "PASS" if ratio_jf >= 0.9 else "FAIL"],
                   ["prompts lost in judging (no verdict, or an answer missing)", j["lost"], "0",
                    "PASS" if j["lost"] == 0 else "FAIL"],
                   ["judge requests in any 60 s window", j["judge_max_per_60s"], f"<= {args.rpm:.0f}",
                    "ok" if j["judge_max_per_60s"] <= args.rpm else "OVER"],
                   ["generation requests per model in any 60 s window", j["gen_max_per_60s"], f"<= {args.rpm:.0f}",
                    "ok" if j["gen_max_per_60s"] <= args.rpm else "OVER"],
                   ["pairwise outcomes (win/loss/tie/error)",
                    "/".join(str(j["counts"][k]) for k in ("wins", "losses", "ties", "errors")), "(info)", ""]]
    print(table("eval: goals", ["figure", "value", "goal", ""], checks))
    print(f"   emulator CPU (own process): engine run {e['emulator_cpu_s']:.1f} s"
          + (f", fault run {results['faults']['emulator_cpu_s']:.1f} s" if "faults" in results else "")
          + f"; load average at the end {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
