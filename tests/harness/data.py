"""Test data: the demo files' rows, unique names."""

from __future__ import annotations

import json
import uuid

from harness.paths import DEMO


def demo_rows(name: str, n: int | None = None) -> list[dict]:
    """The rows of ``include/demo/<name>`` (JSON Lines), the first ``n`` if given."""
    rows = [json.loads(line) for line in (DEMO / name).read_text().splitlines() if line.strip()]
    return rows[:n] if n else rows


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
