"""The AirflowPlugin of this package: both extra links, and the "Gemini tuning" page in the Airflow UI.

The page is a FastAPI app mounted by the api-server under ``/gemini-tuning`` (``ui.app``), linked from the
navigation, and shown as a tab of every DAG run. Importing ``ui.app`` needs the api-server's FastAPI stack; in
processes that only load plugins for their extra links (scheduler, workers, triggerer) it is imported lazily.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from .links import ReportLink, TuningJobLink

UI_PREFIX = "/gemini-tuning"


def _fastapi_apps() -> list[dict]:
    try:
        from .ui.app import app
    except ImportError:  # no FastAPI here: nothing to mount
        return []
    return [{"app": app, "url_prefix": UI_PREFIX, "name": "Gemini tuning"}]


class GeminiTuningPlugin(AirflowPlugin):
    name = "gemini_tuning"
    operator_extra_links = [TuningJobLink(), ReportLink()]
    fastapi_apps = _fastapi_apps()
    external_views = [
        {"name": "Gemini tuning", "href": f"{UI_PREFIX}/", "destination": "nav", "url_route": "gemini-tuning",
         "category": "browse"},
        {"name": "Gemini tuning", "href": f"{UI_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}", "destination": "dag_run",
         "url_route": "gemini-tuning-run"},
    ]
