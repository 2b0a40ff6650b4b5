#!/usr/bin/env python
"""Hostile input vs memory: peak RSS of the prepare step's read path and of the UI's pointer read on bad data.

Usage: .venv/bin/python scripts/bench_hostile.py [--no-contrast] [--line-mb 300] [--pointer-mb 300]

Builds, in a temp dir at run time (nothing is committed):

1. a 64 KB gzip bomb: 64 MiB of ``x`` without a newline, gzip level 9 (the finding: it became one 64 MiB line);
2. a 4 MB gzip bomb: 66 concatenated members of (1), 4.1 GiB decompressed, past the 4 GiB
   ``max_decompressed_bytes`` default;
3. a 300 MB line without a newline (plain JSONL);
4. a 300 MB "champion pointer" object in the GCS emulator (started in its own process, like the other benchmarks,
   so its memory is not counted).

Each case runs in a fresh child process (so each peak RSS, ``VmHWM``, is its own): (1)-(3) through what
``services.prepare.prepare_file`` runs (``gcs.open_source`` -> ``gcs.CountingReader`` -> ``iter_lines`` with
the default bounds -> ``prepare_dataset``), (4) through what the api-server's UI page runs
(``services.champion.read_champion`` -> ``backends.gcs.read_json``). It prints the error message users see, the
peak RSS (goal: <= 150 MB each) and the child's RSS right after its imports. ``--no-contrast`` skips the
contrast row: the same 300 MB pointer downloaded whole, as ``read_json`` did before it checked the size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from bench_common import ROOT, code_state, load, offline_env, table

BUCKET = "bench-hostile"
LIMIT_MB = 150


def _rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (the high-water mark of its own address space). Not ``ru_maxrss``: Linux
    carries that over ``exec`` from the parent (subprocess uses vfork), so a child would report the parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------- children
def child(mode: str, target: str) -> dict:
    offline_env()
    t_import = time.perf_counter()
    from gemini_tuning.backends import gcs
    from gemini_tuning.core.dataset import DatasetOptions, iter_lines, prepare_dataset
    from gemini_tuning.core.issues import DataValidationError

    out: dict = {"import_rss_mb": _rss_mb(), "import_s": time.perf_counter() - t_import}
    t0 = time.perf_counter()
    try:
        if mode == "prepare":
            class Null:
                def write(self, data):
                    return len(data)

            with gcs.open_source(target, None) as raw:             # as services.prepare.prepare_file
                counted = gcs.CountingReader(raw, None)
                prepare_dataset(iter_lines(counted), source_name=target, options=DatasetOptions(), train_sink=Null())
            out["error"] = None
            out["read_mb"] = counted.count / 1e6
        else:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            client = storage.Client(credentials=AnonymousCredentials(), project="bench")
            if mode == "pointer":
                from gemini_tuning.services.champion import read_champion

                read_champion(client, target)                        # as ui.data.pointer
                out["error"] = None
            else:                                                    # contrast: the unchecked whole download
                bucket, name = gcs.parse_gs_uri(target)
                data = client.bucket(bucket).blob(name).download_as_bytes()
                json.loads(data)
                out["error"] = f"(no size check: {len(data):,} bytes downloaded and parsed)"
    except (DataValidationError, gcs.ObjectTooLarge) as exc:
        out["error"] = str(exc)
        if mode == "prepare":
            out["read_mb"] = counted.count / 1e6
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = _rss_mb()
    return out


def run_child(mode: str, target: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, target], env=env, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} {target} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- inputs
def write_line(path: str, megabytes: int) -> None:
    """``{"contents": "xxxx...`` of ``megabytes`` MB and no newline, written 8 MB at a time."""
    block = b"x" * (8 << 20)
    left = megabytes * 1_000_000
    with open(path, "wb") as fh:
        fh.write(b'{"contents": "')
        while left > 0:
            fh.write(block[:left])
            left -= len(block)


def write_pointer(path: str, megabytes: int) -> None:
    """A JSON object that looks like a champion pointer, padded to ``megabytes`` MB."""
    block = b"x" * (8 << 20)
    left = megabytes * 1_000_000
    with open(path, "wb") as fh:
        fh.write(b'{"backend": "vertex", "tuned_model": "projects/p/locations/l/models/m@1", "pad": "')
        while left > 0:
            fh.write(block[:left])
            left -= len(block)
        fh.write(b'"}\n')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=2, metavar=("MODE", "TARGET"), help=argparse.SUPPRESS)
    ap.add_argument("--line-mb", type=int, default=300)
    ap.add_argument("--pointer-mb", type=int, default=300)
    ap.add_argument("--no-contrast", action="store_true", help="skip the unchecked-download contrast row")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)), flush=True)
        return 0

    t_start = time.monotonic()
    print(f"bench_hostile on {code_state()}; cpus {os.cpu_count()}, load {load()}", flush=True)
    work = tempfile.mkdtemp(prefix="bench-hostile-")
    emulator = None
    rows, failures = [], []
    try:
        member = gzip.compress(b"x" * (64 << 20), 9)
        bomb = os.path.join(work, "bomb-64k.jsonl.gz")
        with open(bomb, "wb") as fh:
            fh.write(member)
        big_bomb = os.path.join(work, "bomb-4m.jsonl.gz")
        with open(big_bomb, "wb") as fh:
            fh.write(member * 66)
        line = os.path.join(work, f"line-{args.line_mb}mb.jsonl")
        write_line(line, args.line_mb)
        pointer_file = os.path.join(work, "pointer.json")
        write_pointer(pointer_file, args.pointer_mb)

        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), str(ROOT / "scripts")])}
        cases = [
            (f"gzip bomb {len(member) / 1e3:.0f} KB -> 64 MiB, no newline", "prepare", bomb),
            (f"gzip bomb {len(member) * 66 / 1e6:.1f} MB -> {66 * 64 / 1024:.2f} GiB", "prepare", big_bomb),
            (f"{args.line_mb} MB line without newline", "prepare", line),
        ]
        for label, mode, target in cases:
            r = run_child(mode, target, env)
            rows.append([label, "prepare (open_source, iter_lines, prepare_dataset)", f"{r['peak_rss_mb']:.1f}",
                         f"{r['import_rss_mb']:.1f}", f"{r['seconds']:.1f}", f"{r.get('read_mb', 0):,.1f}"])
            print(f"\n{label}: peak RSS {r['peak_rss_mb']:.1f} MB (after imports {r['import_rss_mb']:.1f} MB), "
                  f"{r['seconds']:.1f}s, {r.get('read_mb', 0):,.1f} MB read from the file\n  error: {r['error']}",
                  flush=True)
            if r["peak_rss_mb"] > LIMIT_MB or not r["error"]:
                failures.append(label)

        data_dir = os.path.join(work, "emulator")
        emulator = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0", "--data-dir", data_dir,
             "--default-bucket", BUCKET, "--log-level", "WARNING"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
        info = json.loads(emulator.stdout.readline())
        env["STORAGE_EMULATOR_HOST"] = info["gcs_url"]
        offline_env()
        os.environ["STORAGE_EMULATOR_HOST"] = info["gcs_url"]
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        t0 = time.perf_counter()
        client = storage.Client(credentials=AnonymousCredentials(), project="bench")
        client.bucket(BUCKET).blob("pipeline/champion.json").upload_from_filename(pointer_file,
                                                                                content_type="application/json")
        uri = f"gs://{BUCKET}/pipeline/champion.json"
        print(f"\nuploaded a {os.path.getsize(pointer_file) / 1e6:,.1f} MB pointer to {uri} in "
              f"{time.perf_counter() - t0:.1f}s (emulator at {info['gcs_url']}, own process)", flush=True)
        modes = [("pointer", "UI read (read_champion -> read_json)")]
        if not args.no_contrast:
            modes.append(("download", "contrast: whole download, no size check"))
        for mode, what in modes:
            r = run_child(mode, uri, env)
            label = f"{args.pointer_mb} MB champion pointer"
            rows.append([label, what, f"{r['peak_rss_mb']:.1f}", f"{r['import_rss_mb']:.1f}", f"{r['seconds']:.1f}",
                         "-"])
            print(f"\n{label}, {what}: peak RSS {r['peak_rss_mb']:.1f} MB (after imports {r['import_rss_mb']:.1f} "
                  f"MB), {r['seconds']:.1f}s\n  error: {r['error']}", flush=True)
            if mode == "pointer" and (r["peak_rss_mb"] > LIMIT_MB or not r["error"]):
                failures.append(label)
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    print(table(f"peak RSS per child process (goal <= {LIMIT_MB} MB; the contrast row is not held to it)",
                ["input", "read path", "peak RSS MB", "after imports MB", "seconds", "MB read"], rows))
    print(f"\ntotal {time.monotonic() - t_start:.1f}s; load {load()}")
    if failures:
        print(f"OVER THE GOAL or not refused: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
