"""Extra links: the tuning job in the Google Cloud console (Vertex) or the tuned model (Gemini API)."""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

XCOM_KEY = "gemini_tuning_job"


class TuningJobLink(BaseOperatorLink):
    name = "Tuning job"

    def get_link(self, operator, *, ti_key) -> str:
        value = XCom.get_value(key=XCOM_KEY, ti_key=ti_key)
        return (value or {}).get("url", "") if isinstance(value, dict) else ""
