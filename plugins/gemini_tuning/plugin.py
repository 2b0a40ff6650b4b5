"""The AirflowPlugin of this package: both extra links, and the "Gemini tuning" page in the Airflow UI.

The page is a FastAPI app mounted by the api-server under ``/gemini-tuning`` (``ui.app``), linked from the
navigation, and shown as a tab of every DAG run. Importing ``ui.app`` needs the api-server's FastAPI stack; in
processes that only load plugins for their extra links (scheduler, workers, triggerer) it is imported lazily.

**Preloading** (``[gemini_tuning] preload_task_modules = True``, off by default): the plugin then imports what this
package's tasks import when they run (the Google provider's base hook, google-genai, the aiplatform GAPIC
clients, google-cloud-storage, the report renderer) when it is loaded. With ``[core] lazy_load_plugins = False``
every Airflow process loads plugins at start, so a LocalExecutor scheduler or a Celery worker has them before it forks
the processes that run tasks, and each task inherits them instead of importing them again (about 2-3 s of CPU
and 0.5 s of wall per task; ``scripts/bench_task_startup.py``). The price: those modules' memory in every Airflow
process (api-server, triggerer and dag-processor included).
"""

from __future__ import annotations

import importlib
import logging

from airflow.plugins_manager import AirflowPlugin

from .core.constants import UI_PREFIX
from .links import ReportLink, TuningJobLink

#: What this package's tasks import at run time, beyond what parsing the DAG file imports.
PRELOAD_MODULES = (
    "gemini_tuning.hooks",                     # the Google provider's GoogleBaseHook (credentials)
    "gemini_tuning.backends.vertex",
    "gemini_tuning.backends.gemini_api",
    "gemini_tuning.backends.vertex_registry",
    "gemini_tuning.services.eval_engine",
    "gemini_tuning.services.reporting",        # the report: Jinja2 templates, SVG charts
    "google.genai",
    "google.cloud.aiplatform_v1",
    "google.cloud.storage",
)

log = logging.getLogger(__name__)


def preload_task_modules(enabled: bool | None = None) -> list[str]:
    """Import :data:`PRELOAD_MODULES` when ``[gemini_tuning] preload_task_modules`` is on (module docstring).

    :param enabled: overrides the setting (tests, benchmarks).
    :return: the modules imported; one that fails to import is logged and skipped (the task that needs it
        then fails with the real error).
    """
    if enabled is None:
        from airflow.configuration import conf

        enabled = conf.getboolean("gemini_tuning", "preload_task_modules", fallback=False)
    if not enabled:
        return []
    loaded = []
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - a preload is an optimisation, never a reason not to load
            log.warning("gemini_tuning: not preloading %s: %s", name, exc)
    return loaded


def _fastapi_apps() -> list[dict]:
    try:
        from .ui.app import app
    except ImportError:  # no FastAPI here: nothing to mount
        return []
    return [{"app": app, "url_prefix": UI_PREFIX, "name": "Gemini tuning"}]


PRELOADED = preload_task_modules()


class GeminiTuningPlugin(AirflowPlugin):
    """The provider's Airflow plugin: the operator extra links, the FastAPI UI (when FastAPI is installed) and its
    two entries: one in the Browse menu and one on each DAG run's page. Airflow makes it; it takes no arguments."""

    name = "gemini_tuning"
    operator_extra_links = [TuningJobLink(), ReportLink()]
    fastapi_apps = _fastapi_apps()
    external_views = [
        {"name": "Gemini tuning", "href": f"{UI_PREFIX}/", "destination": "nav", "url_route": "gemini-tuning",
         "category": "browse"},
        {"name": "Gemini tuning", "href": f"{UI_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}", "destination": "dag_run",
         "url_route": "gemini-tuning-run"},
    ]
