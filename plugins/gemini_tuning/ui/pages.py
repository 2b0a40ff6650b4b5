"""HTML of the UI page (overview, one run, errors), from ``ui.views`` dicts. Pure: Jinja2 templates
(``gemini_tuning/templates/{overview,run,error}.html`` on ``page.html``) with autoescape on, so every value is
escaped; class names come from fixed sets (:func:`pill_class`), never from the data.

No JavaScript: a page of an active run refreshes itself (``<meta http-equiv="refresh">``); charts are inline SVG
(``services.report.charts``, the same module as the report's). Served with a Content-Security-Policy that allows
no script at all (``ui.app``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ..core.constants import UI_PREFIX
from ..core.vocabulary import METRIC_TITLES
from ..services.report import charts
from ..services.report.render import render

__all__ = ["PREFIX", "REFRESH_SECONDS", "error_page", "overview_page", "pill_class", "report_url", "run_page",
           "run_url"]

PREFIX = UI_PREFIX
#: a page of an active run reloads itself this often
REFRESH_SECONDS = 10
STATE_CLASS = {"success": "ok", "failed": "bad", "upstream_failed": "bad", "skipped": "muted", "running": "run",
               "deferred": "run", "queued": "run", "scheduled": "run", "up_for_retry": "warn"}
#: every class a pill may have (the stylesheet's); anything else gets none
PILL_CLASSES = frozenset(STATE_CLASS.values()) | {"promote", "delete", "no_decision"}
ACTION_CLASS = {"promoted": "promote", "deleted": "delete"}
VERDICT_CLASS = {"pass": "ok", "fail": "bad"}
#: the UI's chart colours: train loss, validation loss; challenger, champion
LOSS_COLORS = (charts.LOSS_COLOR, charts.VALIDATION_COLOR)


def run_url(dag_id: str, run_id: str) -> str:
    """The run page's path.

    :param dag_id: the DAG.
    :param run_id: the run.
    """
    return f"{PREFIX}/runs/{quote(str(dag_id), safe='')}/{quote(str(run_id), safe='')}"


def report_url(dag_id: str, run_id: str) -> str:
    """The report route's path.

    :param dag_id: the DAG.
    :param run_id: the run.
    """
    return f"{PREFIX}/report/{quote(str(dag_id), safe='')}/{quote(str(run_id), safe='')}"


def pill_class(state: Any, extra: Any = "") -> str:
    """The class of a pill: the state's (:data:`STATE_CLASS`), else ``extra`` if it is one of :data:`PILL_CLASSES`,
    else none.

    :param state: a task or run state (or any text shown in the pill).
    :param extra: the class when the state has none (a decision, an action).
    """
    return STATE_CLASS.get(str(state)) or (str(extra) if str(extra) in PILL_CLASSES else "")


def _fmt(v: Any, digits: int = 3) -> str:
    """A metric for people: floats to ``digits`` decimals, None as a dash."""
    if v is None:
        return "—"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _num(v: Any) -> str:
    """A gate value for people (``0.05000000000000044`` -> ``0.05``); the exact JSON is in ``data-value``."""
    if isinstance(v, float):
        return f"{v:.6g}"
    return "—" if v is None else str(v)


def _metric(name: Any) -> str:
    return METRIC_TITLES.get(name, str(name))


def _metrics_text(metrics: Mapping) -> str:
    return ", ".join(f"{_metric(k)} {_fmt(v)}" for k, v in sorted(metrics.items()) if isinstance(v, (int, float)))


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"


UI = {"run_url": run_url, "report_url": report_url, "pill_class": pill_class, "fmt": _fmt, "num": _num,
      "metric": _metric, "metrics_text": _metrics_text, "json": lambda v: json.dumps(v),
      "progress": charts.progress_bar, "prefix": PREFIX, "action_class": ACTION_CLASS,
      "verdict_class": VERDICT_CLASS}


def _page(template: str, title: str, *, refresh: bool = False, **context: Any) -> str:
    return render(template, title=title, refresh=REFRESH_SECONDS if refresh else None, ui=UI, **context)


# ------------------------------------------------------------------------------------------------ overview
def overview_page(data: Mapping, *, dags_refresh_seconds: float | None = None) -> str:
    """Every pipeline with its champion, history and runs (``views.overview``).

    :param data: ``views.overview(...)``.
    :param dags_refresh_seconds: how often the list of DAGs using these operators is re-read
        (``ui.data.DAGS_REFRESH_SECONDS``); the page says so. None: not said.
    """
    active = any(r["state"] in ("running", "queued") for p in data["pipelines"] for r in p["runs"])
    return _page("overview.html", "Gemini tuning", refresh=active, pipelines=data["pipelines"],
                 n_runs=data["n_runs"], dags_refresh=_seconds(dags_refresh_seconds))


# ------------------------------------------------------------------------------------------------ one run
def _tuning(t: Mapping, status_ttl: float | None) -> dict:
    """The tuning section's charts and texts."""
    series = [("train loss", t["loss"], LOSS_COLORS[0])]
    if t["validation"]:
        series.append(("validation loss", t["validation"], LOSS_COLORS[1]))
    markers = [charts.Marker(float(c["step"]), f"ckpt {c['checkpoint_id']}") for c in t.get("checkpoints") or ()
               if c.get("step") is not None]
    return {"t": t, "progress": charts.progress_bar(t["progress_percent"], width=420),
            "steps": f"{_fmt(t['completed_steps'])} / {t['total_steps']} steps" if t.get("total_steps") else "",
            "eta": round(t["eta_seconds"]) if t.get("eta_seconds") is not None else None,
            "ttl": _seconds(status_ttl),
            "console": t["console_url"] if str(t.get("console_url") or "").startswith("https://") else None,
            "chart": charts.loss_chart(series, markers=markers, title="training loss by step")}


def _evaluation(v: Mapping) -> dict | None:
    """The evaluation section's charts and texts."""
    ev = v["evaluation"]
    if not ev:
        return None
    ch, cp = ev["challenger"], ev["champion"]
    names = [m for m in ch if isinstance(ch.get(m), (int, float))]
    blue, orange = charts.CHALLENGER_COLOR, charts.CHAMPION_COLOR
    series = [("challenger", [ch.get(m) for m in names], blue)]
    if cp:
        series.append(("champion", [cp.get(m) for m in names], orange))
    pm = v["primary_metric"]
    tag_series = [("challenger", [ev["per_tag"][t]["challenger"].get(pm) for t in ev["tags"]], blue)]
    if cp:
        tag_series.append(("champion", [ev["per_tag"][t]["champion"].get(pm) for t in ev["tags"]], orange))
    return {"ev": ev, "has_champion": bool(cp), "pm": _metric(pm),
            "metrics": charts.bar_chart([_metric(m) for m in names], series, width=540, title="metrics"),
            "tags": charts.bar_chart(ev["tags"], tag_series, width=540, row=14, title="per tag")}


def run_page(v: Mapping, examples: Sequence[Mapping] = (), examples_error: str | None = None, *,
             status_ttl: float | None = None) -> str:
    """One run: steps, tuning progress and loss, metrics, the gate rule by rule, the examples where the models
    differ.

    :param v: ``views.run_view(...)``.
    :param examples: the first examples where the models differ (``ui.data.examples``).
    :param examples_error: why the examples could not be read, if they could not.
    :param status_ttl: seconds a live job status is cached (``[gemini_tuning] ui_status_ttl_seconds``); the page
        says so beside a live status. None: not said.
    """
    gate = v["gate"]
    return _page("run.html", f"{v['dag_id']} {v['run_id']} — Gemini tuning", refresh=v["active"], v=v,
                 tuning=_tuning(v["tuning"], status_ttl), evaluation=_evaluation(v), gate=gate,
                 gate_class=pill_class(None, gate.get("decision")) if gate else "", decision=v.get("decision") or {},
                 examples=examples, examples_error=examples_error)


def error_page(status: int, message: str) -> str:
    """An error as a page.

    :param status: the HTTP status.
    :param message: what went wrong.
    """
    return _page("error.html", "Gemini tuning", status=status, message=message)
