"""Extra links: the tuning job in the Google Cloud console (Vertex) or the tuned model (Gemini API), and the run's
HTML report."""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from .core.constants import JOB_XCOM, UI_PREFIX


def _url(key: str, ti_key) -> str:
    value = XCom.get_value(key=key, ti_key=ti_key)
    return (value or {}).get("url", "") if isinstance(value, dict) else ""


class TuningJobLink(BaseOperatorLink):
    """Reads the ``url`` of the tuning operator's (or sensor's) ``gemini_tuning_job`` XCom."""

    name = "Tuning job"

    def get_link(self, operator, *, ti_key) -> str:
        return _url(JOB_XCOM, ti_key)


class ReportLink(BaseOperatorLink):
    """The run's report through the api-server (the "Gemini tuning" page's ``/report`` route: readers need no
    GCS access of their own), once the report operator has written it."""

    name = "Report"

    def get_link(self, operator, *, ti_key) -> str:
        from urllib.parse import quote

        value = XCom.get_value(key="return_value", ti_key=ti_key)
        if not isinstance(value, dict) or not value.get("report_uri"):
            return ""
        return f"{UI_PREFIX}/report/{quote(ti_key.dag_id, safe='')}/{quote(ti_key.run_id, safe='')}"
