#!/usr/bin/env python
"""Benchmark the dataset core: validate + convert N MB of realistic Vertex JSONL, print MB/s and peak RSS.

Usage: .venv/bin/python scripts/bench_dataset_core.py [MB=200] [--split 0.1] [--gzip] [--eval-prompts 500]
                                                    [--keep PATH]

Generates the file first (seeded, one pass, flat memory), then times prepare_dataset reading it through
iter_lines and writing to a hashing null sink. Lines are 0.5-2 KB: half carry a system instruction, a fifth
are multi-turn, 5 % (--unicode) mix in non-ASCII words (accents, CJK). Peak RSS is the whole process
(resource.getrusage).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import random
import resource
import tempfile
import time

from bench_common import plugins_on_path

plugins_on_path()

import msgspec  # noqa: E402

from gemini_tuning.core.dataset import DatasetOptions, iter_lines, prepare_dataset  # noqa: E402
from gemini_tuning.core.issues import DataValidationError  # noqa: E402

_VOCABULARY = """
    the a customer order invoice refund shipping delay product review quality support ticket account
    password reset billing subscription upgrade cancel please thanks issue resolved escalate priority
    warehouse delivery address tracking number payment card declined receipt summary classify sentiment
    positive negative neutral translate english french german answer question explain briefly detail
    because however therefore example policy warranty return exchange damaged missing item package
"""
WORDS = _VOCABULARY.split()
UNICODE_WORDS = [*WORDS, "résumé", "café", "naïve", "Zürich", "東京", "配送", "注文", "über", "straße"]
SYSTEMS = [
    "You are a concise customer-support assistant. Answer in one or two sentences.",
    "Classify the sentiment of the review as positive, negative or neutral and give a one-line reason.",
    "You translate support tickets into plain English and summarise the customer's request.",
    "Answer as the order-tracking bot of an online shop. Never invent tracking numbers.",
]


def _text(rng: random.Random, lo: int, hi: int, words: list[str]) -> str:
    return " ".join(rng.choices(words, k=rng.randint(lo, hi))).capitalize() + "."


def generate(path: str, megabytes: float, use_gzip: bool, unicode_share: float = 0.05, seed: int = 7) -> int:
    """Write about ``megabytes`` MB of JSONL; return the number of lines."""
    rng = random.Random(seed)
    target = int(megabytes * 1_000_000)
    enc = msgspec.json.Encoder()
    written = lines = 0
    opener = gzip.open if use_gzip else open
    with opener(path, "wb") as fh:
        batch: list[bytes] = []
        while written < target:
            words = UNICODE_WORDS if rng.random() < unicode_share else WORDS
            turns = []
            for t in range(2 if rng.random() < 0.2 else 1):
                user = f"Ticket {lines}-{t}: " + _text(rng, 30, 130, words)
                turns.append({"role": "user", "parts": [{"text": user}]})
                turns.append({"role": "model", "parts": [{"text": _text(rng, 8, 60, words)}]})
            ex: dict = {"contents": turns}
            if rng.random() < 0.5:
                ex = {"systemInstruction": {"role": "system", "parts": [{"text": rng.choice(SYSTEMS)}]}, **ex}
            line = enc.encode(ex) + b"\n"
            batch.append(line)
            written += len(line)
            lines += 1
            if len(batch) >= 2000:
                fh.write(b"".join(batch))
                batch.clear()
        fh.write(b"".join(batch))
    return lines


class HashingNullSink:
    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b: bytes) -> int:
        self.h.update(b)
        self.n += len(b)
        return len(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("megabytes", nargs="?", type=float, default=200.0)
    ap.add_argument("--split", type=float, default=0.0, help="validation_fraction")
    ap.add_argument("--gzip", action="store_true", help="gzip the generated file")
    ap.add_argument("--eval-prompts", type=int, default=0, help="number of evaluation prompts (leakage check)")
    ap.add_argument("--unicode", type=float, default=0.05, help="share of lines with non-ASCII text (0.05)")
    ap.add_argument("--keep", help="use/keep this file instead of a temp file (generated only if missing)")
    args = ap.parse_args()

    if args.keep:
        path = args.keep
        if not os.path.exists(path):
            generate(path, args.megabytes, args.gzip, args.unicode)
    else:
        fd, path = tempfile.mkstemp(suffix=".jsonl.gz" if args.gzip else ".jsonl")
        os.close(fd)
        t0 = time.perf_counter()
        generate(path, args.megabytes, args.gzip, args.unicode)
        print(f"generated {os.path.getsize(path) / 1e6:.1f} MB in {time.perf_counter() - t0:.1f}s -> {path}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open(path, "rb") as fh:
            t0 = time.perf_counter()
            n_bytes = sum(len(line) + 1 for line in iter_lines(fh))
            t_read = time.perf_counter() - t0
        eval_prompts = [f"evaluation prompt number {i}" for i in range(args.eval_prompts)] or None
        opts = DatasetOptions(validation_fraction=args.split)
        train, val = HashingNullSink(), HashingNullSink()
        with open(path, "rb") as fh:
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            try:
                res = prepare_dataset(iter_lines(fh), source_name=path, options=opts, train_sink=train,
                                      validation_sink=val if args.split else None, eval_prompts=eval_prompts)
            except DataValidationError as exc:  # e.g. file-too-large above 10^9 bytes: still report the speed
                print(f"DataValidationError: {exc}")
                res = None
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
    finally:
        if not args.keep:
            os.unlink(path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mb = n_bytes / 1e6
    if res is not None:
        n_lines = max(1, res.stats["examples"]["lines"])
        print(f"input {mb:.1f} MB (uncompressed), {res.train_count + res.validation_count:,} examples "
              f"({res.train_count:,} train / {res.validation_count:,} validation), "
              f"avg {n_bytes / n_lines:.0f} B/line")
    print(f"iter_lines only:  {mb / t_read:7.1f} MB/s")
    print(f"prepare_dataset:  {mb / elapsed:7.1f} MB/s wall, {mb / cpu:7.1f} MB/s cpu ({elapsed:.2f}s)")
    print(f"peak RSS: {peak:.1f} MB (before the run: {rss_before:.1f} MB)")
    if res is not None:
        print(f"train sha256 {res.train_sha256[:16]}..., {res.train_bytes / 1e6:.1f} MB written")


if __name__ == "__main__":
    main()
