"""Length distributions for the result's ``stats`` (nearest-rank percentiles over a Counter of lengths)."""

from __future__ import annotations

from array import array
from collections import Counter

from .limits import CHARS_PER_TOKEN


def _distribution(values: array) -> dict:
    """count / total / min / median / p95 / max (nearest-rank) of chars and of ceil(chars/4) tokens."""
    n = len(values)
    if not n:
        empty = {"examples": 0, "total": 0, "min": None, "median": None, "p95": None, "max": None}
        return {"chars": empty, "tokens": dict(empty)}
    counts = sorted(Counter(values).items())  # memory ~ number of distinct lengths, not of examples
    ranks = {"median": (n + 1) // 2, "p95": -(-95 * n // 100)}  # nearest rank: ceil(p * n)
    picked: dict[str, int] = {}
    seen = 0
    total_chars = total_tokens = 0
    for value, count in counts:
        seen += count
        total_chars += value * count
        total_tokens += -(-value // CHARS_PER_TOKEN) * count
        for name, rank in ranks.items():
            if name not in picked and seen >= rank:
                picked[name] = value
    chars = {"examples": n, "total": total_chars, "min": counts[0][0], "median": picked["median"],
             "p95": picked["p95"], "max": counts[-1][0]}
    tokens = {k: (v if k == "examples" else (total_tokens if k == "total" else -(-v // CHARS_PER_TOKEN)))
              for k, v in chars.items()}
    return {"chars": chars, "tokens": tokens}
