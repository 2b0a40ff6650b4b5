#!/usr/bin/env python
"""Issue 10 benchmark: continuous tuning from a good champion versus tuning the base model again.

Usage: .venv/bin/python scripts/bench_continuous.py [--repeats 3] [--first 180] [--base-epochs 5]

On the emulator (in-process, real learner, real HTTP through google-genai), per repeat:

1. the *champion*: the base model tuned on the first ``--first`` demo examples for 3 epochs;
2. a *new batch* of the same task (the remaining demo examples), tuned two ways:
   - continuing from the champion (``preTunedModel``, 3 epochs), and
   - from the base model (``--base-epochs`` epochs).

Every epoch leaves a checkpoint served from its own endpoint, so each learning curve is the held-out score
(normalized match on ``include/demo/eval_prompts.jsonl``, temperature 0) of checkpoint 1, 2, ... Goal: continuing
with 1 epoch reaches at least the champion's score, where the base model needs more epochs for it. Job seeds are
random (as on Vertex), hence the repeats. The load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
from bench_common import code_state, load, offline_env, table  # noqa: E402

PROJECT, LOCATION, BUCKET = "bench-project", "us-central1", "bench-continuous"
DEMO = ROOT / "include" / "demo"


def rows(name: str) -> list[dict]:
    return [json.loads(x) for x in (DEMO / name).read_text().splitlines() if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--first", type=int, default=180, help="examples of the champion's batch")
    ap.add_argument("--base-epochs", type=int, default=5)
    args = ap.parse_args()
    offline_env()
    import google.oauth2.credentials
    from google import genai
    from google.genai import types

    from emulator.app import EmulatorConfig
    from emulator.server import EmulatorServer

    srv = EmulatorServer(config=EmulatorConfig(time_scale=0.002), default_bucket=BUCKET)
    ep = srv.start()
    client = genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                          credentials=google.oauth2.credentials.Credentials(token="bench"),
                          http_options=types.HttpOptions(base_url=ep.url))
    train, prompts = rows("train.jsonl"), rows("eval_prompts.jsonl")
    system = (DEMO / "system_instruction.txt").read_text().strip()

    def upload(name: str, items: list[dict]) -> str:
        requests.post(f"{ep.gcs_url}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name},
                      data="".join(json.dumps(r) + "\n" for r in items).encode(), timeout=60).raise_for_status()
        return f"gs://{BUCKET}/{name}"

    def tune(source: str, uri: str, epochs: int, display: str) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            job = client.tunings.tune(base_model=source, training_dataset=types.TuningDataset(gcs_uri=uri),
                                      config=types.CreateTuningJobConfig(epoch_count=epochs,
                                                                         tuned_model_display_name=display))
        while True:
            body = requests.get(f"{ep.url}/v1/{job.name}", timeout=30).json()
            if body["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                assert body["state"] == "JOB_STATE_SUCCEEDED", body
                return body
            time.sleep(0.2)

    def score(endpoint: str) -> float:
        hits = 0
        for p in prompts:
            body = {"contents": [{"role": "user", "parts": [{"text": p["prompt"]}]}],
                    "systemInstruction": {"parts": [{"text": system}]}, "generationConfig": {"temperature": 0}}
            out = requests.post(f"{ep.url}/v1/{endpoint}:generateContent", json=body, timeout=30).json()
            hits += out["candidates"][0]["content"]["parts"][0]["text"].strip().lower() == p["reference"]
        return hits / len(prompts)

    def curve(job: dict) -> list[float]:
        return [score(c["endpoint"]) for c in job["tunedModel"]["checkpoints"]]

    print(f"code: {code_state()}\nload average: {load()}\ndata: champion batch {args.first} examples, new batch "
          f"{len(train) - args.first} examples, held-out {len(prompts)} prompts")
    first, second = upload("a.jsonl", train[:args.first]), upload("b.jsonl", train[args.first:])
    out, wins = [], 0
    try:
        for r in range(1, args.repeats + 1):
            t0 = time.perf_counter()
            champ = tune("gemini-2.5-flash", first, 3, f"router-{r}")
            champ_score = score(champ["tunedModel"]["endpoint"])
            cont = curve(tune(champ["tunedModel"]["model"], second, 3, f"router-{r}"))
            base = curve(tune("gemini-2.5-flash", second, args.base_epochs, f"base-{r}"))
            needed = next((i + 1 for i, s in enumerate(base) if s >= champ_score), None)
            level = next((i + 1 for i, s in enumerate(base) if s >= cont[0]), None)
            ok = cont[0] >= champ_score and (needed is None or needed > 1)
            wins += ok
            fmt = lambda c: " ".join(f"{s:.3f}" for s in c)
            after = lambda n: f"{n} epoch(s)" if n else f"> {args.base_epochs} epochs"
            out.append([r, f"{champ_score:.3f}", fmt(cont), fmt(base), after(needed), after(level),
                        "yes" if ok else "NO", f"{time.perf_counter() - t0:.1f}"])
    finally:
        srv.stop()
    print(table("Held-out normalized match by epoch (checkpoint 1, 2, ...)",
                ["repeat", "champion", "continue from champion", "from the base model",
                 "base reaches the champion after", "base reaches 1 epoch of continuing after", "goal met", "wall s"],
                out))
    print(f"\ngoal (1 epoch from the champion >= champion, base needs more than 1 epoch): met in {wins} of "
          f"{args.repeats} repeats; load average {load()}")


if __name__ == "__main__":
    main()
