"""Create a Gemini supervised tuning job (Vertex AI or Gemini API) idempotently, then wait for it deferred."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException

from ..core.identity import fingerprint, identity_key
from ..core.polling import PollPolicy, PollState
from ..core.states import JobStatus
from ..core.tuning import TuningSpec
from ..intents import IntentStore
from ..jobs import JobLauncher, _ref
from ..links import XCOM_KEY, TuningJobLink
from ..triggers import TuningJobTrigger, read_vertex_metrics


def _opt(value, cast):
    return None if value in (None, "", "None") else cast(value)


def result(status: JobStatus) -> dict:
    """XCom of a finished job: names, endpoint, loss history (thinned) — never data or credentials."""
    if not status.succeeded:
        raise AirflowException(f"tuning job {status.name} ended {status.state}: "
                               f"{status.error_code} {status.error_message or 'no error message from the service'}")
    return status.summary()


class GeminiTuningOperator(BaseOperator):
    """Creates (or reattaches to) a supervised tuning job and waits for it, deferred by default.

    Idempotent per task instance: every retry or clear of the same (dag, task, run, map index) resolves to the same
    job through an intent record in GCS (``state_uri``) and the job's labels; see ``gemini_tuning.jobs``.
    """

    template_fields = ("backend", "base_model", "training_uri", "validation_uri", "training_sha256", "epochs",
                       "learning_rate_multiplier", "learning_rate", "adapter_size", "batch_size", "display_name",
                       "description", "labels", "project_id", "location", "state_uri", "job_timeout", "poll_policy",
                       "on_fingerprint_change")
    operator_extra_links = (TuningJobLink(),)
    ui_color = "#d6e4ff"

    def __init__(self, *, base_model: str, training_uri: str, backend: str = "vertex",
                 validation_uri: str | None = None, training_sha256: str | None = None, epochs=None,
                 learning_rate_multiplier=None, learning_rate=None, adapter_size=None, batch_size=None,
                 display_name: str | None = None, description: str | None = None, labels: dict | None = None,
                 project_id: str | None = None, location: str = "us-central1",
                 gcp_conn_id: str = "google_cloud_default", impersonation_chain=None,
                 gemini_api_conn_id: str | None = None, api_base_url: str | None = None, state_uri: str | None = None,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 poll_policy: dict | None = None, job_timeout: timedelta | float | str = timedelta(hours=24),
                 cancel_on_kill: bool = True, cancel_on_timeout: bool = True,
                 on_fingerprint_change: str = "cancel_and_resubmit", error_budget_seconds: float = 1800.0, **kwargs):
        super().__init__(**kwargs)
        self.backend, self.base_model, self.training_uri, self.validation_uri = backend, base_model, training_uri, validation_uri
        self.training_sha256, self.epochs, self.learning_rate_multiplier = training_sha256, epochs, learning_rate_multiplier
        self.learning_rate, self.adapter_size, self.batch_size = learning_rate, adapter_size, batch_size
        self.display_name, self.description, self.labels = display_name, description, labels or {}
        self.project_id, self.location, self.gcp_conn_id = project_id, location, gcp_conn_id
        self.impersonation_chain, self.gemini_api_conn_id, self.api_base_url = impersonation_chain, gemini_api_conn_id, api_base_url
        self.state_uri, self.deferrable = state_uri, deferrable
        self.poll_policy = poll_policy or {}
        self.job_timeout, self.cancel_on_kill, self.cancel_on_timeout = job_timeout, cancel_on_kill, cancel_on_timeout
        self.on_fingerprint_change, self.error_budget_seconds = on_fingerprint_change, error_budget_seconds
        self._job_ref: str | None = None

    # ---------------------------------------------------------------------------------------------- helpers
    def _spec(self) -> TuningSpec:
        spec = TuningSpec(backend=self.backend, base_model=self.base_model, training_uri=self.training_uri,
                          validation_uri=self.validation_uri or None, training_sha256=self.training_sha256 or None,
                          epochs=_opt(self.epochs, int), learning_rate_multiplier=_opt(self.learning_rate_multiplier, float),
                          learning_rate=_opt(self.learning_rate, float), adapter_size=_opt(self.adapter_size, int),
                          batch_size=_opt(self.batch_size, int), display_name=self.display_name or None,
                          description=self.description or None, labels=dict(self.labels or {}))
        spec.validate()
        return spec

    def hook(self):
        from ..hooks import GeminiTuningHook

        return GeminiTuningHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                                api_base_url=self.api_base_url, gemini_api_conn_id=self.gemini_api_conn_id)

    def _timeout_seconds(self) -> float:
        t = self.job_timeout
        return t.total_seconds() if isinstance(t, timedelta) else float(t)

    def _deadline(self, status: JobStatus) -> float:
        """The job's own clock: created + timeout, the same for every retry that reattaches to it."""
        start = datetime.fromisoformat(status.create_time).timestamp() if status.create_time else time.time()
        return start + self._timeout_seconds()

    # ---------------------------------------------------------------------------------------------- execute
    def execute(self, context):
        if self.on_fingerprint_change not in ("cancel_and_resubmit", "fail"):
            raise ValueError("on_fingerprint_change must be 'cancel_and_resubmit' or 'fail', "
                             f"got {self.on_fingerprint_change!r}")
        spec = self._spec()
        hook = self.hook()
        backend = hook.backend(spec.backend, project_id=self.project_id, location=self.location)
        project = getattr(backend, "project", None)
        ti = context["ti"]
        key = identity_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        fp = fingerprint({**spec.fingerprint_inputs(), "project": project, "location": self.location})
        storage = hook.storage()
        state_uri = self.state_uri or f"gs://{spec.training_uri[5:].split('/', 1)[0]}/gemini-tuning-state"
        launcher = JobLauncher(backend, IntentStore(storage, state_uri), key=key, fingerprint=fp,
                               policy=self.on_fingerprint_change,
                               task={"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id,
                                     "map_index": ti.map_index})
        from ..backends import gcs

        launch = launcher.launch(spec, examples_loader=lambda: gcs.read_jsonl(storage, spec.training_uri,
                                                                               max_bytes=4 * 1024 * 1024))
        status = launch.status
        self._job_ref = _ref(status)
        ti.xcom_push(key=XCOM_KEY, value={"name": status.name, "ref": self._job_ref, "backend": spec.backend,
                                          "url": backend.console_url(status.name), "decision": launch.decision.action})
        self.log.info("%s %s: %s", launch.decision.action, status.name, status.describe())
        if status.terminal:
            return result(self._with_loss(hook, status))
        deadline = self._deadline(status)
        if self.deferrable:
            self.defer(trigger=TuningJobTrigger(
                backend=spec.backend, job_name=self._job_ref, project_id=project, location=self.location,
                gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain,
                api_base_url=self.api_base_url, gemini_api_conn_id=self.gemini_api_conn_id,
                poll=PollPolicy(**self.poll_policy).to_dict(), error_budget_seconds=self.error_budget_seconds, deadline=deadline,
                cancel_on_kill=self.cancel_on_kill, cancel_on_timeout=self.cancel_on_timeout),
                method_name="execute_complete",
                timeout=timedelta(seconds=max(60.0, deadline - time.time() + 600)))  # safety net; the trigger owns the deadline
        return result(self._poll_on_worker(hook, backend, deadline))

    def _with_loss(self, hook, status: JobStatus) -> JobStatus:
        if status.metrics_uri and not status.loss_history:
            import dataclasses

            try:
                return dataclasses.replace(status, loss_history=read_vertex_metrics(hook, status.metrics_uri))
            except Exception as exc:  # noqa: BLE001 - loss is reporting, never control
                self.log.warning("could not read training metrics from %s: %s", status.metrics_uri, exc)
        return status

    def _poll_on_worker(self, hook, backend, deadline: float) -> JobStatus:
        """Non-deferrable mode: the same poll policy and status parse as the trigger, on the worker."""
        state = PollState()
        while True:
            status = backend.get(self._job_ref)
            self.log.info("%s: %s", self._job_ref, status.describe())
            if status.terminal:
                return self._with_loss(hook, status)
            if time.time() >= deadline:
                if self.cancel_on_timeout:
                    backend.cancel(self._job_ref)
                raise AirflowException(f"{self._job_ref} did not finish within {self._timeout_seconds():.0f}s"
                                       + ("; it was cancelled" if self.cancel_on_timeout else ""))
            time.sleep(max(0.0, min(state.next_interval(PollPolicy(**self.poll_policy), time.time(), status.progress_percent),
                                    deadline - time.time())))

    def execute_complete(self, context, event: dict, **_):
        if event.get("status") in ("success", "failed"):
            status = JobStatus.from_summary(event["job"])
            self.log.info("%s finished: %s", status.name, status.describe())
            return result(status)
        if event.get("status") == "timeout":
            raise AirflowException(event.get("message"))
        raise AirflowException(f"{event.get('message')} (job {event.get('job_name')} was not cancelled; a retry of "
                               "this task reattaches to it)")

    def on_kill(self) -> None:
        """Non-deferrable mode: the task is killed on the worker while it polls. (Deferred: see the trigger.)"""
        if self.cancel_on_kill and self._job_ref and not self.deferrable:
            self.log.warning("task killed: cancelling %s", self._job_ref)
            self.hook().backend(self.backend, project_id=self.project_id, location=self.location).cancel(self._job_ref)
