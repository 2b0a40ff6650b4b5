"""How the report writes values: numbers, scores, percentages and differences, and lenient access to the input.

Pure helpers of :mod:`.model`; each returns plain text (the templates escape it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ...core.vocabulary import METRIC_TITLES, SUMMARY_METRIC_NAMES

DASH = "—"


def num(v: Any) -> float | None:
    """A finite float, or None (bools, strings, NaN and inf are not numbers here).

    :param v: any input value.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def fmt(v: Any, digits: int = 4) -> str:
    """Compact human format: None -> '—', ints as-is, floats to ``digits`` significant digits, JSON for containers.

    :param v: any input value.
    :param digits: significant digits of a float.
    """
    if v is None:
        return DASH
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return str(v)


def fmt_score(v: Any) -> str:
    """A per-prompt score: ``0``/``1`` as integers, anything else to 3 decimals.

    :param v: the score.
    """
    f = num(v)
    if f is None:
        return DASH
    return str(int(f)) if f in (0.0, 1.0) else f"{f:.3f}"


def fmt_mean(v: Any) -> str:
    """A mean metric to 3 decimals.

    :param v: the mean.
    """
    f = num(v)
    return DASH if f is None else f"{f:.3f}"


def fmt_pct(v: Any) -> str:
    """A rate as a percentage with one decimal.

    :param v: the rate (0–1).
    """
    f = num(v)
    return DASH if f is None else f"{100 * f:.1f}%"


def fmt_seconds(v: Any) -> str:
    """A duration in seconds, 2 decimals.

    :param v: the duration.
    """
    f = num(v)
    return DASH if f is None else f"{f:.2f} s"


def delta(a: Any, b: Any, *, higher_is_better: bool = True, pct: bool = False, unit: str = "") -> dict:
    """``a - b`` as ``{"text", "cls"}``: ``cls`` is ``good``/``bad`` by direction, ``muted`` when equal or unknown.

    :param a: the challenger's value.
    :param b: the champion's value.
    :param higher_is_better: whether a positive difference is good.
    :param pct: a difference of rates, in percentage points.
    :param unit: appended to the text (``" s"``).
    """
    fa, fb = num(a), num(b)
    if fa is None or fb is None:
        return {"text": DASH, "cls": "muted"}
    d = fa - fb
    if pct:
        text = f"{100 * d:+.1f} pp"
    elif isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
        text = f"{a - b:+d}"
    else:
        text = f"{d:+.3f}{unit}"
    cls = "muted"
    if abs(d) > 1e-12:
        cls = "good" if (d > 0) == higher_is_better else "bad"
    return {"text": text, "cls": cls}


def as_dict(v: Any) -> Mapping:
    """``v`` when it is a mapping, else an empty dict.

    :param v: any input value.
    """
    return v if isinstance(v, Mapping) else {}


def as_list(v: Any) -> list:
    """``v`` as a list when it is a list or tuple, else an empty list.

    :param v: any input value.
    """
    return list(v) if isinstance(v, (list, tuple)) else []


def metrics_of(summary: Mapping | None) -> Mapping:
    """The ``metrics`` of a ``summarize()`` result (empty when absent).

    :param summary: one model's summary.
    """
    return as_dict(as_dict(summary).get("metrics"))


def metric_names(*summaries: Mapping | None) -> list[str]:
    """The metrics present in any of ``summaries``: the known ones in their usual order, then the rest sorted.

    :param summaries: the models' summaries.
    """
    present: set[str] = set()
    for s in summaries:
        present.update(str(k) for k in metrics_of(s))
    ordered = [m for m in SUMMARY_METRIC_NAMES if m in present]
    return ordered + sorted(present - set(ordered))


def label(metric: Any) -> str:
    """A metric's title (``normalized match``), or its name.

    :param metric: the metric's name.
    """
    return METRIC_TITLES.get(metric, str(metric))
