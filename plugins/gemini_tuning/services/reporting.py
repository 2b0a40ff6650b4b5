"""The per-run HTML report: one self-contained page (inline CSS, plots as base64 PNG ``<img>``, no JS).

Pure: no Airflow, no network, no global matplotlib state. Plots are drawn on
:class:`matplotlib.figure.Figure` objects with the Agg canvas (never pyplot), so rendering is safe in
threads and never opens a window.

Input (see :func:`render_report`), every key but ``title``/``run_id`` optional; a missing part is shown
as a short note, never an error::

    {"title", "dag_id", "run_id", "generated_at",
     "tuning": {"backend", "job_name", "base_model", "tuned_model", "endpoint",
                "loss_history": [[step, epoch, loss], ...], "hyperparameters": {...}, "example_count",
                "continued_from", "checkpoints": [{"checkpoint_id", "epoch", "step", "endpoint"}, ...]},
     "evaluation": {"n_prompts", "results_uri", "models": {"challenger", "champion"},
                    "summary": {"challenger": summarize(), "champion": summarize() | None},
                    "primary_metric": str (optional; else read from the gate's champion_margin rule),
                    "best_checkpoint": {"checkpoint_id", "metric", "score", "scores": [{"checkpoint_id",
                                        "epoch", "step", "score"}, ...]} (when every checkpoint was evaluated)},
     "gate": GateDecision.to_dict(),
     "decision": "promote" | "delete" | "no_decision" | "no verdict", "action_taken": str,
     "examples": [{"prompt_id", "prompt", "reference", "tags", "challenger", "champion",
                   "challenger_score", "champion_score", "challenger_error", "champion_error"}, ...]}

Sections, top to bottom: header with the decision and the gate summary; key figures; the gate's rules;
the tuning loss curve (checkpoints marked, with their scores); the checkpoints; challenger vs champion
metrics; per-tag breakdown; the examples where the two
models differ (with no champion: the examples the challenger got wrong); run details (tuning job, models,
hyperparameters, results location). Every string from the input is
HTML-escaped (prompts and answers are untrusted) and strings drawn in plots have ``$`` escaped so that
matplotlib never parses them as mathtext.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.vocabulary import DEFAULT_PRIMARY_METRIC, METRIC_TITLES, SUMMARY_METRIC_NAMES

__all__ = ["MAX_EXAMPLE_ROWS", "MAX_TAG_CHART", "render_report", "report_data"]

#: Rows of the examples table; the rest are counted in a note.
MAX_EXAMPLE_ROWS = 100
#: The per-tag bar chart is drawn only up to this many tags (the table always lists all of them).
MAX_TAG_CHART = 20
#: Characters of one prompt/answer/reference shown in the examples table.
MAX_TEXT_CHARS = 1500
DPI = 100

CHALLENGER_COLOR = "#1a73e8"
CHAMPION_COLOR = "#f29900"
LOSS_COLOR = "#1a73e8"
PROMOTE_COLOR = "#188038"
DELETE_COLOR = "#c5221f"
NEUTRAL_COLOR = "#5f6368"



# ------------------------------------------------------------------------------------------ helpers

def _e(v: Any) -> str:
    """HTML-escape anything (None -> empty)."""
    return "" if v is None else html.escape(str(v), quote=True)


def _num(v: Any) -> float | None:
    """A finite float, or None (bools, strings, NaN and inf are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _fmt(v: Any, digits: int = 4) -> str:
    """Compact human format: None -> '—', ints as-is, floats to ``digits`` significant digits."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return str(v)


def _fmt_score(v: Any) -> str:
    f = _num(v)
    if f is None:
        return "—"
    return str(int(f)) if f in (0.0, 1.0) else f"{f:.3f}"


def _fmt_mean(v: Any) -> str:
    f = _num(v)
    return "—" if f is None else f"{f:.3f}"


def _fmt_pct(v: Any) -> str:
    f = _num(v)
    return "—" if f is None else f"{100 * f:.1f}%"


def _fmt_delta(a: Any, b: Any, *, higher_is_better: bool = True, pct: bool = False, unit: str = "") -> str:
    fa, fb = _num(a), _num(b)
    if fa is None or fb is None:
        return '<td class="num muted">—</td>'
    d = fa - fb
    if pct:
        text = f"{100 * d:+.1f} pp"
    elif isinstance(a, int) and isinstance(b, int):
        text = f"{a - b:+d}"
    else:
        text = f"{d:+.3f}{unit}"
    cls = "muted"
    if abs(d) > 1e-12:
        cls = "good" if (d > 0) == higher_is_better else "bad"
    return f'<td class="num {cls}">{text}</td>'


def _mpl_text(s: Any, limit: int = 40) -> str:
    """A string safe to draw with matplotlib: shortened, and ``$`` escaped (no mathtext)."""
    s = " ".join(str(s).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")  # outside mathtext a backslash is literal; "\$" is a literal dollar


def _png(fig: Figure) -> str:
    """Render a figure to a base64 PNG and release it."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    finally:
        fig.clear()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _style_axes(ax) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.spines["left"].set_color("#9aa0a6")
    ax.spines["bottom"].set_color("#9aa0a6")
    ax.tick_params(colors="#3c4043", labelsize=9)
    ax.grid(True, axis="y", color="#e8eaed", linewidth=0.8)
    ax.set_axisbelow(True)


def _dict(v: Any) -> dict:
    return v if isinstance(v, Mapping) else {}


def _list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else []


def _metrics_of(summary: Mapping | None) -> dict:
    return _dict(_dict(summary).get("metrics"))


def _metric_names(*summaries: Mapping | None) -> list[str]:
    present: set[str] = set()
    for s in summaries:
        present.update(k for k in _metrics_of(s))
    ordered = [m for m in SUMMARY_METRIC_NAMES if m in present]
    return ordered + sorted(present - set(ordered))


def _label(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric)


def _kv_table(rows: Iterable[tuple[str, str]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}"><tbody>{body}</tbody></table>'


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


# ------------------------------------------------------------------------------------------ sections

def _header(data: Mapping, gate: Mapping) -> str:
    decision = data.get("decision") or gate.get("decision")
    decision = str(decision).replace("_", " ") if decision else "unknown"
    cls = {"promote": "promote", "delete": "delete"}.get(decision, "unknown")
    action = data.get("action_taken")
    meta = []
    for key, label in (("dag_id", "DAG"), ("run_id", "Run"), ("generated_at", "Generated")):
        if data.get(key):
            meta.append(f'<span><b>{label}</b> <code>{_e(data[key])}</code></span>')
    summary = gate.get("summary")
    return (
        "<header>"
        f'<h1>{_e(data.get("title") or "Gemini tuning report")}</h1>'
        f'<div class="meta">{"".join(meta)}</div>'
        f'<div class="decision {cls}">'
        f'<div class="decision-word">{_e(decision.upper())}</div>'
        + (f'<div class="action">{_e(action)}</div>' if action else "")
        + (f'<div class="summary">{_e(summary)}</div>' if summary else "")
        + "</div></header>"
    )


def _primary_metric(data: Mapping, gate: Mapping, ch: Mapping | None) -> str:
    pm = _dict(data.get("evaluation")).get("primary_metric")
    if not pm:
        for r in _list(gate.get("rules")):
            r = _dict(r)
            if r.get("name") == "champion_margin" and _dict(r.get("details")).get("metric"):
                pm = _dict(r.get("details"))["metric"]
                break
    if not pm:
        pm = DEFAULT_PRIMARY_METRIC
    metrics = _metrics_of(ch)
    if metrics and pm not in metrics:
        pm = next((m for m in ("item_metric", DEFAULT_PRIMARY_METRIC) if m in metrics), next(iter(metrics)))
    return str(pm)


def _cards(data: Mapping, ch: Mapping | None, cp: Mapping | None, pm: str) -> str:
    ev = _dict(data.get("evaluation"))
    cards = []
    n = ev.get("n_prompts", _dict(ch).get("n"))
    if n is not None:
        cards.append(("prompts evaluated", _e(_fmt(n)), ""))
    if ch:
        v = _metrics_of(ch).get(pm)
        cards.append((f"challenger {_e(_label(pm))}", _e(_fmt(_num(v), 3)), "challenger"))
    if cp:
        v = _metrics_of(cp).get(pm)
        cards.append((f"champion {_e(_label(pm))}", _e(_fmt(_num(v), 3)), "champion"))
        a, b = _num(_metrics_of(ch).get(pm)), _num(v)
        if a is not None and b is not None:
            d = a - b
            cls = "good" if d > 1e-12 else ("bad" if d < -1e-12 else "")
            cards.append(("difference", f'<span class="{cls}">{d:+.3f}</span>', ""))
    if ch:
        cards.append(("challenger error rate", _e(_fmt_pct(_dict(ch).get("error_rate"))), ""))
    if not cards:
        return ""
    body = "".join(f'<div class="card {cls}"><div class="card-value">{v}</div><div class="card-label">{k}</div></div>'
                   for k, v, cls in cards)
    return f'<div class="cards">{body}</div>'


def _setup_section(data: Mapping) -> str:
    tuning = _dict(data.get("tuning"))
    ev = _dict(data.get("evaluation"))
    models = _dict(ev.get("models"))
    left = []
    backend = tuning.get("backend")
    if backend:
        left.append(("Backend", _e({"vertex": "Vertex AI", "gemini_api": "Gemini API"}.get(backend, backend))))
    for key, label in (("job_name", "Tuning job"), ("base_model", "Base model"),
                       ("continued_from", "Continued from"), ("tuned_model", "Tuned model"), ("endpoint", "Endpoint")):
        if tuning.get(key):
            left.append((label, f"<code>{_e(tuning[key])}</code>"))
    if tuning.get("example_count") is not None:
        left.append(("Training examples", _e(_fmt(tuning["example_count"]))))
    for k, v in _dict(tuning.get("hyperparameters")).items():
        left.append((f'<span class="hp">{_e(k)}</span>', _e(_fmt(v))))
    right = []
    if models.get("challenger"):
        right.append(('<span class="swatch challenger"></span>Challenger', f"<code>{_e(models['challenger'])}</code>"))
    right.append(('<span class="swatch champion"></span>Champion',
                  f"<code>{_e(models['champion'])}</code>" if models.get("champion")
                  else '<span class="muted">none (first model: no comparison)</span>'))
    if ev.get("n_prompts") is not None:
        right.append(("Prompts", _e(_fmt(ev["n_prompts"]))))
    for label, use in _dict(ev.get("tokens")).items():
        use = _dict(use)
        text = (f"{_fmt(use.get('prompt'))} prompt + {_fmt(use.get('output'))} output = {_fmt(use.get('total'))} "
                f"({_fmt(use.get('calls_with_usage'))} call(s) reported usage)")
        right.append((f"Tokens, {_e(label)}", _e(text)))
    if ev.get("results_uri"):
        right.append(("Results", f"<code>{_e(ev['results_uri'])}</code>"))
    if not tuning and not ev:
        return ""
    return (
        '<section><h2>Run details</h2><div class="cols">'
        f'<div><h3>Tuning</h3>{_kv_table(left) if left else _note("No tuning details recorded.")}</div>'
        f'<div><h3>Evaluation</h3>{_kv_table(right)}</div>'
        "</div></section>"
    )


def _gate_section(gate: Mapping) -> str:
    rules = [_dict(r) for r in _list(gate.get("rules"))]
    if not rules:
        return '<section><h2>Gate</h2>' + _note("No gate rules were recorded.") + "</section>"
    counts = {v: sum(1 for r in rules if r.get("verdict") == v) for v in ("pass", "fail", "skipped")}
    rows = []
    for r in rules:
        verdict = str(r.get("verdict") or "")
        vcls = verdict if verdict in ("pass", "fail", "skipped") else "unknown"
        details = _dict(r.get("details"))
        det = ""
        if details:
            det = '<div class="details">' + ", ".join(
                f"{_e(k)}={_e(_fmt(v))}" for k, v in details.items()) + "</div>"
        rows.append(
            f'<tr class="rule-{vcls}"><td><code>{_e(r.get("name"))}</code></td>'
            f'<td class="num">{_e(_fmt(r.get("observed")))}</td>'
            f'<td class="num">{_e(_fmt(r.get("threshold")))}</td>'
            f'<td><span class="badge {vcls}">{_e(verdict or "?")}</span></td>'
            f"<td>{_e(r.get('reason'))}{det}</td></tr>"
        )
    return (
        "<section><h2>Gate rules</h2>"
        f'<p class="sub">{counts["pass"]} passed, {counts["fail"]} failed, {counts["skipped"]} skipped. '
        "The decision is <i>promote</i> iff no rule failed.</p>"
        '<table class="grid"><thead><tr><th>Rule</th><th class="num">Observed</th><th class="num">Threshold</th>'
        f'<th>Verdict</th><th>Reason</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>'
    )


def _loss_points(history: Any) -> list[tuple[float, float | None, float]]:
    pts = []
    for row in _list(history):
        if isinstance(row, Mapping):
            row = (row.get("step"), row.get("epoch"), row.get("loss"))
        if not isinstance(row, (list, tuple)) or len(row) < 3:
            continue
        step, epoch, loss = _num(row[0]), _num(row[1]), _num(row[2])
        if step is None or loss is None:
            continue
        pts.append((step, epoch, loss))
    pts.sort(key=lambda p: p[0])
    return pts


def _checkpoint_scores(data: Mapping) -> list[dict]:
    """The checkpoints with their evaluation scores (score None: not evaluated), in step order."""
    best = _dict(_dict(data.get("evaluation")).get("best_checkpoint"))
    scores = {str(r.get("checkpoint_id")): r.get("score") for r in _list(best.get("scores"))}
    rows = [{"checkpoint_id": str(c.get("checkpoint_id")), "epoch": c.get("epoch"), "step": _num(c.get("step")),
             "score": scores.get(str(c.get("checkpoint_id"))),
             "chosen": str(c.get("checkpoint_id")) == str(best.get("checkpoint_id"))}
            for c in _list(_dict(data.get("tuning")).get("checkpoints")) if isinstance(c, Mapping)]
    return sorted(rows, key=lambda r: r["step"] if r["step"] is not None else math.inf)


def _loss_plot(pts: list[tuple[float, float | None, float]], ckpts: Sequence[Mapping] = (),
               val_pts: Sequence[tuple[float, float | None, float]] = ()) -> str:
    """The training loss by step (``pts``; may be empty when only ``val_pts`` exist), epoch starts, checkpoints
    and, when the job had a validation dataset, the validation loss (``val_pts``, another colour, with a legend)."""
    validation_color = "#9334e6"
    steps = [p[0] for p in pts]
    losses = [p[2] for p in pts]
    fig = Figure(figsize=(9.6, 3.6))
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.grid(True, axis="x", color="#f1f3f4", linewidth=0.8)
    if pts:
        ax.plot(steps, losses, color=LOSS_COLOR, linewidth=1.8, marker="o" if len(pts) <= 40 else None,
                markersize=3.5, label="training loss")
    if val_pts:
        ax.plot([p[0] for p in val_pts], [p[2] for p in val_pts], color=validation_color, linewidth=1.8,
                marker="s" if len(val_pts) <= 40 else None, markersize=4, label="validation loss")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    # Epoch boundaries: the first step of every epoch after the first.
    bounds = []
    prev = None
    for step, epoch, _ in pts:
        if epoch is not None and prev is not None and epoch != prev:
            bounds.append((step, epoch))
        if epoch is not None:
            prev = epoch
    every = max(1, math.ceil(len(bounds) / 12))
    for i, (step, epoch) in enumerate(bounds):
        ax.axvline(step, color="#9aa0a6", linestyle=":", linewidth=1)
        if i % every == 0:
            ax.annotate(f"epoch {epoch:g}", xy=(step, 1), xycoords=("data", "axes fraction"), xytext=(3, -3),
                        textcoords="offset points", va="top", fontsize=8, color="#5f6368")
    for c in ckpts:  # checkpoints: where they were taken, with the evaluation score of each
        if c["step"] is None:
            continue
        color = PROMOTE_COLOR if c["chosen"] else NEUTRAL_COLOR
        ax.axvline(c["step"], color=color, linestyle="--", linewidth=1.4 if c["chosen"] else 0.9)
        label = f"ckpt {c['checkpoint_id']}" + (f" · {_fmt_score(c['score'])}" if c["score"] is not None else "")
        ax.annotate(label, xy=(c["step"], 0.5), xycoords=("data", "axes fraction"), xytext=(-3, 0),
                    textcoords="offset points", rotation=90, ha="right", va="center", fontsize=8, color=color)
    every_loss = losses + [p[2] for p in val_pts]
    lo, hi = min(every_loss), max(every_loss)
    if losses:                 # the minimum marked is the training loss's
        imin = losses.index(min(losses))
        ax.annotate(f"min {losses[imin]:.4g}", xy=(steps[imin], losses[imin]), xytext=(0, -14),
                    textcoords="offset points", ha="center", fontsize=8, color="#3c4043")
    pad = (hi - lo) * 0.12 or max(abs(hi) * 0.1, 0.1)
    ax.set_ylim(lo - pad * 1.6, hi + pad)
    ax.set_xlabel("step", fontsize=9, color="#3c4043")
    ax.set_ylabel("loss", fontsize=9, color="#3c4043")
    fig.tight_layout()
    return _png(fig)


def _loss_section(data: Mapping) -> str:
    tuning = _dict(data.get("tuning"))
    pts = _loss_points(tuning.get("loss_history"))
    val_pts = _loss_points(tuning.get("validation_history"))
    if not pts and not val_pts:
        return ("<section><h2>Tuning loss</h2>"
                + _note("No loss history was reported for this tuning job.") + "</section>")
    facts = []
    if pts:
        losses = [p[2] for p in pts]
        facts += [f"{len(pts)} point(s), steps {_fmt(pts[0][0])}–{_fmt(pts[-1][0])}",
                  f"first loss {losses[0]:.4g}", f"final loss {losses[-1]:.4g}", f"minimum {min(losses):.4g}"]
    else:
        facts.append("no training loss was reported")
    if val_pts:
        vl = [p[2] for p in val_pts]
        best = val_pts[vl.index(min(vl))]
        facts.append(f"validation loss ({len(val_pts)} point(s)): first {vl[0]:.4g}, final {vl[-1]:.4g}, "
                     f"minimum {best[2]:.4g} at step {_fmt(best[0])}")
    epochs = {p[1] for p in pts or val_pts if p[1] is not None}
    if epochs:
        facts.append(f"{len(epochs)} epoch(s) (dotted lines mark epoch starts)")
    ckpts = _checkpoint_scores(data)
    if ckpts:
        facts.append("dashed lines mark checkpoints" + (" (green: the one evaluated best)"
                                                         if any(c["chosen"] for c in ckpts) else ""))
    alt = "Training and validation loss by step" if val_pts else "Training loss by step"
    return ("<section><h2>Tuning loss</h2>"
            f'<p class="sub">{_e("; ".join(facts))}.</p>'
            f'{_img(_loss_plot(pts, ckpts, val_pts), alt)}</section>')


def _judge_section(data: Mapping, gate: Mapping) -> str:
    """Model-based evaluation: pairwise wins / losses / ties with the sign test's p-value, the pointwise means,
    and a few judged examples with the judge's explanations (all escaped: answers and explanations are
    untrusted)."""
    judge = _dict(_dict(data.get("evaluation")).get("judge"))
    if not judge:
        return ""
    rows = [("Judge", f"<code>{_e(judge.get('model'))}</code> ({_e(judge.get('mode'))})")]
    pw = _dict(judge.get("pairwise"))
    rule = next((r for r in _list(gate.get("rules")) if isinstance(r, Mapping)
                 and r.get("name") == "pairwise_win_rate"), None)
    details = _dict((rule or {}).get("details"))
    if pw:
        rows.append(("Pairwise (challenger vs champion, both orders)",
                     f"{_e(pw.get('wins'))} win(s) · {_e(pw.get('losses'))} loss(es) · {_e(pw.get('ties'))} tie(s) "
                     f"· {_e(pw.get('errors'))} judge error(s)"))
        rows.append(("Win rate over non-tied pairs", _e(_fmt(pw.get("win_rate")))))
        p_value = details.get("p_value", pw.get("p_value"))
        rows.append(("Sign test p-value" + (f" (against {_fmt(details.get('p0'))})" if details else ""),
                     _e(_fmt(p_value))))
    for label, mean in _dict(judge.get("pointwise")).items():
        rows.append((f"Mean judge score, {_e(label)}", _e(_fmt(mean))))
    ex_rows = []
    for ex in _list(judge.get("examples")):
        if not isinstance(ex, Mapping):
            continue
        pwx = _dict(ex.get("pairwise"))
        expl = " / ".join(str(x) for x in _list(pwx.get("explanations")) if x)
        pt = _dict(ex.get("pointwise"))
        scores = ", ".join(f"{k}: {_fmt(_dict(v).get('score'))}" for k, v in pt.items())
        for v in pt.values():
            if _dict(v).get("explanation") and not expl:
                expl = str(_dict(v)["explanation"])
        ex_rows.append(f"<tr>{_text_cell(ex.get('prompt'))}{_text_cell(ex.get('challenger'))}"
                       f"{_text_cell(ex.get('champion'))}<td>{_e(pwx.get('outcome') or '')}"
                       f"{(' · ' + _e(scores)) if scores else ''}</td>{_text_cell(expl)}</tr>")
    examples = ""
    if ex_rows:
        examples = ('<h3>Judged examples</h3><div class="scroll"><table class="grid examples"><thead><tr>'
                    "<th>Prompt</th><th>Challenger</th><th>Champion</th><th>Verdict</th>"
                    f"<th>The judge's explanation</th></tr></thead><tbody>{''.join(ex_rows)}</tbody></table></div>")
    return (f"<section><h2>Model-based evaluation</h2>{_kv_table(rows)}{examples}"
            + _note("On Google the judge is a model (Vertex's evaluation service); the emulator's is a "
                    "deterministic stand-in that scores closeness to the reference.") + "</section>")


def _checkpoints_section(data: Mapping) -> str:
    ckpts = _checkpoint_scores(data)
    if len(ckpts) < 2:
        return ""
    best = _dict(_dict(data.get("evaluation")).get("best_checkpoint"))
    metric = best.get("metric")
    score = _e(_label(metric)) if metric else "Score"
    head = f"<th>Checkpoint</th><th>Epoch</th><th>Step</th><th>{score}</th><th></th>"
    dash, chosen = '<span class="muted">—</span>', '<span class="badge pass">best: gated, promoted if it wins</span>'
    body = "".join(
        f"<tr><td>checkpoint {_e(c['checkpoint_id'])}</td><td>{_e(_fmt(c['epoch']))}</td><td>{_e(_fmt(c['step']))}"
        f"</td><td>{_e(_fmt_score(c['score'])) if c['score'] is not None else dash}</td>"
        f"<td>{chosen if c['chosen'] else ''}</td></tr>"
        for c in ckpts)
    if best:
        sub = (f"Every checkpoint was scored on the prompt set; checkpoint {best.get('checkpoint_id')} scored best "
               f"by {_label(metric)} (ties go to the earlier one) and stands for the tuned model from here on.")
    else:
        sub = "The checkpoints were not evaluated one by one (evaluate_checkpoints is off); the last one is used."
    return (f'<section><h2>Checkpoints</h2><p class="sub">{_e(sub)}</p>'
            f'<table class="grid compact"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>')


def _grouped_bars(ax, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]], *,
                  horizontal: bool = False, annotate: bool = True) -> None:
    k = len(series)
    width = 0.8 / max(k, 1)
    for j, (name, values, color) in enumerate(series):
        pos = [i - 0.4 + width * (j + 0.5) for i in range(len(labels))]
        vals = [0.0 if v is None else v for v in values]
        if horizontal:
            bars = ax.barh(pos, vals, height=width * 0.92, color=color, label=_mpl_text(name, 60))
        else:
            bars = ax.bar(pos, vals, width=width * 0.92, color=color, label=_mpl_text(name, 60))
        if annotate:
            texts = ["n/a" if v is None else f"{v:.2f}" for v in values]
            ax.bar_label(bars, labels=texts, padding=2, fontsize=7.5, color="#3c4043")
    ticks = list(range(len(labels)))
    if horizontal:
        ax.set_yticks(ticks, [_mpl_text(x, 30) for x in labels])
        ax.invert_yaxis()
    else:
        ax.set_xticks(ticks, [_mpl_text(x, 30) for x in labels])


def _metrics_plot(names: list[str], ch: Mapping, cp: Mapping | None) -> str:
    series = [("challenger", [_num(_metrics_of(ch).get(m)) for m in names], CHALLENGER_COLOR)]
    if cp:
        series.append(("champion", [_num(_metrics_of(cp).get(m)) for m in names], CHAMPION_COLOR))
    fig = Figure(figsize=(max(5.0, 0.95 * len(names) + 1.5), 3.6))
    ax = fig.add_subplot()
    _style_axes(ax)
    _grouped_bars(ax, [_label(m) for m in names], series)
    ax.set_ylim(0, 1.12)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.tick_params(axis="x", labelrotation=25)
    for t in ax.get_xticklabels():
        t.set_horizontalalignment("right")
    if len(series) > 1:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 1.14), ncol=2, frameon=False, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _metrics_section(data: Mapping, ch: Mapping | None, cp: Mapping | None) -> str:
    if not ch:
        return ("<section><h2>Metrics</h2>"
                + _note("No evaluation summary was recorded.") + "</section>")
    names = _metric_names(ch, cp)
    two = bool(cp)
    head = "<tr><th>Metric</th><th class=\"num\">Challenger</th>" + (
        '<th class="num">Champion</th><th class="num">Δ</th>' if two else "") + "</tr>"
    rows = []
    for m in names:
        a, b = _metrics_of(ch).get(m), _metrics_of(cp).get(m)
        rows.append(f"<tr><td>{_e(_label(m))}</td><td class=\"num\">{_e(_fmt_mean(a))}</td>"
                    + (f'<td class="num">{_e(_fmt_mean(b))}</td>{_fmt_delta(a, b)}' if two else "") + "</tr>")
    sep = f'<tr class="sep"><td colspan="{4 if two else 2}"></td></tr>'
    rows.append(sep)

    def row(label: str, a: Any, b: Any, fmt, *, higher_is_better: bool, pct: bool = False, unit: str = "") -> str:
        delta = _fmt_delta(a, b, higher_is_better=higher_is_better, pct=pct, unit=unit)
        return (f"<tr><td>{label}</td><td class=\"num\">{_e(fmt(a))}</td>"
                + (f'<td class="num">{_e(fmt(b))}</td>{delta}'
                   if two else "") + "</tr>")

    c, p = _dict(ch), _dict(cp)
    rows.append(row("prompts answered", c.get("n_answered"), p.get("n_answered"), _fmt, higher_is_better=True))
    rows.append(row("failed calls", c.get("n_errors"), p.get("n_errors"), _fmt, higher_is_better=False))
    rows.append(row("error rate", c.get("error_rate"), p.get("error_rate"), _fmt_pct, higher_is_better=False,
                    pct=True))

    def sec(v: Any) -> str:
        f = _num(v)
        return "—" if f is None else f"{f:.2f} s"

    for q in ("p50", "p95"):
        rows.append(row(f"latency {q}", _dict(c.get("latency_s")).get(q), _dict(p.get("latency_s")).get(q), sec,
                        higher_is_better=False, unit=" s"))
    table = f'<table class="grid compact"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    plot = _img(_metrics_plot(names, ch, cp), "Metrics, challenger vs champion") if names else _note(
        "No metric values.")
    sub = ("Means over the prompts each model answered without error (failed calls are excluded and counted in the "
           "error rate).")
    if c.get("labels"):
        sub += " References were detected as class labels, so label accuracy and macro F1 are included."
    title = "Metrics: challenger vs champion" if two else "Metrics: challenger (no champion)"
    return (f"<section><h2>{title}</h2><p class=\"sub\">{_e(sub)}</p>"
            f'<div class="side"><div class="side-plot">{plot}</div><div class="side-table">{table}</div></div>'
            "</section>")


def _tag_plot(tags: list[str], pm: str, ch_tags: Mapping, cp_tags: Mapping | None) -> str:
    series = [("challenger", [_num(_metrics_of(ch_tags.get(t)).get(pm)) for t in tags], CHALLENGER_COLOR)]
    if cp_tags:
        series.append(("champion", [_num(_metrics_of(cp_tags.get(t)).get(pm)) for t in tags], CHAMPION_COLOR))
    per_tag = 0.2 * len(series) + 0.14
    fig = Figure(figsize=(9.6, min(9.0, max(2.2, per_tag * len(tags) + 1.0))))
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.grid(False, axis="y")
    ax.grid(True, axis="x", color="#e8eaed", linewidth=0.8)
    _grouped_bars(ax, tags, series, horizontal=True)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(_mpl_text(_label(pm)), fontsize=9, color="#3c4043")
    if len(series) > 1:
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _tags_section(ch: Mapping | None, cp: Mapping | None, pm: str) -> str:
    ch_tags = _dict(_dict(ch).get("per_tag"))
    cp_tags = _dict(_dict(cp).get("per_tag")) if cp else None
    if not ch_tags and not cp_tags:
        return ""
    tags = list(ch_tags) + [t for t in (cp_tags or {}) if t not in ch_tags]
    two = bool(cp)
    extra = [m for m in ("macro_f1",) if m != pm and any(m in _metrics_of(ch_tags.get(t)) for t in tags)]
    metrics = [pm] + extra
    head = ['<tr><th rowspan="2">Tag</th><th rowspan="2" class="num">n</th>']
    for m in metrics:
        head.append(f'<th colspan="{3 if two else 1}" class="center">{_e(_label(m))}</th>')
    head.append(f'<th colspan="{2 if two else 1}" class="center">error rate</th></tr><tr>')
    for _ in metrics:
        head.append('<th class="num">challenger</th>' + ('<th class="num">champion</th><th class="num">Δ</th>'
                                                        if two else ""))
    head.append('<th class="num">challenger</th>' + ('<th class="num">champion</th>' if two else "") + "</tr>")
    rows = []
    for t in tags:
        c, p = _dict(ch_tags.get(t)), _dict((cp_tags or {}).get(t))
        cells = [f"<td>{_e(t)}</td><td class=\"num\">{_e(_fmt(c.get('n', p.get('n'))))}</td>"]
        for m in metrics:
            a, b = _metrics_of(c).get(m), _metrics_of(p).get(m)
            cells.append(f'<td class="num">{_e(_fmt_mean(a))}</td>')
            if two:
                cells.append(f'<td class="num">{_e(_fmt_mean(b))}</td>{_fmt_delta(a, b)}')
        cells.append(f'<td class="num">{_e(_fmt_pct(c.get("error_rate")))}</td>')
        if two:
            cells.append(f'<td class="num">{_e(_fmt_pct(p.get("error_rate")))}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    table = f'<table class="grid compact"><thead>{"".join(head)}</thead><tbody>{"".join(rows)}</tbody></table>'
    if len(tags) <= MAX_TAG_CHART:
        chart = _img(_tag_plot(tags, pm, ch_tags, cp_tags), f"{_label(pm)} per tag")
    else:
        chart = _note(f"{len(tags)} tags: more than {MAX_TAG_CHART}, so no chart (the table lists them all).")
    return ("<section><h2>Per-tag breakdown</h2>"
            f'<p class="sub">Primary metric: <b>{_e(_label(pm))}</b>. A prompt counts under each of its tags.</p>'
            f'{chart}<div class="scroll">{table}</div></section>')


def _text_cell(text: Any, error: Any = None) -> str:
    if error:
        return f'<td><span class="badge fail">error</span> <span class="err">{_e(error)}</span></td>'
    if text is None:
        return '<td class="muted">—</td>'
    s = str(text)
    more = ""
    if len(s) > MAX_TEXT_CHARS:
        more = f' <span class="muted">[… {len(s) - MAX_TEXT_CHARS} more characters]</span>'
        s = s[:MAX_TEXT_CHARS]
    return f'<td><div class="text">{_e(s)}{more}</div></td>'


def _classify(ex: Mapping) -> tuple[int, str, str] | None:
    """(sort rank, css class, label) for an example where the models differ, or None if they do not."""
    ce, pe = ex.get("challenger_error"), ex.get("champion_error")
    cs, ps = _num(ex.get("challenger_score")), _num(ex.get("champion_score"))
    if ce and not pe:
        return (0, "bad", "challenger failed")
    if pe and not ce:
        return (2, "good", "champion failed")
    if ce and pe:
        return None
    if cs is not None and ps is not None and abs(cs - ps) > 1e-12:
        return (1, "bad", "champion better") if cs < ps else (2, "good", "challenger better")
    a, b = ex.get("challenger"), ex.get("champion")
    if (a is None) != (b is None) or (a is not None and str(a).strip() != str(b).strip()):
        return (3, "muted", "same score")
    return None


def _examples_section(data: Mapping) -> str:
    examples = [_dict(x) for x in _list(data.get("examples"))]
    models = _dict(_dict(data.get("evaluation")).get("models"))
    has_champion = bool(models.get("champion")) or any(
        x.get("champion") is not None or x.get("champion_error") for x in examples)
    if has_champion:
        title = "Examples where the models differ"
        picked = []
        for i, x in enumerate(examples):
            c = _classify(x)
            if c is not None:
                picked.append((c[0], i, c, x))
        picked.sort(key=lambda t: (t[0], t[1]))
        rows_in = [(c, x) for _, _, c, x in picked]
        counts: dict[str, int] = {}
        for c, _ in rows_in:
            counts[c[2]] = counts.get(c[2], 0) + 1
        sub = (f"{len(rows_in)} of {len(examples)} example(s) differ"
               + (": " + ", ".join(f"{n} {k}" for k, n in counts.items()) if counts else "")
               + ". Worst for the challenger first.")
    else:
        title = "Examples the challenger got wrong"
        rows_in = []
        for x in examples:
            s = _num(x.get("challenger_score"))
            if x.get("challenger_error"):
                rows_in.append(((0, "bad", "failed"), x))
            elif s is not None and s < 1 - 1e-12:
                rows_in.append(((1, "bad", "wrong"), x))
        rows_in.sort(key=lambda t: t[0][0])
        sub = f"No champion to compare with: {len(rows_in)} of {len(examples)} example(s) scored below 1 or failed."
    if not examples:
        return f"<section><h2>{title}</h2>" + _note("No examples were recorded.") + "</section>"
    if not rows_in:
        return (f"<section><h2>{title}</h2><p class=\"sub\">{_e(sub)}</p>"
                + _note("Nothing to show.") + "</section>")
    shown = rows_in[:MAX_EXAMPLE_ROWS]
    head = ("<tr><th>#</th><th>Prompt</th><th>Reference</th><th>Challenger answer</th>"
            + ("<th>Champion answer</th>" if has_champion else "")
            + '<th class="num">Scores</th></tr>')
    rows = []
    for k, ((_, cls, label), x) in enumerate(shown, 1):
        tags = "".join(f'<span class="tag">{_e(t)}</span>' for t in _list(x.get("tags")))
        pid = f'<div class="pid">{_e(x.get("prompt_id"))}</div>' if x.get("prompt_id") is not None else ""
        score = f'<div>challenger <b>{_e(_fmt_score(x.get("challenger_score")))}</b></div>'
        if has_champion:
            score += f'<div>champion <b>{_e(_fmt_score(x.get("champion_score")))}</b></div>'
        score += f'<div class="badge {cls}">{_e(label)}</div>'
        rows.append(
            f"<tr><td class=\"num muted\">{k}</td>"
            f'<td><div class="text">{_e(x.get("prompt"))}</div>{pid}{tags}</td>'
            f'{_text_cell(x.get("reference"))}'
            f'{_text_cell(x.get("challenger"), x.get("challenger_error"))}'
            + (_text_cell(x.get("champion"), x.get("champion_error")) if has_champion else "")
            + f'<td class="num scores">{score}</td></tr>'
        )
    more = ""
    if len(rows_in) > len(shown):
        uri = _dict(data.get("evaluation")).get("results_uri")
        more = _note(f"… and {len(rows_in) - len(shown)} more example(s) not shown (the table is capped at "
                     f"{MAX_EXAMPLE_ROWS} rows)" + (f"; every answer is in <code>{_e(uri)}</code>" if uri else "")
                     + ".")
    return (f"<section><h2>{title}</h2><p class=\"sub\">{_e(sub)}</p>"
            f'<div class="scroll"><table class="grid examples"><thead>{head}</thead><tbody>{"".join(rows)}'
            f"</tbody></table></div>{more}</section>")


_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f1f3f4;color:#202124;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
.container{max-width:1180px;margin:0 auto;padding:24px 20px 40px}
header h1{font-size:24px;margin:0 0 4px;font-weight:600}
.meta{color:#5f6368;font-size:13px;display:flex;flex-wrap:wrap;gap:4px 18px;margin-bottom:14px}
.meta b{font-weight:600;color:#3c4043}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f1f3f4;
padding:1px 4px;border-radius:3px;word-break:break-all}
.decision{border-radius:10px;padding:16px 22px;color:#fff;box-shadow:0 1px 3px rgba(60,64,67,.3)}
.decision.promote{background:""" + PROMOTE_COLOR + """}
.decision.delete{background:""" + DELETE_COLOR + """}
.decision.unknown{background:""" + NEUTRAL_COLOR + """}
.decision-word{font-size:38px;font-weight:800;letter-spacing:.06em;line-height:1.1}
.decision .action{font-size:17px;font-weight:600;margin-top:4px}
.decision .summary{font-size:14px;margin-top:6px;opacity:.95}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0 0}
.card{flex:1 1 150px;background:#fff;border-radius:8px;padding:12px 16px;border-top:4px solid #dadce0;
box-shadow:0 1px 2px rgba(60,64,67,.2)}
.card.challenger{border-top-color:""" + CHALLENGER_COLOR + """}
.card.champion{border-top-color:""" + CHAMPION_COLOR + """}
.card-value{font-size:26px;font-weight:700}
.card-label{color:#5f6368;font-size:12.5px}
section{background:#fff;border-radius:8px;padding:18px 22px;margin-top:16px;box-shadow:0 1px 2px rgba(60,64,67,.2)}
h2{font-size:18px;margin:0 0 8px;font-weight:600}
h3{font-size:14px;margin:0 0 6px;color:#3c4043}
.sub{color:#5f6368;margin:0 0 12px;font-size:13px}
.note{color:#5f6368;font-style:italic;margin:8px 0 0}
.cols{display:flex;flex-wrap:wrap;gap:24px}.cols>div{flex:1 1 420px;min-width:0}
.side{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}
.side-plot{flex:1 1 520px;min-width:0}.side-table{flex:0 1 400px;min-width:0}
img.plot{display:block;max-width:100%;height:auto;margin:4px auto 10px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:6px 9px}
table.kv th{width:32%;color:#5f6368;font-weight:500;white-space:nowrap}
table.kv tr+tr{border-top:1px solid #f1f3f4}
.hp{padding-left:12px;font-style:italic}
table.grid{font-size:13px}
table.grid thead th{background:#f8f9fa;border-bottom:2px solid #dadce0;font-weight:600;white-space:nowrap}
table.grid tbody tr:nth-child(even){background:#f8f9fa}
table.grid tbody tr:hover{background:#e8f0fe}
table.grid td{border-bottom:1px solid #eceff1}
table.compact td,table.compact th{padding:4px 8px}
table.compact td:first-child{white-space:nowrap}
tr.sep td{padding:2px;background:#fff;border-bottom:1px solid #dadce0}
th.center{text-align:center}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.good{color:#188038;font-weight:600}.bad{color:#c5221f;font-weight:600}.muted{color:#80868b}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:11.5px;font-weight:700;
text-transform:uppercase;letter-spacing:.03em;background:#e8eaed;color:#3c4043}
.badge.pass{background:#e6f4ea;color:#137333}.badge.fail{background:#fce8e6;color:#c5221f}
.badge.skipped{background:#f1f3f4;color:#5f6368}
.badge.good{background:#e6f4ea;color:#137333}.badge.bad{background:#fce8e6;color:#c5221f}
.badge.muted{background:#f1f3f4;color:#5f6368}
tr.rule-fail td:first-child{box-shadow:inset 3px 0 0 #c5221f}
tr.rule-pass td:first-child{box-shadow:inset 3px 0 0 #188038}
table.grid td code{white-space:nowrap;word-break:normal}
.details{color:#80868b;font-size:11.5px;margin-top:3px;word-break:break-word}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.swatch.challenger{background:""" + CHALLENGER_COLOR + """}.swatch.champion{background:""" + CHAMPION_COLOR + """}
.scroll{overflow-x:auto}
table.examples td{font-size:12.5px}
table.examples .text{white-space:pre-wrap;word-break:break-word;max-height:11em;overflow:auto;min-width:120px}
table.examples .scores{font-size:12px}
table.examples .scores .badge{margin-top:4px;font-size:10.5px}
.pid{color:#80868b;font-size:11px;margin-top:3px}
.tag{display:inline-block;background:#e8f0fe;color:#1967d2;border-radius:8px;padding:0 6px;font-size:11px;
margin:3px 4px 0 0}
.err{color:#c5221f;word-break:break-word}
footer{color:#80868b;font-size:12px;text-align:center;margin-top:18px}
"""


# ---------------------------------------------------------------------------------------------- API

def report_data(*, dag_id: str, run_id: str, generated_at: str | None, tuning: Mapping, evaluation: Mapping,
                gate: Mapping, action_taken: str | None, examples: list[dict]) -> dict:
    """The report's input from the pipeline's results (XCom of the tune, evaluate and gate tasks)."""
    summary = evaluation.get("summary", {})
    return {"title": f"Gemini tuning report — {dag_id}", "dag_id": dag_id, "run_id": run_id,
            "generated_at": generated_at,
            "tuning": {"backend": tuning.get("backend"), "job_name": tuning.get("name"),
                       "tuned_model": tuning.get("tuned_model"), "endpoint": tuning.get("endpoint"),
                       "loss_history": tuning.get("loss_history") or [],
                       "validation_history": tuning.get("validation_history") or [],
                       "example_count": tuning.get("example_count"), "continued_from": tuning.get("continued_from"),
                       "checkpoints": tuning.get("checkpoints") or []},
            "evaluation": {"n_prompts": evaluation.get("n_prompts"), "results_uri": evaluation.get("results_uri"),
                           "models": evaluation.get("models", {}), "best_checkpoint": evaluation.get("best_checkpoint"),
                           "judge": evaluation.get("judge"), "tokens": evaluation.get("tokens"),
                           "summary": {"challenger": summary.get("challenger"), "champion": summary.get("champion")}},
            "gate": gate, "decision": gate.get("decision"), "action_taken": action_taken, "examples": examples}


def render_report(data: dict) -> str:
    """Render the run report as one self-contained HTML page (see the module docstring for ``data``).

    Degrades gracefully: with no champion, no loss history, no evaluation or no examples the sections say
    so instead of failing.
    """
    data = _dict(data)
    gate = _dict(data.get("gate"))
    ev = _dict(data.get("evaluation"))
    summ = _dict(ev.get("summary"))
    ch = _dict(summ.get("challenger")) or None
    cp = _dict(summ.get("champion")) or None
    pm = _primary_metric(data, gate, ch)
    title = data.get("title") or "Gemini tuning report"
    body = "".join([
        _header(data, gate),
        _cards(data, ch, cp, pm),
        _gate_section(gate),
        _loss_section(data),
        _checkpoints_section(data),
        _metrics_section(data, ch, cp),
        _judge_section(data, gate),
        _tags_section(ch, cp, pm),
        _examples_section(data),
        _setup_section(data),
    ])
    footer = "Generated by the gemini_tuning Airflow plugin"
    if data.get("generated_at"):
        footer += f" at {_e(data['generated_at'])}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f'<body><div class="container">{body}<footer>{footer}</footer></div></body></html>\n'
    )
