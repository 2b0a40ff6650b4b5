"""Helpers shared by the benchmark scripts: what code the figures were measured on, and table printing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_state() -> str:
    """The commit and the uncommitted files under plugins/ and emulator/: what these figures were measured on."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--short", "--", "plugins", "emulator"], cwd=ROOT,
                               capture_output=True, text=True, check=False).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        return f"{head or '?'}" + (f" + uncommitted: {', '.join(dirty)}" if dirty else " (clean)")
    except OSError:
        return "unknown"


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|-" + "-|-".join("-" * w for w in widths) + "-|"
    return "\n".join([f"\n{title}", line(header), sep, *(line(r) for r in cells[1:])])


def plugins_on_path() -> None:
    """The project's imports for a script: ``plugins/`` (``gemini_tuning``) and the repository root (``emulator``;
    ``tests/``, with ``harness``, is on the venv's path through ``scripts/setup.sh``'s ``.pth`` file)."""
    for p in (str(ROOT), str(ROOT / "plugins")):
        if p not in sys.path:
            sys.path.insert(0, p)


def offline_env(*, pycache: bool = True) -> None:
    """Project imports on sys.path, google-auth kept offline, no ambient Google credentials; with ``pycache``,
    bytecode cached under $TMPDIR (some environments set PYTHONDONTWRITEBYTECODE and ship no .pyc files)."""
    if pycache:
        prefix = os.path.join(tempfile.gettempdir(), "bench-pycache")
        sys.pycache_prefix, sys.dont_write_bytecode = prefix, False
        os.environ["PYTHONPYCACHEPREFIX"] = prefix
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    plugins_on_path()
    os.environ["NO_GCE_CHECK"] = "true"
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    for var in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        os.environ.pop(var, None)


def load() -> str:
    """The load average, printed beside every figure (the machine is shared)."""
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
