"""HTML of the UI page (overview and one run), from ``ui.views`` dicts. Pure; every value is escaped.

No JavaScript: a page of an active run refreshes itself (``<meta http-equiv="refresh">``); charts are inline SVG
(``ui.svg``). Served with a Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from ..core.vocabulary import METRIC_TITLES
from . import svg

PREFIX = "/gemini-tuning"
REFRESH_SECONDS = 10
STATE_CLASS = {"success": "ok", "failed": "bad", "upstream_failed": "bad", "skipped": "muted", "running": "run",
               "deferred": "run", "queued": "run", "scheduled": "run", "up_for_retry": "warn"}
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#202124;background:#f8f9fa}
.wrap{max-width:1180px;margin:0 auto;padding:16px 20px}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:17px;margin:18px 0 8px}h3{font-size:14px;margin:12px 0 6px}
section,.card{background:#fff;border:1px solid #dadce0;border-radius:8px;padding:12px 16px;margin:10px 0}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:5px 8px;
border-bottom:1px solid #eee;vertical-align:top}th{color:#5f6368;font-weight:600}
code{font-size:12px;word-break:break-all}.muted{color:#80868b}.small{font-size:12px}
.pill{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600;background:#f1f3f4}
.pill.ok{background:#e6f4ea;color:#137333}.pill.bad{background:#fce8e6;color:#c5221f}
.pill.run{background:#e8f0fe;color:#1967d2}.pill.warn{background:#fef7e0;color:#b06000}
.pill.muted{color:#80868b}.pill.promote{background:#e6f4ea;color:#137333}.pill.delete{background:#fce8e6;color:#c5221f}
.pill.no_decision,.pill.nodecision{background:#fef7e0;color:#b06000}
.unreadable{color:#c5221f;font-size:12px;word-break:break-word}.note{color:#b06000;font-size:12px}
.steps span{margin-right:6px}.grid2{display:grid;grid-template-columns:1fr 1fr;gap:12px}
a{color:#1a73e8;text-decoration:none}a:hover{text-decoration:underline}
.pre{white-space:pre-wrap;word-break:break-word;max-height:8em;overflow:auto}
"""


def _e(value) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _q(value: str) -> str:
    return quote(str(value), safe="")


def run_url(dag_id: str, run_id: str) -> str:
    return f"{PREFIX}/runs/{_q(dag_id)}/{_q(run_id)}"


def report_url(dag_id: str, run_id: str) -> str:
    return f"{PREFIX}/report/{_q(dag_id)}/{_q(run_id)}"


def _pill(state, extra: str = "") -> str:
    css = re.sub(r"[^a-z_-]", "", str(STATE_CLASS.get(str(state), extra)))     # a class name, nothing else
    return f'<span class="pill {css}">{_e(state or "—")}</span>'


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return _e(v)


def _num(v) -> str:
    """A gate value for people (``0.05000000000000044`` -> ``0.05``); the exact JSON is in ``data-value``."""
    if isinstance(v, float):
        return _e(f"{v:.6g}")
    return "—" if v is None else _e(v)


def _page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}<title>{_e(title)}</title>'
            f'<style>{CSS}</style></head><body><div class="wrap">{body}</div></body></html>')


def _metric(name: str) -> str:
    return METRIC_TITLES.get(name, name)


# ------------------------------------------------------------------------------------------------ overview
def overview_page(data: Mapping) -> str:
    parts = ['<h1>Gemini tuning</h1>',
             f'<p class="muted small">{_e(len(data["pipelines"]))} pipeline(s), {_e(data["n_runs"])} recent run(s). '
             "Each pipeline is one champion pointer; its runs tune, evaluate and promote or delete.</p>"]
    if not data["pipelines"]:
        parts.append('<section><p class="muted">No runs of this package\'s operators yet (or none you may read).'
                     "</p></section>")
    for p in data["pipelines"]:
        parts.append(_pipeline(p))
    active = any(r["state"] in ("running", "queued") for p in data["pipelines"] for r in p["runs"])
    return _page("Gemini tuning", "".join(parts), refresh=active)


def _champion(c: Mapping | None, unreadable: str | None = None) -> str:
    if unreadable:
        return f'<p class="unreadable champion-unreadable">Champion pointer unreadable: {_e(unreadable)}</p>'
    if not c:
        return '<p class="muted">No champion yet.</p>'
    metrics = ", ".join(f"{_e(_metric(k))} {_fmt(v)}" for k, v in sorted(c["metrics"].items())
                        if isinstance(v, (int, float)))
    ckpt = f" · checkpoint {_e(c['checkpoint_id'])}" if c.get("checkpoint_id") else ""
    return (f'<table class="champion"><tr><th>Champion</th><td><code class="champion-model">{_e(c["model"])}</code>'
            f"{ckpt}</td></tr><tr><th>Since</th><td>{_e(c['since'])}</td></tr>"
            f"<tr><th>Promoted by</th><td>{_promoter(c)}</td></tr><tr><th>Metrics</th><td>{metrics or '—'}</td></tr>"
            f"<tr><th>Previous</th><td><code>{_e(c['previous'] or '—')}</code></td></tr></table>")


def _promoter(c: Mapping) -> str:
    if not c.get("dag_id") or not c.get("run_id"):
        return '<span class="muted">a run of a DAG whose XCom you may not read</span>'
    return f"{_e(c['dag_id'])} / <a href=\"{run_url(c['dag_id'], c['run_id'])}\">{_e(c['run_id'])}</a>"


_ACTION = {"promoted": "promote", "deleted": "delete"}
_NO_HISTORY = '<p class="muted">No promotions or deletions yet.</p>'
_VERDICT = {"pass": "ok", "fail": "bad"}


def _pipeline(p: Mapping) -> str:
    title = p["pointer_uri"] or f"DAG {', '.join(p['dag_ids'])} (no champion pointer seen yet)"
    hist = "".join(f"<tr><td>{_e(h['when'])}</td><td>{_pill(h['action'], _ACTION.get(h['action'], ''))}</td>"
                   f"<td><code>{_e(h['model'])}</code></td><td><a href=\"{run_url(h['dag_id'], h['run_id'])}\">"
                   f"{_e(h['run_id'])}</a></td></tr>" for h in p["history"][:20])
    runs = "".join(_run_row(r) for r in p["runs"][:50])
    return (f'<section class="pipeline"><h2>{_e(title)}</h2>{_champion(p["champion"], p.get("champion_unreadable"))}'
            f'<h3>History</h3>{"<table>" + hist + "</table>" if hist else _NO_HISTORY}'
            f"<h3>Runs</h3><table><tr><th>Run</th><th>State</th><th>Steps</th><th>Tuning</th><th>Gate</th>"
            f"<th>Challenger / champion</th></tr>{runs}</table></section>")


def _decision_pill(decision, label) -> str:
    """The gate's decision as a pill: its label ("no decision") as text, its value (a class name) as class."""
    if not decision:
        return '<span class="muted">—</span>'
    return _pill(label or decision, str(decision))


def _times(r: Mapping) -> str:
    return " · ".join(f"{k} {_e(r[f])}" for k, f in (("run after", "run_after"), ("started", "start_date"),
                                                     ("ended", "end_date")) if r.get(f))


def _run_row(r: Mapping) -> str:
    if r.get("restricted"):
        return (f'<tr class="run restricted"><td><span class="muted">a run</span><div class="muted small">'
                f"{_e(r['dag_id'])}</div></td><td>{_pill(r['state'])}</td><td colspan=\"4\" class=\"small\">"
                f'{_times(r)}<div class="muted small">{_e(r["restricted"])}</div></td></tr>')
    steps = "".join(f'<span title="{_e(t)}">{_pill(s)}</span>' for t, s in r["steps"].items())
    prog = svg.progress_bar(r["progress_percent"], width=140) if r["tuning_state"] else '<span class="muted">—</span>'
    if r.get("status_note"):
        prog += f'<div class="note status-note">{_e(r["status_note"])}</div>'
    gate = _decision_pill(r["decision"], r.get("decision_label"))
    if r.get("gate_summary"):
        gate += f'<div class="muted small">{_e(r["gate_summary"])}</div>'
    metric = _e(_metric(r["primary_metric"]))
    score = f'{_fmt(r["challenger"])} / {_fmt(r["champion"])} <span class="muted small">{metric}</span>'
    bad = f'<div class="unreadable">unreadable: {_e(r["unreadable"])}</div>' if r.get("unreadable") else ""
    return (f"<tr class=\"run\"><td><a href=\"{run_url(r['dag_id'], r['run_id'])}\">{_e(r['run_id'])}</a>"
            f"<div class=\"muted small\">{_e(r['dag_id'])}</div>{bad}</td><td>{_pill(r['state'])}</td>"
            f'<td class="steps">{steps}</td><td>{prog}</td><td>{gate}</td><td>{score}</td></tr>')


# ------------------------------------------------------------------------------------------------ one run
def run_page(v: Mapping, examples: Sequence[Mapping] = (), examples_error: str | None = None) -> str:
    t = v["tuning"]
    head = (f'<h1>{_e(v["dag_id"])} <span class="muted">/</span> {_e(v["run_id"])} {_pill(v["state"])}</h1>'
            f'<p class="small"><a href="{PREFIX}/">All pipelines</a>'
            + (f' · <a href="{report_url(v["dag_id"], v["run_id"])}">HTML report</a>' if v["has_report"] else "")
            + (f' · <a href="{_e(t["console_url"])}" rel="noreferrer">Tuning job in the console</a>'
               if t.get("console_url", "") and str(t["console_url"]).startswith("https://") else "")
            + "</p>")
    steps = "".join(f'<span title="{_e(s["role"])}">{_e(s["task_id"])} {_pill(s["state"])}</span>' for s in v["steps"])
    params = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(val)}</code></td></tr>" for k, val in v["params"].items())
    bad = (f'<section class="unreadable-run"><p class="unreadable">unreadable: {_e(v["unreadable"])}</p></section>'
           if v.get("unreadable") else "")
    body = [head, bad, f'<section><h2>Steps</h2><div class="steps">{steps}</div>'
                  + (f"<table>{params}</table>" if params else "") + "</section>",
            _tuning(t), _evaluation(v), _gate(v), _examples(examples, examples_error)]
    return _page(f"{v['dag_id']} {v['run_id']} — Gemini tuning", "".join(body), refresh=v["active"])


def _tuning(t: Mapping) -> str:
    if t["source"] == "none" and not t.get("job_name") and not t.get("status_note"):
        return '<section class="tuning"><h2>Tuning</h2><p class="muted">No tuning job yet.</p></section>'
    steps = (f"{_e(t['completed_steps'])} / {_e(t['total_steps'])} steps" if t.get("total_steps") else "")
    eta = f" · ETA {round(t['eta_seconds'])} s" if t.get("eta_seconds") is not None else ""
    checked = (f' <span class="muted small">(status as of {_e(t["checked_at"])}, at most one request per job per '
               "30 s)</span>" if t["source"] == "live" else "")
    series = [("train loss", t["loss"])] + ([("validation loss", t["validation"])] if t["validation"] else [])
    markers = [(float(c["step"]), f"ckpt {c['checkpoint_id']}") for c in t.get("checkpoints") or ()
               if c.get("step") is not None]
    rows = [("Job", f"<code>{_e(t['job_name'])}</code>"),
            ("State", f"{_pill(t['state'], 'run')} {_e(t['sub_state'] or '')}"),
            ("Tuned model", f"<code>{_e(t['tuned_model'] or '—')}</code>"),
            ("Endpoint", f"<code>{_e(t['endpoint'] or '—')}</code>")]
    if t.get("continued_from"):
        rows.append(("Continued from", f"<code>{_e(t['continued_from'])}</code>"))
    if t.get("error"):
        rows.append(("Error", f'<span class="pill bad">{_e(t["error"])}</span>'))
    if t.get("status_note"):
        rows.append(("Status", f'<span class="note status-note">{_e(t["status_note"])}</span>'))
    table = "".join(f"<tr><th>{k}</th><td>{val}</td></tr>" for k, val in rows)
    return (f'<section class="tuning"><h2>Tuning</h2><div class="progress-line">'
            f'{svg.progress_bar(t["progress_percent"], width=420)} <span class="small">{steps}{eta}</span>{checked}'
            f'</div><table>{table}</table><h3>Loss</h3>'
            f'<div class="loss">{svg.line_chart(series, markers=markers, title="training loss by step")}</div>'
            "</section>")


def _evaluation(v: Mapping) -> str:
    ev = v["evaluation"]
    if not ev:
        return ""
    ch, cp = ev["challenger"], ev["champion"]
    names = [m for m in ch if isinstance(ch.get(m), (int, float))]
    series = [("challenger", [ch.get(m) for m in names])] + ([("champion", [cp.get(m) for m in names])] if cp else [])
    pm = v["primary_metric"]
    tag_series = [("challenger", [ev["per_tag"][t]["challenger"].get(pm) for t in ev["tags"]])]
    if cp:
        tag_series.append(("champion", [ev["per_tag"][t]["champion"].get(pm) for t in ev["tags"]]))
    best = ev.get("best_checkpoint")
    ckpt = ""
    if best:
        scores = ", ".join(f"{_e(s['checkpoint_id'])}: {_fmt(s['score'])}" for s in best.get("scores") or ())
        ckpt = (f'<p class="small">Best checkpoint: <b>{_e(best["checkpoint_id"])}</b> by '
                f"{_e(_metric(best['metric']))} ({scores})</p>")
    return (f'<section class="evaluation"><h2>Evaluation</h2><p class="small">{_e(ev["n_prompts"])} prompts · '
            f'challenger <code>{_e(ev["models"].get("challenger"))}</code>'
            + (f' vs champion <code>{_e(ev["models"].get("champion"))}</code>' if cp else " (no champion yet)")
            + f"</p>{ckpt}<div class=\"grid2\"><div><h3>Metrics</h3>"
            f'{svg.bar_chart([_metric(m) for m in names], series, width=540, title="metrics")}</div>'
            f"<div><h3>Per tag ({_e(_metric(pm))})</h3>"
            f'{svg.bar_chart(ev["tags"], tag_series, width=540, row=14, title="per tag")}</div></div></section>')


def _gate(v: Mapping) -> str:
    gate = v["gate"]
    if not gate:
        return ""
    rows = "".join(f'<tr class="rule"><td>{_e(r["name"])}</td>'
                   f'<td>{_pill(r["verdict"], _VERDICT.get(r["verdict"], "muted"))}</td>'
                   f'<td class="observed" data-value="{_e(json.dumps(r["observed"]))}">{_num(r["observed"])}</td>'
                   f'<td class="threshold" data-value="{_e(json.dumps(r["threshold"]))}">{_num(r["threshold"])}</td>'
                   f'<td class="small">{_e(r["reason"])}</td></tr>' for r in gate.get("rules") or ())
    d = v.get("decision") or {}
    action = f' · {_e(d.get("action"))} <code>{_e(d.get("model"))}</code>' if d else ""
    decision = gate.get("decision")
    policy = (f' <span class="muted">(policy {_e(gate["policy_hash"])})</span>' if gate.get("policy_hash") else "")
    return (f'<section class="gate"><h2>Gate: <span class="pill {re.sub("[^a-z_]", "", str(decision))}" '
            f'id="gate-decision" data-decision="{_e(decision)}">'
            f'{_e(gate.get("label") or decision)}</span>{action}</h2><p class="small gate-summary">'
            f'{_e(gate.get("summary"))}{policy}</p>'
            f"<table><tr><th>Rule</th><th>Verdict</th><th>Observed</th><th>Threshold</th><th>Why</th></tr>{rows}"
            "</table></section>")


def _examples(examples: Sequence[Mapping], error: str | None = None) -> str:
    if error:
        return (f'<section class="examples"><h2>Examples</h2><p class="unreadable">Examples unreadable: {_e(error)}'
                "</p></section>")
    if not examples:
        return ""
    rows = "".join(f'<tr><td class="pre prompt">{_e(x["prompt"])}</td><td class="pre">{_e(x["reference"])}</td>'
                   f'<td class="pre">{_e(x["challenger"])}</td><td class="pre">{_e(x.get("champion"))}</td></tr>'
                   for x in examples)
    return (f'<section class="examples"><h2>Examples where the models differ (first {len(examples)})</h2><table>'
            f"<tr><th>Prompt</th><th>Reference</th><th>Challenger</th><th>Champion</th></tr>{rows}</table></section>")


def error_page(status: int, message: str) -> str:
    return _page("Gemini tuning", f"<h1>{_e(status)}</h1><p>{_e(message)}</p>")
