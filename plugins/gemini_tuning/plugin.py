"""The AirflowPlugin of this package: registers both extra links (and, later, the UI)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from .links import ReportLink, TuningJobLink


class GeminiTuningPlugin(AirflowPlugin):
    name = "gemini_tuning"
    operator_extra_links = [TuningJobLink(), ReportLink()]
