"""Jinja2 rendering of the report and the UI pages: one environment over ``gemini_tuning/templates`` with
autoescape on for every template, so every value a template writes is HTML-escaped unless code marked it safe
(nothing in this package does).

The templates: ``report.html`` (the per-run report), ``overview.html`` / ``run.html`` / ``error.html`` (the UI
page, on ``page.html``), ``macros.html`` (the ``svg`` macro that writes a :class:`.charts.Chart`, tables, pills)
and ``style.css``, the one stylesheet, inlined by both into a ``<style>`` element (the pages' CSP allows inline
styles and nothing external; the report must open on its own, offline).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .charts import Chart
from .model import report_model

__all__ = ["TEMPLATES", "chart_svg", "environment", "render", "render_report"]

#: the package's templates (shipped in the wheel as package data)
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The package's Jinja2 environment (cached; Jinja2 environments are safe to share between threads).

    Autoescape on for every template; undefined values raise (a template bug fails loudly in the tests, not as a
    silently empty cell); None is written as nothing (a missing value, not the word "None").
    """
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              finalize=_finalize)


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def render(template: str, **context: Any) -> str:
    """Render one of the package's templates.

    :param template: its name under ``templates/`` (``report.html``, ``run.html``, ...).
    :param context: the template's variables.
    """
    return environment().get_template(template).render(**context)


def chart_svg(chart: Chart | None) -> Markup:
    """One chart as inline SVG markup (the ``svg`` macro of ``macros.html``; every text and attribute escaped).

    :param chart: the chart (None: nothing).
    """
    if chart is None:
        return Markup("")
    return Markup(environment().get_template("macros.html").module.svg(chart))


def render_report(data: dict) -> str:
    """Render the run report as one self-contained HTML page (see :mod:`gemini_tuning.services.report`).

    Degrades gracefully: with no champion, no loss history, no evaluation or no examples the sections say
    so instead of failing.

    :param data: the report's input (:func:`gemini_tuning.services.report.report_data`).
    """
    return render("report.html", **report_model(data))
