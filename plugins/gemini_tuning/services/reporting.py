"""The per-run HTML report: kept as the import path of :mod:`gemini_tuning.services.report` (the operator, the
tests and the benchmarks import it from here). See that package for the input, the sections and the rendering;
:func:`write_report` renders one and writes it to GCS (the report operator's only storage call)."""

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
           "MAX_TEXT_CHARS", "NEUTRAL_COLOR", "PROMOTE_COLOR", "render_report", "report_data", "write_report"]


def write_report(storage_client, report_uri: str, data: dict) -> str:
    """Render ``data`` (:func:`report_data`) and write the page to ``report_uri``, replacing an earlier version (a
    retry recomputes it). Returns where a person opens it (``backends.gcs.browser_url``).

    :param storage_client: a ``google.cloud.storage.Client``.
    :param report_uri: ``gs://bucket/path/report.html``.
    :param data: the report's input.
    """
    from ..backends import gcs  # not at import time: rendering alone needs no storage client

    gcs.write_bytes(storage_client, report_uri, render_report(data).encode("utf-8"), "text/html; charset=utf-8")
    return gcs.browser_url(report_uri)
