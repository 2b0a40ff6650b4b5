"""Wait for a tuning job that already exists (e.g. started outside Airflow), deferred by default."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException

from .links import XCOM_KEY, TuningJobLink
from .operators.tuning import result
from .core.states import JobStatus
from .triggers import TuningJobTrigger


class GeminiTuningJobSensor(BaseSensorOperator):
    """Succeeds when the job succeeds; fails with the service's message when it fails. Never cancels the job."""

    template_fields = ("job_name", "backend", "project_id", "location")
    operator_extra_links = (TuningJobLink(),)

    def __init__(self, *, job_name: str, backend: str = "vertex", project_id: str | None = None,
                 location: str = "us-central1", gcp_conn_id: str = "google_cloud_default", impersonation_chain=None,
                 gemini_api_conn_id: str | None = None, api_base_url: str | None = None,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 poll_policy: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.job_name, self.backend, self.project_id, self.location = job_name, backend, project_id, location
        self.gcp_conn_id, self.impersonation_chain = gcp_conn_id, impersonation_chain
        self.gemini_api_conn_id, self.api_base_url = gemini_api_conn_id, api_base_url
        self.deferrable, self.poll_policy = deferrable, poll_policy

    def _backend(self):
        from .hooks import GeminiTuningHook

        return GeminiTuningHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                                api_base_url=self.api_base_url, gemini_api_conn_id=self.gemini_api_conn_id,
                                ).backend(self.backend, project_id=self.project_id, location=self.location)

    def poke(self, context) -> PokeReturnValue:
        backend = self._backend()
        status = backend.get(self.job_name)
        context["ti"].xcom_push(key=XCOM_KEY, value={"name": status.name, "backend": self.backend,
                                                     "url": backend.console_url(status.name)})
        self.log.info("%s: %s", self.job_name, status.describe())
        return PokeReturnValue(is_done=status.terminal, xcom_value=result(status) if status.terminal else None)

    def execute(self, context):
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        backend = self._backend()
        self.defer(trigger=TuningJobTrigger(
            backend=self.backend, job_name=self.job_name, project_id=getattr(backend, "project", None),
            location=self.location, gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
            api_base_url=self.api_base_url, gemini_api_conn_id=self.gemini_api_conn_id, poll=self.poll_policy,
            cancel_on_kill=False, cancel_on_timeout=False),
            method_name="execute_complete", timeout=timedelta(seconds=self.timeout))

    def execute_complete(self, context, event: dict, **_):
        if event.get("status") in ("success", "failed"):
            return result(JobStatus.from_summary(event["job"]))
        raise AirflowException(event.get("message"))
