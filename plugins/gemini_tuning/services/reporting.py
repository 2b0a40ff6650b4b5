"""The per-run HTML report: kept as the import path of :mod:`gemini_tuning.services.report` (the operator, the
tests and the benchmarks import it from here). See that package for the input, the sections and the rendering."""

from __future__ import annotations

from .report import (
    CHALLENGER_COLOR,
    CHAMPION_COLOR,
    DELETE_COLOR,
    LOSS_COLOR,
    MAX_EXAMPLE_ROWS,
    MAX_TAG_CHART,
    MAX_TEXT_CHARS,
    NEUTRAL_COLOR,
    PROMOTE_COLOR,
    render_report,
    report_data,
)

__all__ = ["CHALLENGER_COLOR", "CHAMPION_COLOR", "DELETE_COLOR", "LOSS_COLOR", "MAX_EXAMPLE_ROWS", "MAX_TAG_CHART",
           "MAX_TEXT_CHARS", "NEUTRAL_COLOR", "PROMOTE_COLOR", "render_report", "report_data"]
