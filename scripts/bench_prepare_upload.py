#!/usr/bin/env python
"""Benchmark step 1 end to end: validate + convert + upload N MB of Vertex JSONL to the GCS emulator.

Usage: .venv/bin/python scripts/bench_prepare_upload.py [MB=1024] [--split auto] [--naive] [--keep PATH]

1. Generates realistic Vertex SFT JSONL (seeded; ~1 KB/line, written by ``json.dumps`` with its default
   separators as most tooling does; half the lines carry a system instruction, a fifth are multi-turn, 5 % hold
   non-ASCII words, 3 % repeat an earlier line). With ``duplicates="drop"`` and a validation split of at most
   4,000 examples the converted training file stays under Vertex's 10^9-byte limit even for 1024 MB of input.
2. Starts the emulator in its own process (``python -m emulator --port 0 --gcs-port 0 --data-dir <tmp>``), so
   its memory is not counted.
3. Runs, each in a fresh child process (so each peak RSS is its own):
   * ``raw``: ``blob.upload_from_filename`` of the input file (the client's default chunk size);
   * ``core``: validate + convert only, into a hashing null sink (the core's own memory);
   * ``pipeline``: what the operator does - ``open_source`` -> ``iter_lines`` -> ``prepare_dataset`` writing into
     ``StagedUpload`` sinks -> ``finish`` (compose to the content-addressed name, create-only);
   * ``naive`` (``--naive``): validate into temp files, then ``upload_create_only`` them.
4. Prints MB/s (input MB / wall time), the ratio pipeline/raw and the peak RSS (``ru_maxrss``) of each child.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from bench_common import plugins_on_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
plugins_on_path()

BUCKET = "bench-bucket"
WORDS = (
    "the a customer order invoice refund shipping delay product review quality support ticket account "
    "password reset billing subscription upgrade cancel please thanks issue resolved escalate priority "
    "warehouse delivery address tracking number payment card declined receipt summary classify sentiment "
    "positive negative neutral translate english french german answer question explain briefly detail "
    "because however therefore example policy warranty return exchange damaged missing item package"
).split()
UNICODE_WORDS = WORDS + "résumé café naïve Zürich 東京 配送 注文 über straße".split()
SYSTEMS = [
    "You are a concise customer-support assistant. Answer in one or two sentences.",
    "Classify the sentiment of the review as positive, negative or neutral and give a one-line reason.",
    "You translate support tickets into plain English and summarise the customer's request.",
    "Answer as the order-tracking bot of an online shop. Never invent tracking numbers.",
]


def generate(path: str, megabytes: float, seed: int = 7) -> int:
    rng = random.Random(seed)
    target = int(megabytes * 1_000_000)
    written = n = 0
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as fh:
        batch: list[str] = []
        while written < target:
            if recent and rng.random() < 0.03:
                line = rng.choice(recent)
            else:
                words = UNICODE_WORDS if rng.random() < 0.05 else WORDS
                turns = []
                for t in range(2 if rng.random() < 0.2 else 1):
                    user = f"Ticket {n}-{t}: " + " ".join(rng.choices(words, k=rng.randint(20, 95))).capitalize()
                    model = " ".join(rng.choices(words, k=rng.randint(6, 45))).capitalize() + "."
                    turns += [{"role": "user", "parts": [{"text": user + "?"}]},
                              {"role": "model", "parts": [{"text": model}]}]
                ex: dict = {"contents": turns}
                if rng.random() < 0.5:
                    ex = {"systemInstruction": {"role": "system", "parts": [{"text": rng.choice(SYSTEMS)}]}, **ex}
                line = json.dumps(ex, ensure_ascii=False) + "\n"
                recent.append(line)
                if len(recent) > 2000:
                    del recent[:1000]
            batch.append(line)
            written += len(line.encode())
            n += 1
            if len(batch) >= 2000:
                fh.write("".join(batch))
                batch.clear()
        fh.write("".join(batch))
    return n


# ---------------------------------------------------------------------------------------------- children
def _client():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(credentials=AnonymousCredentials(), project="bench-project")


def _options(split: float):
    from gemini_tuning.core.dataset import DatasetOptions

    return DatasetOptions(target="vertex", validation_fraction=split, duplicates="drop")


class _HashSink:
    def __init__(self) -> None:
        self.h, self.n = hashlib.sha256(), 0

    def write(self, b) -> int:
        self.h.update(b)
        self.n += len(b)
        return len(b)


def child(mode: str, path: str, split: float, tag: str) -> dict:
    from gemini_tuning.backends import gcs
    from gemini_tuning.core.dataset import iter_lines, prepare_dataset

    out: dict = {"mode": mode}
    t0 = time.perf_counter()
    if mode == "raw":
        blob = _client().bucket(BUCKET).blob(f"raw/{tag}/input.jsonl")
        blob.upload_from_filename(path, content_type="application/jsonl", if_generation_match=0)
    elif mode == "core":
        with open(path, "rb") as fh:
            res = prepare_dataset(iter_lines(fh), source_name=path, options=_options(split), train_sink=_HashSink(),
                                  validation_sink=_HashSink() if split else None)
        out.update(train_count=res.train_count, validation_count=res.validation_count, train_bytes=res.train_bytes)
    elif mode == "pipeline":  # the operator's flow, without Airflow
        import logging

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="    %(message)s")
        logging.getLogger(gcs.__name__).setLevel(logging.INFO)
        client = _client()
        staging = f"gs://{BUCKET}/datasets/_staging/{tag}"
        with gcs.open_source(path, client) as raw, \
                gcs.StagedUpload(client, f"{staging}/train.jsonl") as t_up, \
                gcs.StagedUpload(client, f"{staging}/validation.jsonl") as v_up:
            res = prepare_dataset(iter_lines(raw), source_name=path, options=_options(split), train_sink=t_up,
                                  validation_sink=v_up if split else None)
            out["validated_s"] = time.perf_counter() - t0
            key = res.train_sha256[:16]
            train = t_up.finish(f"gs://{BUCKET}/datasets/{tag}/{key}/train.jsonl", sha256=res.train_sha256)
            if res.validation_count:
                v_up.finish(f"gs://{BUCKET}/datasets/{tag}/{key}/validation-{res.validation_sha256[:16]}.jsonl",
                            sha256=res.validation_sha256)
        out.update(train_count=res.train_count, validation_count=res.validation_count, train_bytes=res.train_bytes,
                   created=train.created, uri=train.uri)
    elif mode == "naive":
        client = _client()
        with open(path, "rb") as fh, tempfile.NamedTemporaryFile() as tr, tempfile.NamedTemporaryFile() as va:
            res = prepare_dataset(iter_lines(fh), source_name=path, options=_options(split), train_sink=tr,
                                  validation_sink=va if split else None)
            tr.flush()
            va.flush()
            out["validated_s"] = time.perf_counter() - t0
            key = res.train_sha256[:16]
            gcs.upload_create_only(client, tr.name, f"gs://{BUCKET}/naive/{tag}/{key}/train.jsonl",
                                   sha256=res.train_sha256)
            if res.validation_count:
                gcs.upload_create_only(client, va.name, f"gs://{BUCKET}/naive/{tag}/{key}/validation.jsonl",
                                       sha256=res.validation_sha256)
        out.update(train_count=res.train_count, train_bytes=res.train_bytes)
    else:
        raise SystemExit(f"unknown mode {mode}")
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(mode: str, path: str, split: float, env: dict, tag: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--path", path, "--split", str(split),
           "--tag", tag]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-4000:]}")
    if proc.stderr.strip():
        print(proc.stderr.rstrip(), file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("megabytes", nargs="?", type=float, default=1024.0)
    ap.add_argument("--split", default="auto", help="validation_fraction (auto: at most ~4,000 examples)")
    ap.add_argument("--naive", action="store_true", help="also time validate-to-temp-file-then-upload")
    ap.add_argument("--keep", help="use/keep this input file (generated only if missing)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--tag", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, float(args.split), args.tag)), flush=True)
        return

    work = tempfile.mkdtemp(prefix="bench-prepare-")
    path = args.keep or os.path.join(work, "train.jsonl")
    emulator = None
    try:
        if not os.path.exists(path):
            t0 = time.perf_counter()
            n = generate(path, args.megabytes)
            print(f"generated {os.path.getsize(path) / 1e6:,.1f} MB, {n:,} lines in {time.perf_counter() - t0:.1f}s")
        size_mb = os.path.getsize(path) / 1e6
        if args.split == "auto":
            with open(path, "rb") as fh:
                lines = sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 24), b""))
            split = min(0.1, 4000 / max(lines, 1))
        else:
            split = float(args.split)

        data_dir = os.path.join(work, "emulator")
        emulator = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--data-dir", data_dir,
             "--default-bucket", BUCKET, "--log-level", "WARNING"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        info = json.loads(emulator.stdout.readline())
        env = {**os.environ, "STORAGE_EMULATOR_HOST": info["gcs_url"], "NO_GCE_CHECK": "true"}
        print(f"emulator at {info['gcs_url']} (own process, data on disk); input {size_mb:,.1f} MB; "
              f"validation_fraction {split:.4f}; duplicates=drop; cpus {os.cpu_count()}, "
              f"load {os.getloadavg()[0]:.2f}", flush=True)

        results = {}
        modes = ["raw", "core", "pipeline"] + (["naive"] if args.naive else [])
        for mode in modes:
            results[mode] = r = run_child(mode, path, split, env, tag=f"{mode}-{os.getpid()}")
            extra = f", validated after {r['validated_s']:.1f}s" if "validated_s" in r else ""
            print(f"{mode:9s} {r['seconds']:6.1f}s {size_mb / r['seconds']:7.1f} MB/s  peak RSS "
                  f"{r['peak_rss_mb']:6.1f} MB{extra}", flush=True)
        raw, pipe = results["raw"], results["pipeline"]
        print(f"train: {pipe['train_count']:,} examples, {pipe['train_bytes'] / 1e6:,.1f} MB -> {pipe['uri']}; "
              f"validation: {pipe['validation_count']:,}")
        print(f"ratio prepare+upload / raw upload = {raw['seconds'] / pipe['seconds']:.2f}"
              + (f"; naive / raw = {raw['seconds'] / results['naive']['seconds']:.2f}" if args.naive else ""))
        print(f"peak RSS of the validating process: {pipe['peak_rss_mb']:.1f} MB "
              f"(core alone {results['core']['peak_rss_mb']:.1f} MB, raw upload alone {raw['peak_rss_mb']:.1f} MB)")
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
