"""``get_provider_info`` for the ``apache_airflow_provider`` entry point: what ``airflow providers list`` shows and
what the providers manager registers (both extra links, the Gemini API key connection type)."""

from __future__ import annotations

from . import __version__


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-provider-gemini-tuning",
        "name": "Gemini tuning",
        "description": "Fine-tune Gemini models on a schedule: validate and upload a JSONL training set, create a "
                       "Vertex AI (or Gemini API) supervised tuning job, wait for it deferred, evaluate, promote or "
                       "delete.",
        "versions": [__version__],
        "extra-links": ["gemini_tuning.links.TuningJobLink", "gemini_tuning.links.ReportLink"],
        "connection-types": [{"connection-type": "gemini_api",
                              "hook-class-name": "gemini_tuning.hooks.GeminiApiKeyHook"}],
    }
