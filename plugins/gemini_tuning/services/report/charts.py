"""The charts of the report and of the UI page, as SVG: the loss by step, grouped horizontal bars, a progress bar.

Pure geometry: each function returns a :class:`Chart` (its size and a flat list of :class:`Shape` s) and draws
nothing itself; the ``svg`` macro of ``templates/macros.html`` writes it out with Jinja2's autoescape on, so every
text and attribute (tags, model names and checkpoint ids are user data) is escaped. Nothing is fetched when a
page loads: the charts work offline and under a Content-Security-Policy without scripts or images.

The step axis of the loss chart has integer ticks only (:func:`integer_ticks`): a tuning job has no step 8.8.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["CHALLENGER_COLOR", "CHAMPION_COLOR", "DELETE_COLOR", "LOSS_COLOR", "NEUTRAL_COLOR", "PALETTE",
           "PROMOTE_COLOR", "VALIDATION_COLOR", "Chart", "Marker", "Shape", "bar_chart", "integer_ticks",
           "loss_chart", "nice_ticks", "progress_bar"]

CHALLENGER_COLOR = "#1a73e8"
CHAMPION_COLOR = "#f29900"
LOSS_COLOR = "#1a73e8"
VALIDATION_COLOR = "#9334e6"
PROMOTE_COLOR = "#188038"
DELETE_COLOR = "#c5221f"
NEUTRAL_COLOR = "#5f6368"
PALETTE = (CHALLENGER_COLOR, CHAMPION_COLOR, PROMOTE_COLOR, VALIDATION_COLOR, DELETE_COLOR, NEUTRAL_COLOR)
GRID = "#e8eaed"
AXIS = "#9aa0a6"
INK = "#3c4043"
#: at most this many epoch starts are labelled (all are drawn)
MAX_EPOCH_LABELS = 12
#: a series of at most this many points also gets a dot per point
MAX_DOTS = 60


@dataclass(frozen=True)
class Shape:
    """One SVG element: ``<tag attr="value" ...>text</tag>`` (no text: ``<tag .../>``).

    :param tag: the element (``line``, ``rect``, ``text``, ``path``, ``circle``).
    :param attrs: ``(name, value)`` pairs; values are escaped when written.
    :param text: the element's text (escaped when written), or None.
    """

    tag: str
    attrs: tuple[tuple[str, str], ...]
    text: str | None = None


@dataclass(frozen=True)
class Chart:
    """An SVG chart: its size, its accessible label and its shapes (written by the ``svg`` macro).

    :param css: the ``class`` of the ``<svg>`` (``chart``, ``chart loss``, ``progress``, ...).
    :param label: ``aria-label`` (what the chart shows).
    :param width: width in px (also the viewBox).
    :param height: height in px (also the viewBox).
    :param shapes: the elements, in drawing order.
    :param role: the ARIA role (``img``; ``progressbar`` for a progress bar).
    :param aria: further ``(name, value)`` attributes of the ``<svg>`` (``aria-valuenow``, ...).
    """

    css: str
    label: str
    width: int
    height: int
    shapes: tuple[Shape, ...] = ()
    role: str = "img"
    aria: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class Marker:
    """A vertical line across a chart at step ``x``, e.g. a checkpoint.

    :param x: the step.
    :param label: drawn beside the line.
    :param best: the checkpoint evaluated best (drawn green and thicker).
    """

    x: float
    label: str
    best: bool = False


def _n(v: float) -> str:
    """A coordinate as written (one decimal)."""
    return f"{v:.1f}"


def _el(tag: str, text: str | None = None, **attrs) -> Shape:
    """A :class:`Shape`; ``text_anchor=`` becomes ``text-anchor``, ``cls=`` becomes ``class``."""
    pairs = tuple(("class" if k == "cls" else k.replace("_", "-"), _n(v) if isinstance(v, float) else str(v))
                  for k, v in attrs.items() if v is not None)
    return Shape(tag, pairs, text)


def _finite(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------------ ticks
def _nice_step(span: float, target: int) -> float:
    """The smallest of 1, 2, 5 × 10^k at least ``span / target``."""
    raw = span / max(target, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    # a subnormal span: 10 ** floor(log10(raw)) underflows to 0, and no multiple of it reaches raw
    return next((m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9)), raw)


def integer_ticks(lo: float, hi: float, target: int = 8) -> list[int]:
    """Integer ticks (1, 2 or 5 × 10^k apart, at least 1) from ``lo`` to ``hi``, both included when on a tick.

    :param lo: the smallest value of the axis.
    :param hi: the largest value of the axis.
    :param target: about how many ticks at most.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        return []
    step = max(1, round(_nice_step(hi - lo, target)))
    first = math.ceil(lo)  # integer arithmetic: lo / step underflows for subnormal lo
    first += -first % step
    ticks = list(range(first, math.floor(hi) + 1, step))
    return ticks or sorted({math.ceil(lo), math.floor(hi)} & set(range(math.ceil(lo), math.floor(hi) + 1)))


def nice_ticks(lo: float, hi: float, target: int = 5) -> tuple[list[float], int]:
    """Round ticks (1, 2 or 5 × 10^k apart) from ``lo`` to ``hi`` and the decimals that tell them apart.

    :param lo: the smallest value of the axis.
    :param hi: the largest value of the axis.
    :param target: about how many ticks at most.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [], 0
    step = _nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
    return ticks, max(0, -math.floor(math.log10(step) + 1e-9))


# ------------------------------------------------------------------------------------------------ charts
def _empty(label: str, width: int, text: str = "no points yet") -> Chart:
    return Chart("chart empty", label, width, 60, (_el("text", text, x=10, y=35, fill=INK),))


def _legend(names: Sequence[tuple[str, str]], x: float, y: float = 6) -> list[Shape]:
    out = []
    for k, (name, color) in enumerate(names):
        out += [_el("rect", x=x + 150 * k, y=y, width=10, height=10, fill=color),
                _el("text", _short(name, 22), x=x + 14 + 150 * k, y=y + 9, fill=INK)]
    return out


def loss_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]], str]], *,
               markers: Sequence[Marker] = (), epochs: Sequence[tuple[float, float]] = (), width: int = 720,
               height: int = 260, title: str = "loss by step", x_label: str = "step", y_label: str = "loss",
               mark_minimum: bool = False) -> Chart:
    """Loss curves by step: integer step ticks, dotted epoch starts, dashed checkpoints, a legend.

    :param series: ``(name, [(step, loss), ...], colour)`` each (non-finite points are left out).
    :param markers: checkpoints (:class:`Marker`), drawn dashed with their label; the axis extends to them.
    :param epochs: ``(first step, epoch)`` of every epoch after the first, drawn dotted.
    :param width: width in px.
    :param height: height in px.
    :param title: the chart's accessible label.
    :param x_label: the x axis' name.
    :param y_label: the y axis' name.
    :param mark_minimum: label the first series' minimum.
    """
    series = [(name, _finite(pts), color) for name, pts, color in series]
    pts = [p for _, s, _ in series for p in s]
    if not pts:
        return _empty(title, width)
    left, right, top, bottom = 56, 16, 24, 36
    xs = [p[0] for p in pts] + [m.x for m in markers if math.isfinite(m.x)]
    x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 0.1)
    y0, y1 = lo - pad * (1.8 if mark_minimum else 1), hi + pad
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out = [_el("rect", x=0, y=0, width=width, height=height, fill="#fff")]
    yticks, digits = nice_ticks(y0, y1, max(3, ph // 45))
    for y in yticks:
        out += [_el("line", cls="grid", x1=left, x2=width - right, y1=sy(y), y2=sy(y), stroke=GRID),
                _el("text", f"{y:.{digits}f}", cls="tick-y", x=left - 6, y=sy(y) + 4, text_anchor="end", fill=INK)]
    for x in integer_ticks(x0, x1, max(3, pw // 70)):
        out += [_el("line", x1=sx(x), x2=sx(x), y1=top + ph, y2=top + ph + 4, stroke=AXIS),
                _el("text", str(x), cls="tick-x", x=sx(x), y=top + ph + 16, text_anchor="middle", fill=INK)]
    out.append(_el("line", x1=left, x2=width - right, y1=top + ph, y2=top + ph, stroke=AXIS))
    every = max(1, math.ceil(len(epochs) / MAX_EPOCH_LABELS))
    for i, (step, epoch) in enumerate(epochs):
        if not x0 <= step <= x1:
            continue
        out.append(_el("line", cls="epoch", x1=sx(step), x2=sx(step), y1=top, y2=top + ph, stroke=AXIS,
                       stroke_dasharray="1 3"))
        if i % every == 0:
            out.append(_el("text", f"epoch {epoch:g}", x=sx(step) + 3, y=top + 10, fill=NEUTRAL_COLOR))
    for m in markers:
        if not (math.isfinite(m.x) and x0 <= m.x <= x1):
            continue
        color = PROMOTE_COLOR if m.best else NEUTRAL_COLOR
        x, mid = sx(m.x), top + ph / 2
        out += [_el("line", cls="checkpoint best" if m.best else "checkpoint", x1=x, x2=x, y1=top, y2=top + ph,
                    stroke=color, stroke_width=2 if m.best else 1, stroke_dasharray="5 3"),
                _el("text", _short(m.label, 40), cls="checkpoint-label", x=x - 4, y=mid, text_anchor="middle",
                    transform=f"rotate(-90 {_n(x - 4)} {_n(mid)})", fill=color)]
    for _, s, color in series:
        if not s:
            continue
        path = " ".join(f"{'M' if i == 0 else 'L'}{_n(sx(x))},{_n(sy(y))}" for i, (x, y) in enumerate(s))
        out.append(_el("path", cls="series", d=path, fill="none", stroke=color, stroke_width=2))
        if len(s) <= MAX_DOTS:
            out += [_el("circle", cx=sx(x), cy=sy(y), r=2.5, fill=color) for x, y in s]
    first = series[0][1]
    if mark_minimum and first:
        x, y = min(first, key=lambda p: p[1])
        out.append(_el("text", f"min {y:.4g}", x=sx(x), y=sy(y) + 16, text_anchor="middle", fill=INK))
    out += _legend([(name, color) for name, s, color in series if s], left + 8)
    out += [_el("text", x_label, x=left + pw / 2, y=height - 4, text_anchor="middle", fill=INK),
            _el("text", y_label, x=12, y=top + ph / 2, text_anchor="middle",
                transform=f"rotate(-90 12 {_n(top + ph / 2)})", fill=INK)]
    return Chart("chart loss", title, width, height, tuple(out))


def bar_chart(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]], *,
              width: int = 720, row: int = 18, title: str = "", lo: float = 0.0, hi: float = 1.0,
              css: str = "chart bars") -> Chart | None:
    """Horizontal grouped bars: one group per category, one bar per series, its value written at its end.

    :param categories: the groups, top to bottom (long names are shortened; the tables beside list them).
    :param series: ``(name, values, colour)`` each, one value per category (None or not finite: "n/a").
    :param width: width in px.
    :param row: height of one bar in px.
    :param title: the chart's accessible label.
    :param lo: the value at the left edge.
    :param hi: the value at the right edge (values beyond are clipped).
    :param css: the ``class`` of the ``<svg>``.
    :return: None when there is nothing to draw.
    """
    if not categories or not series:
        return None
    label_w, right, gap, top = 170, 48, 8, 24
    group = row * len(series) + gap
    height = top + group * len(categories) + 6
    pw = width - label_w - right
    out = [_el("rect", x=0, y=0, width=width, height=height, fill="#fff")]
    out += _legend([(name, color) for name, _, color in series], label_w)
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + frac * pw
        out.append(_el("line", cls="grid", x1=x, x2=x, y1=top - 2, y2=height - 6, stroke=GRID))
    for i, cat in enumerate(categories):
        y = top + i * group
        out.append(_el("text", _short(cat, 28), x=label_w - 8, y=y + (group - gap) / 2 + 4, text_anchor="end",
                       fill=INK))
        for k, (_, values, color) in enumerate(series):
            v = values[i] if i < len(values) else None
            by = y + k * row
            if v is None or not math.isfinite(v):
                out.append(_el("text", "n/a", x=label_w + 4, y=by + row - 6, fill=NEUTRAL_COLOR))
                continue
            w = max(0.0, min(1.0, (v - lo) / (hi - lo))) * pw
            out += [_el("rect", cls="bar", x=label_w, y=by, width=w, height=row - 3, fill=color),
                    _el("text", f"{v:.3f}", x=label_w + w + 4, y=by + row - 6, fill=INK)]
    return Chart(css, title, width, height, tuple(out))


def progress_bar(percent: float | None, *, width: int = 320, label: str = "") -> Chart:
    """A progress bar with its percentage (or ``label``) written on it.

    :param percent: 0–100 (clipped); None: unknown.
    :param width: width in px.
    :param label: the text instead of the percentage.
    """
    known = percent is not None and math.isfinite(percent)
    pct = max(0.0, min(100.0, percent)) if known else 0.0
    text = label or (f"{pct:.1f}%" if known else "unknown")
    shapes = (_el("rect", x=0, y=0, width=width, height=18, rx=4, fill=GRID),
              _el("rect", x=0, y=0, width=width * pct / 100, height=18, rx=4, fill=PALETTE[0]),
              _el("text", text, x=width / 2, y=13, text_anchor="middle", fill="#202124"))
    return Chart("progress", text, width, 18, shapes, role="progressbar",
                 aria=(("aria-valuenow", f"{pct:.1f}"), ("aria-valuemin", "0"), ("aria-valuemax", "100")))
