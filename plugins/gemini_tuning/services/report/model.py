"""What the report shows, section by section, as plain data for ``templates/report.html`` (no markup here).

Input: the dict of :func:`gemini_tuning.services.report.report_data` (see the package docstring); every part but
``title``/``run_id`` optional, a missing part is shown as a short note, never an error. Output
(:func:`report_model`): one dict per section, strings already formatted, charts as :class:`.charts.Chart`, class
names only from fixed sets (``promote``/``delete``/``unknown``, ``pass``/``fail``/``skipped``, ``good``/``bad``/
``muted``), so nothing from the input ever becomes markup or a class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ...core.vocabulary import DEFAULT_PRIMARY_METRIC
from . import charts
from .examples import examples_section, judge_section
from .format import (
    as_dict,
    as_list,
    delta,
    fmt,
    fmt_mean,
    fmt_pct,
    fmt_score,
    fmt_seconds,
    label,
    metric_names,
    metrics_of,
    num,
)

__all__ = ["MAX_TAG_CHART", "checkpoint_scores", "loss_points", "primary_metric", "report_model"]

#: The per-tag bar chart is drawn only up to this many tags (the table always lists all of them).
MAX_TAG_CHART = 20
VERDICTS = ("pass", "fail", "skipped")
BACKEND_TITLES = {"vertex": "Vertex AI", "gemini_api": "Gemini API"}


def _row(label_: str, text: Any = None, *, code: Any = None, cls: str = "", swatch: str = "",
         muted: bool = False) -> dict:
    """A key/value row: ``text`` (greyed when ``muted``) and/or ``code`` (monospace) as its value; ``cls``/``swatch``
    of its label."""
    return {"label": label_, "text": None if text is None else str(text), "code": None if code is None else str(code),
            "cls": cls, "swatch": swatch, "muted": muted}


def primary_metric(data: Mapping, gate: Mapping, ch: Mapping | None) -> str:
    """The metric the report leads with: the evaluation's, else the gate's ``champion_margin`` rule's, else the
    default; one the challenger has when it has metrics.

    :param data: the report's input.
    :param gate: the gate's decision.
    :param ch: the challenger's summary.
    """
    pm = as_dict(data.get("evaluation")).get("primary_metric")
    if not pm:
        for r in as_list(gate.get("rules")):
            details = as_dict(as_dict(r).get("details"))
            if as_dict(r).get("name") == "champion_margin" and details.get("metric"):
                pm = details["metric"]
                break
    pm = pm or DEFAULT_PRIMARY_METRIC
    metrics = metrics_of(ch)
    if metrics and pm not in metrics:
        pm = next((m for m in ("item_metric", DEFAULT_PRIMARY_METRIC) if m in metrics), next(iter(metrics)))
    return str(pm)


def provenance_meta(gate: Mapping) -> list[tuple[str, str]]:
    """What the promotion can be traced to, from the gate's result: the reviewed pipeline file (id, file, revision
    and policy hash, when the run was built from one) and the verdict record (id and the hash of the policy the
    gate applied). Missing parts are left out.

    :param gate: the gate's result (``services.evaluation.gate_evaluation``'s XCom).
    """
    pipeline = as_dict(gate.get("pipeline"))
    rows = [("Pipeline", pipeline.get("id")), ("Pipeline file", pipeline.get("file")),
            ("File revision", pipeline.get("revision")), ("Pipeline policy", pipeline.get("policy_hash")),
            ("Verdict", gate.get("verdict_id")), ("Gate policy", gate.get("policy_hash"))]
    return [(name, str(value)) for name, value in rows if value not in (None, "")]


def _header(data: Mapping, gate: Mapping) -> dict:
    decision = data.get("decision") or gate.get("decision")
    decision = str(decision).replace("_", " ") if decision else "unknown"
    meta = [(name, str(data[key])) for key, name in (("dag_id", "DAG"), ("run_id", "Run"),
                                                      ("generated_at", "Generated")) if data.get(key)]
    meta += provenance_meta(gate)
    return {"title": str(data.get("title") or "Gemini tuning report"), "meta": meta, "word": decision.upper(),
            "cls": decision if decision in ("promote", "delete") else "unknown",
            "action": data.get("action_taken") or None, "summary": gate.get("summary") or None}


def _cards(data: Mapping, ch: Mapping | None, cp: Mapping | None, pm: str) -> list[dict]:
    ev = as_dict(data.get("evaluation"))
    cards = []
    n = ev.get("n_prompts", as_dict(ch).get("n"))
    if n is not None:
        cards.append({"label": "prompts evaluated", "value": fmt(n), "cls": "", "value_cls": ""})
    if ch:
        cards.append({"label": f"challenger {label(pm)}", "value": fmt(num(metrics_of(ch).get(pm)), 3),
                      "cls": "challenger", "value_cls": ""})
    if cp:
        v = metrics_of(cp).get(pm)
        cards.append({"label": f"champion {label(pm)}", "value": fmt(num(v), 3), "cls": "champion", "value_cls": ""})
        a, b = num(metrics_of(ch).get(pm)), num(v)
        if a is not None and b is not None:
            d = a - b
            cls = "good" if d > 1e-12 else ("bad" if d < -1e-12 else "")
            cards.append({"label": "difference", "value": f"{d:+.3f}", "cls": "", "value_cls": cls})
    if ch:
        cards.append({"label": "challenger error rate", "value": fmt_pct(as_dict(ch).get("error_rate")), "cls": "",
                      "value_cls": ""})
    return cards


def _gate(gate: Mapping) -> dict:
    rules = [as_dict(r) for r in as_list(gate.get("rules"))]
    out = []
    for r in rules:
        verdict = str(r.get("verdict") or "")
        details = as_dict(r.get("details"))
        out.append({"name": "" if r.get("name") is None else str(r.get("name")), "observed": fmt(r.get("observed")),
                    "threshold": fmt(r.get("threshold")), "verdict": verdict or "?",
                    "cls": verdict if verdict in VERDICTS else "unknown",
                    "reason": "" if r.get("reason") is None else str(r.get("reason")),
                    "details": ", ".join(f"{k}={fmt(v)}" for k, v in details.items())})
    counts = {v: sum(1 for r in rules if r.get("verdict") == v) for v in VERDICTS}
    return {"rules": out, "counts": counts}


def loss_points(history: Any) -> list[tuple[float, float | None, float]]:
    """``(step, epoch, loss)`` of a loss history (``[[step, epoch, loss], ...]`` or dicts), junk rows left out,
    sorted by step.

    :param history: the history as the job reported it.
    """
    pts = []
    for row in as_list(history):
        if isinstance(row, Mapping):
            row = (row.get("step"), row.get("epoch"), row.get("loss"))
        if not isinstance(row, (list, tuple)) or len(row) < 3:
            continue
        step, epoch, loss = num(row[0]), num(row[1]), num(row[2])
        if step is not None and loss is not None:
            pts.append((step, epoch, loss))
    pts.sort(key=lambda p: p[0])
    return pts


def checkpoint_scores(data: Mapping) -> list[dict]:
    """The checkpoints with their evaluation scores (score None: not evaluated), in step order.

    :param data: the report's input.
    """
    best = as_dict(as_dict(data.get("evaluation")).get("best_checkpoint"))
    scores = {str(as_dict(r).get("checkpoint_id")): as_dict(r).get("score") for r in as_list(best.get("scores"))}
    rows = [{"checkpoint_id": str(c.get("checkpoint_id")), "epoch": c.get("epoch"), "step": num(c.get("step")),
             "score": scores.get(str(c.get("checkpoint_id"))),
             "chosen": str(c.get("checkpoint_id")) == str(best.get("checkpoint_id"))}
            for c in as_list(as_dict(data.get("tuning")).get("checkpoints")) if isinstance(c, Mapping)]
    return sorted(rows, key=lambda r: r["step"] if r["step"] is not None else math.inf)


def _epoch_starts(pts: list[tuple[float, float | None, float]]) -> list[tuple[float, float]]:
    """The first step of every epoch after the first."""
    bounds, prev = [], None
    for step, epoch, _ in pts:
        if epoch is not None and prev is not None and epoch != prev:
            bounds.append((step, epoch))
        if epoch is not None:
            prev = epoch
    return bounds


def _loss(data: Mapping) -> dict | None:
    tuning = as_dict(data.get("tuning"))
    pts, val = loss_points(tuning.get("loss_history")), loss_points(tuning.get("validation_history"))
    if not pts and not val:
        return None
    facts = []
    if pts:
        losses = [p[2] for p in pts]
        facts += [f"{len(pts)} point(s), steps {fmt(pts[0][0])}–{fmt(pts[-1][0])}", f"first loss {losses[0]:.4g}",
                  f"final loss {losses[-1]:.4g}", f"minimum {min(losses):.4g}"]
    else:
        facts.append("no training loss was reported")
    if val:
        vl = [p[2] for p in val]
        best = val[vl.index(min(vl))]
        facts.append(f"validation loss ({len(val)} point(s)): first {vl[0]:.4g}, final {vl[-1]:.4g}, "
                     f"minimum {best[2]:.4g} at step {fmt(best[0])}")
    if {p[1] for p in pts or val if p[1] is not None}:
        facts.append(f"{len({p[1] for p in pts or val if p[1] is not None})} epoch(s) (dotted lines mark epoch starts)")
    ckpts = checkpoint_scores(data)
    if ckpts:
        facts.append("dashed lines mark checkpoints" + (" (green: the one evaluated best)"
                                                         if any(c["chosen"] for c in ckpts) else ""))
    title = "Training and validation loss by step" if val else "Training loss by step"
    markers = [charts.Marker(c["step"], f"ckpt {c['checkpoint_id']}"
                             + (f" · {fmt_score(c['score'])}" if c["score"] is not None else ""), c["chosen"])
               for c in ckpts if c["step"] is not None]
    series = [("training loss", [(p[0], p[2]) for p in pts], charts.LOSS_COLOR)]
    if val:
        series.append(("validation loss", [(p[0], p[2]) for p in val], charts.VALIDATION_COLOR))
    chart = charts.loss_chart(series, markers=markers, epochs=_epoch_starts(pts), width=960, height=340,
                              title=title, mark_minimum=bool(pts))
    return {"facts": "; ".join(facts), "chart": chart}


def _checkpoints(data: Mapping) -> dict | None:
    ckpts = checkpoint_scores(data)
    if len(ckpts) < 2:
        return None
    best = as_dict(as_dict(data.get("evaluation")).get("best_checkpoint"))
    metric = best.get("metric")
    if best:
        sub = (f"Every checkpoint was scored on the prompt set; checkpoint {best.get('checkpoint_id')} scored best "
               f"by {label(metric)} (ties go to the earlier one) and stands for the tuned model from here on.")
    else:
        sub = "The checkpoints were not evaluated one by one (evaluate_checkpoints is off); the last one is used."
    rows = [{"id": c["checkpoint_id"], "epoch": fmt(c["epoch"]), "step": fmt(c["step"]),
             "score": fmt_score(c["score"]) if c["score"] is not None else None, "chosen": c["chosen"]}
            for c in ckpts]
    return {"metric": label(metric) if metric else "Score", "sub": sub, "rows": rows}


def _bars(labels: list[str], challenger: list, champion: list | None, title: str, width: int):
    """Challenger (and champion) bars, one group per label."""
    series = [("challenger", challenger, charts.CHALLENGER_COLOR)]
    if champion is not None:
        series.append(("champion", champion, charts.CHAMPION_COLOR))
    return charts.bar_chart(labels, series, width=width, title=title)


def _metrics(ch: Mapping | None, cp: Mapping | None) -> dict | None:
    if not ch:
        return None
    names = metric_names(ch, cp)
    c, p = as_dict(ch), as_dict(cp)
    rows = [{"label": label(m), "a": fmt_mean(metrics_of(ch).get(m)), "b": fmt_mean(metrics_of(cp).get(m)),
             "delta": delta(metrics_of(ch).get(m), metrics_of(cp).get(m))} for m in names]

    def row(name: str, a: Any, b: Any, f, **kw) -> dict:
        return {"label": name, "a": f(a), "b": f(b), "delta": delta(a, b, **kw)}

    extra = [row("prompts answered", c.get("n_answered"), p.get("n_answered"), fmt, higher_is_better=True),
             row("failed calls", c.get("n_errors"), p.get("n_errors"), fmt, higher_is_better=False),
             row("error rate", c.get("error_rate"), p.get("error_rate"), fmt_pct, higher_is_better=False, pct=True)]
    extra += [row(f"latency {q}", as_dict(c.get("latency_s")).get(q), as_dict(p.get("latency_s")).get(q),
                  fmt_seconds, higher_is_better=False, unit=" s") for q in ("p50", "p95")]
    sub = ("Means over the prompts each model answered without error (failed calls are excluded and counted in the "
           "error rate).")
    if c.get("labels"):
        sub += " References were detected as class labels, so label accuracy and macro F1 are included."
    two = bool(cp)
    return {"title": "Metrics: challenger vs champion" if two else "Metrics: challenger (no champion)", "sub": sub,
            "two": two, "rows": rows, "extra": extra,
            "chart": _bars([label(m) for m in names], [num(metrics_of(ch).get(m)) for m in names],
                           [num(metrics_of(cp).get(m)) for m in names] if cp else None,
                           "Metrics, challenger vs champion", 560) if names else None}


def _tags(ch: Mapping | None, cp: Mapping | None, pm: str) -> dict | None:
    ch_tags = as_dict(as_dict(ch).get("per_tag"))
    cp_tags = as_dict(as_dict(cp).get("per_tag")) if cp else None
    if not ch_tags and not cp_tags:
        return None
    tags = [str(t) for t in ch_tags] + [str(t) for t in (cp_tags or {}) if t not in ch_tags]
    two = bool(cp)
    metrics = [pm] + [m for m in ("macro_f1",) if m != pm and any(m in metrics_of(ch_tags.get(t)) for t in tags)]
    rows = []
    for t in tags:
        c, p = as_dict(ch_tags.get(t)), as_dict((cp_tags or {}).get(t))
        cells = [{"a": fmt_mean(metrics_of(c).get(m)), "b": fmt_mean(metrics_of(p).get(m)),
                  "delta": delta(metrics_of(c).get(m), metrics_of(p).get(m))} for m in metrics]
        rows.append({"tag": t, "n": fmt(c.get("n", p.get("n"))), "cells": cells,
                     "err_a": fmt_pct(c.get("error_rate")), "err_b": fmt_pct(p.get("error_rate"))})
    chart = None
    if len(tags) <= MAX_TAG_CHART:
        chart = _bars(tags, [num(metrics_of(ch_tags.get(t)).get(pm)) for t in tags],
                      [num(metrics_of(cp_tags.get(t)).get(pm)) for t in tags] if cp_tags else None,
                      f"{label(pm)} per tag", 960)
    return {"pm": label(pm), "two": two, "metrics": [label(m) for m in metrics], "rows": rows, "chart": chart,
            "n_tags": len(tags), "max_chart": MAX_TAG_CHART}


MAX_DROPPED_ROWS = 20


def _data_stats_rows(tuning: Mapping) -> list[dict]:
    """The service's own count of billable tokens beside the prepare step's estimate, and the examples it dropped
    (by the source file's line when the line map was kept; Vertex lists "a partial sample" of the indices)."""
    rows = []
    billed, estimate = tuning.get("billable_tokens"), tuning.get("estimated_tokens")
    if billed is not None or estimate is not None:
        def tokens(n):
            return f"{int(n):,}" if isinstance(n, (int, float)) and not isinstance(n, bool) else "—"

        rows.append(_row("Billable tokens", f"service {tokens(billed)} · estimate (chars / 4) {tokens(estimate)} "
                                            "(the training examples, one pass)"))
    count, dropped = tuning.get("dropped_count"), list(tuning.get("dropped") or ())
    if count:
        total = tuning.get("example_count")
        share = f" ({100 * count / total:.1f} % of {fmt(total)})" if total else ""
        rows.append(_row("Dropped by the service", f"{fmt(count)} example(s){share}"))
    for d in dropped[:MAX_DROPPED_ROWS]:
        where = (f"line {d['line']} of {d.get('source') or 'the training file'}" if d.get("line")
                 else f"example {d['index']} of the uploaded file")
        rows.append(_row(f"  {where}", d.get("reason") or "no reason given", cls="hp"))
    if len(dropped) > MAX_DROPPED_ROWS:
        rows.append(_row("", f"… and {len(dropped) - MAX_DROPPED_ROWS} more listed by the service", muted=True))
    return rows


def _setup(data: Mapping) -> dict | None:
    tuning, ev = as_dict(data.get("tuning")), as_dict(data.get("evaluation"))
    if not tuning and not ev:
        return None
    models = as_dict(ev.get("models"))
    left = []
    if tuning.get("backend"):
        left.append(_row("Backend", BACKEND_TITLES.get(tuning["backend"], tuning["backend"])))
    for key, name in (("job_name", "Tuning job"), ("base_model", "Base model"), ("continued_from", "Continued from"),
                      ("tuned_model", "Tuned model"), ("endpoint", "Endpoint")):
        if tuning.get(key):
            left.append(_row(name, code=tuning[key]))
    if tuning.get("base_retirement"):
        left.append(_row("Base model lifecycle", tuning["base_retirement"]))
    if tuning.get("example_count") is not None:
        left.append(_row("Training examples", fmt(tuning["example_count"])))
    left += _data_stats_rows(tuning)
    left += [_row(str(k), fmt(v), cls="hp") for k, v in as_dict(tuning.get("hyperparameters")).items()]
    right = []
    if models.get("challenger"):
        right.append(_row("Challenger", code=models["challenger"], swatch="challenger"))
    right.append(_row("Champion", code=models["champion"], swatch="champion") if models.get("champion")
                 else _row("Champion", "none (first model: no comparison)", swatch="champion", muted=True))
    if ev.get("n_prompts") is not None:
        right.append(_row("Prompts", fmt(ev["n_prompts"])))
    for name, use in as_dict(ev.get("tokens")).items():
        use = as_dict(use)
        right.append(_row(f"Tokens, {name}", f"{fmt(use.get('prompt'))} prompt + {fmt(use.get('output'))} output = "
                                             f"{fmt(use.get('total'))} ({fmt(use.get('calls_with_usage'))} call(s) "
                                             "reported usage)"))
    if ev.get("results_uri"):
        right.append(_row("Results", code=ev["results_uri"]))
    return {"left": left, "right": right}


def report_model(data: Any) -> dict:
    """Everything the report shows, section by section (the keys of ``templates/report.html``).

    :param data: the report's input (see the package docstring); anything that is not a dict is an empty report.
    """
    data = as_dict(data)
    gate = as_dict(data.get("gate"))
    summ = as_dict(as_dict(data.get("evaluation")).get("summary"))
    ch = as_dict(summ.get("challenger")) or None
    cp = as_dict(summ.get("champion")) or None
    pm = primary_metric(data, gate, ch)
    return {"header": _header(data, gate), "cards": _cards(data, ch, cp, pm), "gate": _gate(gate),
            "loss": _loss(data), "checkpoints": _checkpoints(data), "metrics": _metrics(ch, cp),
            "judge": judge_section(data, gate), "tags": _tags(ch, cp, pm), "examples": examples_section(data),
            "setup": _setup(data), "generated_at": data.get("generated_at") or None}
