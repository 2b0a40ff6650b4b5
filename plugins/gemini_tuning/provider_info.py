"""``get_provider_info`` for the ``apache_airflow_provider`` entry point: what ``airflow providers list`` shows and
what the providers manager registers. Laid out like the Google provider's: the integrations, then the python
modules of each kind (operators, sensors, hooks, triggers) per integration, the connection type, the extra links,
and the ``[gemini_tuning]`` configuration section (``airflow config list`` shows it; every option is read with
the same default where it is used). ``tests/unit/test_provider_info.py`` keeps the lists equal to the code.
"""

from __future__ import annotations

from . import __version__

VERTEX, GEMINI_API = "Gemini tuning on Vertex AI", "Gemini API tuning"


def _option(description: str, default: str | None, example: str | None = None, type_: str = "string") -> dict:
    return {"description": description, "version_added": "0.1.0", "type": type_, "example": example,
            "default": default}


CONFIG = {
    "gemini_tuning": {
        "description": "Settings of the Gemini tuning provider (what runs may read, the UI page, task start-up).",
        "options": {
            "input_roots": _option(
                "Directories local inputs may be read from, colon- or comma-separated. Default: the deployment's "
                "include/ folder beside the DAGs folder.", None, "/opt/airflow/include:/data/tuning"),
            "allowed_buckets": _option(
                "Buckets gs:// inputs may be read from besides the run's own, comma-separated.", "",
                "team-datasets,shared-prompts"),
            "preload_task_modules": _option(
                "Import the modules this package's tasks use when the plugin loads (with [core] "
                "lazy_load_plugins = False, forked task processes inherit them: about 1.2 s of CPU less per task).",
                "False", "True", "boolean"),
            "model_lifecycle_table": _option(
                "A JSON model lifecycle table (base-model retirement dates) replacing the shipped one "
                "(gemini_tuning/data/model_lifecycle.json; same shape). Default: the shipped table.", None,
                "/opt/airflow/include/model_lifecycle.json"),
            "ui_gcp_conn_id": _option("The Google connection the UI page uses for live job status.",
                                      "google_cloud_default"),
            "ui_cache_dir": _option("Where the UI page caches job status (one file per job, shared by the "
                                    "api-server's workers). Default: $AIRFLOW_HOME/gemini_tuning_ui_cache.", None),
            "ui_status_ttl_seconds": _option("How long a cached job status is shown before it is asked again.",
                                             "30", None, "float"),
            "ui_max_runs": _option("Runs the overview page lists.", "200", None, "integer"),
            "ui_status_projects": _option(
                "Projects whose tuning jobs the UI may ask about, comma-separated. Default: the project of the "
                "UI's own connection only.", "", "ml-prod,ml-staging"),
        },
    },
}


def get_provider_info() -> dict:
    """The provider's metadata (see the module docstring)."""
    return {
        "package-name": "airflow-provider-gemini-tuning",
        "name": "Gemini tuning",
        "description": "Fine-tune Gemini models on a schedule: validate and upload a JSONL training set, create a "
                       "Vertex AI (or Gemini API) supervised tuning job, wait for it deferred, evaluate, promote or "
                       "delete.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": VERTEX, "external-doc-url":
                "https://cloud.google.com/vertex-ai/generative-ai/docs/models/tune-models", "tags": ["gcp"]},
            {"integration-name": GEMINI_API, "external-doc-url": "https://ai.google.dev/gemini-api/docs/model-tuning",
             "tags": ["gcp"]},
        ],
        "operators": [
            {"integration-name": VERTEX, "python-modules": [
                "gemini_tuning.operators.prepare", "gemini_tuning.operators.tune", "gemini_tuning.operators.evaluate",
                "gemini_tuning.operators.gate", "gemini_tuning.operators.approval",
                "gemini_tuning.operators.promote", "gemini_tuning.operators.report",
                "gemini_tuning.operators.rollback", "gemini_tuning.operators.policy"]},
            {"integration-name": GEMINI_API, "python-modules": [
                "gemini_tuning.operators.prepare", "gemini_tuning.operators.tune",
                "gemini_tuning.operators.evaluate", "gemini_tuning.operators.promote"]},
        ],
        "sensors": [{"integration-name": VERTEX, "python-modules": ["gemini_tuning.sensors"]}],
        "hooks": [{"integration-name": VERTEX, "python-modules": ["gemini_tuning.hooks"]},
                  {"integration-name": GEMINI_API, "python-modules": ["gemini_tuning.hooks"]}],
        "triggers": [{"integration-name": VERTEX, "python-modules": [
            "gemini_tuning.triggers.tuning_job", "gemini_tuning.triggers.batch_job"]},
            {"integration-name": GEMINI_API, "python-modules": ["gemini_tuning.triggers.tuning_job"]}],
        "extra-links": ["gemini_tuning.links.TuningJobLink", "gemini_tuning.links.ReportLink"],
        "connection-types": [{"connection-type": "gemini_api",
                              "hook-class-name": "gemini_tuning.hooks.GeminiApiKeyHook"}],
        "config": CONFIG,
    }
