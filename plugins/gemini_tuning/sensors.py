"""Wait for a tuning job that already exists (e.g. started outside Airflow), deferred by default."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException

from .core.constants import JOB_XCOM
from .core.states import JobStatus
from .links import TuningJobLink
from .operators.base import GeminiBaseOperator
from .operators.tune import job_result
from .triggers import TuningJobTrigger


class GeminiTuningJobSensor(GeminiBaseOperator, BaseSensorOperator):
    """Succeeds when the job succeeds (returning the job summary); fails with the service's message when it fails
    or is cancelled. Never cancels the job: it is not this task's to cancel.

    :param job_name: the job to wait for: a Vertex ``projects/…/tuningJobs/…`` or a Gemini API
        ``tunedModels/…`` (or its ``…/operations/…``) (templated).
    :param backend: ``vertex`` or ``gemini_api`` (templated).
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``); False pokes on the
        worker every ``poke_interval`` like any sensor.
    :param poll_policy: ``core.polling.PollPolicy`` fields for the deferred wait.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`, and the sensor
    arguments of ``BaseSensorOperator`` (``timeout``, ``poke_interval``, ``mode``, …).
    """

    template_fields = ("job_name", "backend", "project_id", "location")
    operator_extra_links = (TuningJobLink(),)

    def __init__(self, *, job_name: str, backend: str = "vertex",
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 poll_policy: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.job_name = job_name
        self.backend = backend
        self.deferrable = deferrable
        self.poll_policy = poll_policy

    def poke(self, context) -> PokeReturnValue:
        backend = self.tuning_backend(self.backend)
        status = backend.get(self.job_name)
        context["ti"].xcom_push(key=JOB_XCOM, value={"name": status.name, "backend": self.backend,
                                                     "url": backend.console_url(status.name)})
        self.log.info("%s: %s", self.job_name, status.describe())
        return PokeReturnValue(is_done=status.terminal, xcom_value=job_result(status) if status.terminal else None)

    def execute(self, context):
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(trigger=TuningJobTrigger(backend=self.backend, job_name=self.job_name, **self.trigger_connection(),
                                            poll=self.poll_policy, cancel_on_kill=False, cancel_on_timeout=False),
                   method_name="execute_complete", timeout=timedelta(seconds=self.timeout))

    def execute_complete(self, context, event: dict, **_):
        if event.get("status") in ("success", "failed"):
            return job_result(JobStatus.from_summary(event["job"]))
        raise AirflowException(event.get("message"))
