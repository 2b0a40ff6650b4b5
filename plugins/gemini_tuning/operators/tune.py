"""Create a Gemini supervised tuning job (Vertex AI or Gemini API) idempotently, then wait for it, deferred."""

from __future__ import annotations

import time
from datetime import timedelta

from airflow.sdk import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from ..core.constants import JOB_XCOM
from ..core.polling import PollPolicy
from ..core.states import JobStatus
from ..core.tuning import TuningSpec
from ..links import TuningJobLink
from ..services.tuning.wait import JobWait
from ..triggers import TuningJobTrigger
from .base import GeminiBaseOperator, optional
from .guards import run_type_of


def job_result(status: JobStatus) -> dict:
    """XCom of a finished job: names, endpoint, loss history (thinned) — never data or credentials. Raises with the
    service's message when the job did not succeed."""
    if not status.succeeded:
        raise AirflowException(f"tuning job {status.name} ended {status.state}: "
                               f"{status.error_code} {status.error_message or 'no error message from the service'}")
    return status.summary()


def finish_event(event: dict, log) -> dict:
    """The trigger's final event -> the job result (with the sub-state timeline, ``substates``), or an error that
    says what happened to the job."""
    if event.get("status") in ("success", "failed"):
        status = JobStatus.from_summary(event["job"])
        log.info("%s finished: %s", status.name, status.describe())
        return {**job_result(status), "substates": list(event.get("substates") or [])}
    if event.get("status") in ("timeout", "queue_timeout"):
        raise AirflowException(event.get("message"))
    raise AirflowException(f"{event.get('message')} (job {event.get('job_name')} was not cancelled; a retry of "
                           "this task reattaches to it)")


class GeminiTuningOperator(GeminiBaseOperator):
    """Creates (or reattaches to) a supervised tuning job and waits for it, deferred by default.

    Idempotent per task instance: every retry or clear of the same (dag, task, run, map index) resolves to the
    same job through an intent record in GCS and the job's own identity (labels / a deterministic id); see
    ``gemini_tuning.services.idempotence``. Returns the job summary (``name``, ``tuned_model``, ``endpoint``,
    ``loss_history``, progress, example count, and ``substates``: the Vertex sub-state timeline
    ``[{"state", "since", "seconds"}]``, empty without sub-states) or raises with the service's message.

    :param base_model: the model to tune, e.g. ``gemini-3.5-flash`` (templated). On Vertex AI it is asked of the
        service (``publishers/google/models/{id}``) before anything is created: one the service does not serve
        (retired, or not offered in ``location``) fails the task, naming the model, the location and what to do.
    :param training_uri: ``gs://`` JSONL of training examples in the backend's format (templated).
    :param backend: ``vertex`` (default) or ``gemini_api`` (templated).
    :param validation_uri: ``gs://`` JSONL of validation examples, Vertex only (templated).
    :param training_sha256: the content hash from the prepare step; part of the fingerprint (templated).
    :param epochs: epoch count (templated).
    :param learning_rate_multiplier: Vertex (and Gemini API) learning-rate multiplier (templated).
    :param learning_rate: Gemini API learning rate (templated).
    :param adapter_size: Vertex LoRA adapter size, 1-32 (templated).
    :param batch_size: Gemini API batch size (templated).
    :param display_name: the tuned model's display name (templated).
    :param description: the tuned model's description (templated).
    :param labels: extra Google labels on the job (templated).
    :param state_uri: ``gs://`` prefix of the intent records (templated); default ``gs://<training bucket>/gemini-
        tuning-state``.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``); False polls on the worker
        with the same wait loop (``services.tuning.wait.JobWait``).
    :param poll_policy: ``core.polling.PollPolicy`` fields (templated).
    :param job_timeout: how long the job may tune (timedelta or seconds; templated). Vertex: counted from the first
        ``TUNING_JOB_STATE_TUNING`` sub-state the wait observes, so time waiting for quota or capacity or validating
        the dataset is not charged to it; a job without sub-states (Gemini API): from its create time.
    :param max_queue_hours: the most hours a Vertex job may spend waiting for quota or capacity
        (``WAITING_FOR_QUOTA`` + ``WAITING_FOR_CAPACITY``, summed); past it the task fails and the job is cancelled
        (if ``cancel_on_timeout``). None = no limit (templated).
    :param cancel_on_kill: cancel the job when the task is killed, cleared or marked while it waits.
    :param cancel_on_timeout: cancel the job when ``job_timeout`` or ``max_queue_hours`` is reached.
    :param on_fingerprint_change: ``cancel_and_resubmit`` or ``fail``: a retry finds a live job with other inputs
        (templated).
    :param error_budget_seconds: how long status polling may keep failing transiently before the task fails (the
        job is never cancelled for it; a retry reattaches).
    :param continue_from: Vertex continuous tuning (templated): ``"champion"`` (the model version and checkpoint the
        champion pointer names when the task runs), a Model Registry name ``projects/P/locations/L/models/M@1`` /
        ``…/M@<alias>`` / ``…/M``, or None to tune ``base_model``. Resolved to an exact version and checkpoint
        before the create (``services.continuation``) and part of the job's fingerprint; the result is the next
        version of that model.
    :param champion_pointer_uri: ``gs://`` URI of the champion pointer, for ``continue_from="champion"``
        (templated).
    :param max_training_tokens: budget: the most billable training tokens (training-token estimate x epochs) the job
        may train on; None = no limit (templated).
    :param max_cost: budget: the most the job may cost, in the currency of ``price_per_million_training_tokens``;
        None = no limit (templated). Needs the price.
    :param price_per_million_training_tokens: your price of tuning this model per million training tokens (no
        price is built in; templated).
    :param dataset_stats: the dataset step's ``stats`` (``train_tokens``: the per-epoch token estimate of the
        training examples), e.g. ``{{ ti.xcom_pull(task_ids='prepare_dataset')['stats'] }}`` (templated).
    :param retirement_warn_days: warn (XCom ``base_model``, the task log) this many days before the base model's
        tuning block or retirement, per the lifecycle table (templated).
    :param on_base_retirement: ``rebase`` (default) or ``fail`` (templated): with ``continue_from="champion"``, when
        the champion's base model (recorded in the pointer) is within ``retirement_warn_days`` of its tuning block,
        blocked or retired: tune ``base_model`` afresh instead (XCom ``rebase``), or fail the task.
    :param lifecycle_table: a deployment's model lifecycle table (JSON like ``gemini_tuning/data/
        model_lifecycle.json``); default ``[gemini_tuning] model_lifecycle_table``, else the shipped table.

    The orchestration is ``services.tuning.run.TuningRun`` (no Airflow); this class renders and types the arguments,
    maps a refusal to ``AirflowFailException``, pushes XCom, defers, and cancels on kill. Before anything is read,
    written or created, on every try: the scheduled-run guard (``core.safety``: an unattended run
    against Google with the demo bucket fails), then the budget (``core.budget``: estimate = training tokens x epochs,
    the backend's default epochs when ``epochs`` is None); above a limit, or for a ``training_uri`` / ``state_uri``
    that is not a ``gs://`` URI, the task fails without retries
    (``AirflowFailException``) with the estimate, the limit and what to change. The estimate is pushed as XCom
    ``budget``.

    And the connection arguments of :class:`~gemini_tuning.operators.base.GeminiBaseOperator`.
    """

    template_fields = ("backend", "base_model", "training_uri", "validation_uri", "training_sha256", "epochs",
                       "learning_rate_multiplier", "learning_rate", "adapter_size", "batch_size", "display_name",
                       "description", "labels", "project_id", "location", "state_uri", "job_timeout", "max_queue_hours",
                       "poll_policy",
                       "on_fingerprint_change", "continue_from", "champion_pointer_uri", "max_training_tokens",
                       "max_cost", "price_per_million_training_tokens", "dataset_stats", "retirement_warn_days",
                       "on_base_retirement")
    operator_extra_links = (TuningJobLink(),)
    ui_color = "#d6e4ff"

    def __init__(self, *, base_model: str, training_uri: str, backend: str = "vertex",
                 validation_uri: str | None = None, training_sha256: str | None = None, epochs=None,
                 learning_rate_multiplier=None, learning_rate=None, adapter_size=None, batch_size=None,
                 display_name: str | None = None, description: str | None = None, labels: dict | None = None,
                 state_uri: str | None = None,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 poll_policy: dict | None = None, job_timeout: timedelta | float | str = timedelta(hours=24),
                 max_queue_hours: float | str | None = None, cancel_on_kill: bool = True,
                 cancel_on_timeout: bool = True,
                 on_fingerprint_change: str = "cancel_and_resubmit", error_budget_seconds: float = 1800.0,
                 continue_from: str | None = None, champion_pointer_uri: str | None = None,
                 max_training_tokens=None, max_cost=None, price_per_million_training_tokens=None,
                 dataset_stats: dict | str | None = None, retirement_warn_days: int | str = 60,
                 lifecycle_table: str | None = None, on_base_retirement: str = "rebase", **kwargs):
        super().__init__(**kwargs)
        self.backend = backend
        self.base_model = base_model
        self.training_uri = training_uri
        self.validation_uri = validation_uri
        self.training_sha256 = training_sha256
        self.epochs = epochs
        self.learning_rate_multiplier = learning_rate_multiplier
        self.learning_rate = learning_rate
        self.adapter_size = adapter_size
        self.batch_size = batch_size
        self.display_name = display_name
        self.description = description
        self.labels = labels or {}
        self.state_uri = state_uri
        self.deferrable = deferrable
        self.poll_policy = poll_policy or {}
        self.job_timeout = job_timeout
        self.max_queue_hours = max_queue_hours
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self.on_fingerprint_change = on_fingerprint_change
        self.error_budget_seconds = error_budget_seconds
        self.continue_from = continue_from
        self.champion_pointer_uri = champion_pointer_uri
        self.max_training_tokens = max_training_tokens
        self.max_cost = max_cost
        self.price_per_million_training_tokens = price_per_million_training_tokens
        self.dataset_stats = dataset_stats
        self.retirement_warn_days = retirement_warn_days
        self.on_base_retirement = on_base_retirement
        self.lifecycle_table = lifecycle_table or conf.get("gemini_tuning", "model_lifecycle_table", fallback=None)
        self._job_ref: str | None = None

    # ---------------------------------------------------------------------------------------------- inputs
    def _request(self, context):
        """The rendered arguments, typed, as the service's request."""
        from ..core.budget import BudgetLimits
        from ..services.tuning.run import TaskRef, TuningRequest

        ti = context["ti"]
        spec = TuningSpec(backend=self.backend, base_model=self.base_model, training_uri=self.training_uri,
                          validation_uri=optional(self.validation_uri),
                          training_sha256=optional(self.training_sha256), epochs=optional(self.epochs, int),
                          learning_rate_multiplier=optional(self.learning_rate_multiplier, float),
                          learning_rate=optional(self.learning_rate, float),
                          adapter_size=optional(self.adapter_size, int), batch_size=optional(self.batch_size, int),
                          display_name=optional(self.display_name), description=optional(self.description),
                          labels=dict(self.labels or {}))
        limits = BudgetLimits(max_training_tokens=optional(self.max_training_tokens, int),
                              max_cost=optional(self.max_cost, float),
                              price_per_million_training_tokens=optional(self.price_per_million_training_tokens,
                                                                         float))
        return TuningRequest(
            spec=spec, task=TaskRef(ti.dag_id, ti.task_id, ti.run_id, ti.map_index), location=self.location,
            state_uri=optional(self.state_uri), continue_from=optional(self.continue_from),
            champion_pointer_uri=optional(self.champion_pointer_uri), on_fingerprint_change=self.on_fingerprint_change,
            limits=limits, dataset_stats=optional(self.dataset_stats), job_timeout_seconds=self._timeout_seconds(),
            run_type=run_type_of(context), api_base_url=self.hook.api_base_url,
            lifecycle_table=self.lifecycle_table or None, retirement_warn_days=self._warn_days(),
            on_base_retirement=self._on_base_retirement())

    def _on_base_retirement(self) -> str:
        value = optional(self.on_base_retirement) or "rebase"
        if value not in ("rebase", "fail"):
            raise AirflowFailException(f"on_base_retirement must be 'rebase' or 'fail', got {value!r}")
        return value

    def _warn_days(self) -> int:
        try:
            days = int(self.retirement_warn_days)
        except (TypeError, ValueError):
            days = -1
        if days < 0:
            raise AirflowFailException(f"retirement_warn_days must be a whole number of days >= 0, got "
                                       f"{self.retirement_warn_days!r}")
        return days

    def _timeout_seconds(self) -> float:
        t = self.job_timeout
        return t.total_seconds() if isinstance(t, timedelta) else float(t)

    def _max_queue_seconds(self) -> float | None:
        """``max_queue_hours`` in seconds (None = no limit); a value that is not a positive number fails the task."""
        try:
            hours = optional(self.max_queue_hours, float)
        except (TypeError, ValueError) as exc:
            raise AirflowFailException(f"max_queue_hours must be a number of hours or None, got "
                                       f"{self.max_queue_hours!r}") from exc
        if hours is not None and not hours > 0:
            raise AirflowFailException(f"max_queue_hours must be more than 0 hours (or None for no limit), got "
                                       f"{self.max_queue_hours!r}")
        return None if hours is None else hours * 3600.0

    # ---------------------------------------------------------------------------------------------- execute
    def execute(self, context):
        from ..services.tuning.run import Refused, TuningRun

        ti = context["ti"]
        max_queue = self._max_queue_seconds()       # before anything is created
        run = TuningRun(self._request(context), backend=self.tuning_backend, storage=lambda: self.hook.storage(),
                        registry=lambda: self.hook.registry(optional(self.project_id), self.location), log=self.log)
        try:
            started = run.start(publish=lambda key, value: ti.xcom_push(key=key, value=value))
        except Refused as exc:
            raise AirflowFailException(str(exc)) from exc
        status, backend = started.status, started.backend
        self._job_ref = status.poll_name
        ti.xcom_push(key=JOB_XCOM, value={"name": status.name, "ref": self._job_ref, "backend": self.backend,
                                          "url": backend.console_url(status.name), "decision": started.action})
        self.log.info("%s %s: %s", started.action, status.name, status.describe())
        if status.terminal:
            return {**job_result(backend.with_loss(status)), "substates": []}
        wait = {"poll": PollPolicy(**self.poll_policy).to_dict(), "error_budget_seconds": self.error_budget_seconds,
                "deadline": started.deadline, "cancel_on_timeout": self.cancel_on_timeout,
                "timeout_seconds": self._timeout_seconds(), "max_queue_seconds": max_queue}
        if self.deferrable:
            self.defer(trigger=TuningJobTrigger(backend=self.backend, job_name=self._job_ref, **wait,
                                                cancel_on_kill=self.cancel_on_kill, **self.trigger_connection()),
                       method_name="execute_complete",   # the timeout is a safety net; the trigger owns the deadline
                       timeout=self._defer_timeout(started.deadline, max_queue))
        # on the worker: the trigger's own loop, driven synchronously
        outcome = JobWait(self._job_ref, self.log, read_loss=TuningJobTrigger.read_loss, **wait).run(backend)
        return finish_event(outcome.event(), self.log)

    def execute_complete(self, context, event: dict, **_):
        return finish_event(event, self.log)

    def _defer_timeout(self, deadline: float, max_queue: float | None) -> timedelta | None:
        """The deferral's safety net (the trigger owns the deadline). Vertex counts the job timeout from the TUNING
        sub-state, so the absolute bound is the create-time deadline + the queue limit (+ an hour for the dataset
        validation, which is not counted either); without a queue limit there is none (None), since a queued Vertex
        job must not be failed by the safety net."""
        extra = 0.0
        if self.backend == "vertex":
            if max_queue is None:
                return None
            extra = max_queue + 3600.0
        return timedelta(seconds=max(60.0, deadline - time.time() + extra + 600))

    def on_kill(self) -> None:
        """Non-deferrable mode: the task is killed on the worker while it polls. (Deferred: see the trigger.)"""
        if self.cancel_on_kill and self._job_ref and not self.deferrable:
            self.log.warning("task killed: cancelling %s", self._job_ref)
            self.tuning_backend(self.backend).cancel(self._job_ref)
