"""Registers the gemini_tuning package with Airflow. The package itself is imported by name (see .airflowignore)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from gemini_tuning.links import TuningJobLink


class GeminiTuningPlugin(AirflowPlugin):
    name = "gemini_tuning"
    operator_extra_links = [TuningJobLink()]
