"""The emulator as its own process (``python -m emulator``), as the Airflow stacks and the cluster use it: free
ports, its own session (stopped by process group, never by name), and the URLs it prints on its first line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from harness.paths import ROOT


def start_emulator(data_dir: Path | None = None, *, bucket: str | None = None, time_scale: float | None = None,
                   log_level: str = "WARNING", stderr: IO | int | None = None) -> tuple[subprocess.Popen, dict]:
    """Starts the emulator and returns ``(process, info)``; ``info`` is its first line (``url``, ``gcs_url``, ...).
    The process leads its own session: :func:`stop_emulator` ends it."""
    cmd = [sys.executable, "-m", "emulator", "--port", "0", "--gcs-port", "0"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    if bucket is not None:
        cmd += ["--default-bucket", bucket]
    if time_scale is not None:
        cmd += ["--time-scale", str(time_scale)]
    cmd += ["--log-level", log_level]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise RuntimeError(f"the emulator exited before it was ready (exit code {proc.returncode})")
    return proc, json.loads(line)


def stop_emulator(proc: subprocess.Popen) -> None:
    """SIGKILLs the emulator's process group (its own session) and reaps it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)
