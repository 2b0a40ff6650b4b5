"""Helpers shared by the benchmark scripts: what code the figures were measured on, and table printing."""

from __future__ import annotations

import subprocess
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
