"""Inline SVG charts for the UI page: a line chart (loss curves), grouped bars (metrics, tags), a progress bar.

Pure functions returning SVG markup; every text is escaped (tags and model names are user data). Nothing is
fetched when the page loads, so the page works offline and under a strict Content-Security-Policy.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

PALETTE = ("#1a73e8", "#f29900", "#188038", "#a142f4", "#d93025", "#5f6368")
GRID = "#e8eaed"
INK = "#3c4043"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _nice(lo: float, hi: float) -> tuple[float, float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def line_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, width: int = 720, height: int = 260,
               x_label: str = "step", y_label: str = "loss", markers: Sequence[tuple[float, str]] = (),
               title: str = "") -> str:
    """``series``: (name, [(x, y), ...]) each; ``markers``: vertical lines (x, label), e.g. checkpoints."""
    pts = [(x, y) for _, s in series for x, y in s if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return (f'<svg class="chart empty" role="img" aria-label="{_e(title or "no data")}" width="{width}" '
                f'height="60" viewBox="0 0 {width} 60"><text x="10" y="35" fill="{INK}">no points yet</text></svg>')
    left, right, top, bottom = 56, 16, 22, 36
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = _nice(min(ys), max(ys))
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" '
           f'font-size="11">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    digits = max(0, min(6, 2 - math.floor(math.log10(max(y1 - y0, 1e-12)))))   # ticks that differ
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="{GRID}"/>'
                   f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" fill="{INK}">{y:.{digits}f}</text>')
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        out.append(f'<text x="{sx(x):.1f}" y="{height - bottom + 16}" text-anchor="middle" fill="{INK}">'
                   f"{x:.4g}</text>")
    for x, label in markers:
        if x0 <= x <= x1:
            out.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{top}" y2="{top + ph}" stroke="#9aa0a6" '
                       f'stroke-dasharray="4 3"/><text x="{sx(x) - 3:.1f}" y="{top + 10}" text-anchor="end" '
                       f'fill="#5f6368">{_e(label)}</text>')
    for k, (name, s) in enumerate(series):
        s = [(x, y) for x, y in s if math.isfinite(x) and math.isfinite(y)]
        if not s:
            continue
        color = PALETTE[k % len(PALETTE)]
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(s))
        out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2" class="series"/>')
        if len(s) <= 60:
            out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in s)
        out.append(f'<rect x="{left + 8 + 150 * k}" y="6" width="10" height="10" fill="{color}"/>'
                   f'<text x="{left + 22 + 150 * k}" y="15" fill="{INK}">{_e(name)}</text>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{height - 4}" text-anchor="middle" fill="{INK}">{_e(x_label)}</text>'
               f'<text x="12" y="{top + ph / 2:.0f}" transform="rotate(-90 12 {top + ph / 2:.0f})" '
               f'text-anchor="middle" fill="{INK}">{_e(y_label)}</text></svg>')
    return "".join(out)


def bar_chart(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, width: int = 720,
              row: int = 22, title: str = "", lo: float = 0.0, hi: float = 1.0) -> str:
    """Horizontal grouped bars: one group per category, one bar per series (None: no bar)."""
    if not categories or not series:
        return ""
    label_w, right, gap = 170, 56, 10
    group = row * len(series) + gap
    height = 28 + group * len(categories)
    pw = width - label_w - right
    out = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" '
           f'font-size="11"><rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    for k, (name, _) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        out.append(f'<rect x="{label_w + 150 * k}" y="6" width="10" height="10" fill="{color}"/>'
                   f'<text x="{label_w + 14 + 150 * k}" y="15" fill="{INK}">{_e(name)}</text>')
    for i, cat in enumerate(categories):
        y = 26 + i * group
        out.append(f'<text x="{label_w - 8}" y="{y + group / 2:.0f}" text-anchor="end" fill="{INK}">'
                   f"{_e(cat)}</text>")
        for k, (_, values) in enumerate(series):
            v = values[i] if i < len(values) else None
            if v is None or not math.isfinite(v):
                continue
            w = max(0.0, min(1.0, (v - lo) / (hi - lo))) * pw
            out.append(f'<rect x="{label_w}" y="{y + k * row}" width="{w:.1f}" height="{row - 4}" '
                       f'fill="{PALETTE[k % len(PALETTE)]}"/><text x="{label_w + w + 4:.1f}" '
                       f'y="{y + k * row + row - 9}" fill="{INK}">{v:.3f}</text>')
    out.append("</svg>")
    return "".join(out)


def progress_bar(percent: float | None, *, width: int = 320, label: str = "") -> str:
    pct = 0.0 if percent is None or not math.isfinite(percent) else max(0.0, min(100.0, percent))
    text = label or ("unknown" if percent is None else f"{pct:.1f}%")
    return (f'<svg class="progress" role="progressbar" aria-valuenow="{pct:.1f}" aria-valuemin="0" '
            f'aria-valuemax="100" width="{width}" height="18" viewBox="0 0 {width} 18" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">'
            f'<rect x="0" y="0" width="{width}" height="18" rx="4" fill="{GRID}"/>'
            f'<rect x="0" y="0" width="{width * pct / 100:.1f}" height="18" rx="4" fill="{PALETTE[0]}"/>'
            f'<text x="{width / 2:.0f}" y="13" text-anchor="middle" fill="#202124">{_e(text)}</text></svg>')
