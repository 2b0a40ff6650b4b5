"""One try of a tuning task, before the wait: guards, budget, continuation, launch (no Airflow).

Purpose
    Everything the tuning operator decides and does up to a running (or finished) job, in one place the Airflow
    layer only calls: ``TuningRun(request, ...).start(publish)``.
How it works
    In this order, on every try, and nothing is read, written or created before the first two:

    1. the scheduled-run guard (:func:`.guard.demo_guard`, ``core.safety``): an unattended run against Google with the
       demo data or bucket is refused;
    2. the URIs: ``training_uri`` (and ``state_uri``) must be ``gs://`` URIs; the intent records live under
       ``state_uri``, default ``gs://<training bucket>/gemini-tuning-state`` (:func:`state_uri_for`);
    3. the budget (``core.budget``): the estimate is published (``publish("budget", …)``) before the later steps
       can fail; above a limit the try is refused;
    4. ``continue_from`` resolved to an exact model version and checkpoint (``services.continuation``), or what an
       earlier try of the same task instance resolved it to (kept in its intent record);
    5. the base model (Vertex AI, a fresh tuning that no earlier try has started a job for): asked of the service
       (``publishers/google/models/{id}``); one it does not serve (404: retired, or not offered in this location)
       is refused, naming the model, the location and what to do. The shipped lifecycle table
       (``core.lifecycle``) adds the retirement date: published as ``base_model`` and logged as a warning within
       ``retirement_warn_days`` of the tuning block (the table may be out of date, the service is not: only the
       service's answer refuses);
    6. the spec validated, then the launcher (``services.idempotence``): reattach, return, or create.

    A refusal raises :class:`Refused` (nothing was created, and a retry would not change that). The job's deadline
    is its own clock: created + timeout, the same for every retry that reattaches to it.
What it does not do
    Wait (``services.tuning.wait``), push XCom or defer: the callers do, with what :meth:`TuningRun.start` returns.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from ...backends import gcs
from ...core.budget import BudgetError, BudgetEstimate, BudgetLimits, check_budget
from ...core.identity import fingerprint, identity_key
from ...core.states import JobStatus
from ...core.tuning import TuningSpec
from .guard import Refused, demo_guard

__all__ = ["Refused", "Started", "TaskRef", "TuningRequest", "TuningRun", "deadline_of", "demo_guard",
           "parse_stats", "state_uri_for"]

POLICIES = ("cancel_and_resubmit", "fail")


def state_uri_for(training_uri: object, state_uri: str | None) -> str:
    """Where the intent records live: ``state_uri``, else ``gs://<training_uri's bucket>/gemini-tuning-state``.

    :param training_uri: the training data, a ``gs://bucket/object`` URI.
    :param state_uri: a ``gs://`` prefix, or None for the default.
    :raises Refused: when either is not a ``gs://`` URI (the error names which and why).
    """
    try:
        bucket, _ = gcs.parse_gs_uri(training_uri, object_required=True)
    except ValueError as exc:
        raise Refused(f"nothing was created: training_uri {exc}") from None
    if not state_uri:
        return f"gs://{bucket}/gemini-tuning-state"
    try:
        gcs.parse_gs_uri(str(state_uri))
    except ValueError as exc:
        raise Refused(f"nothing was created: state_uri {exc}") from None
    return str(state_uri)


def parse_stats(stats: Any) -> Any:
    """The dataset step's ``stats`` as given, or parsed from text (rendered without native objects: JSON, or a
    Python repr).

    :param stats: a mapping, its text, or None.
    :raises Refused: for text that is neither.
    """
    if not isinstance(stats, str):
        return stats
    try:
        return json.loads(stats)
    except ValueError:
        try:
            return ast.literal_eval(stats)
        except (ValueError, SyntaxError):
            raise Refused(f"nothing was created: dataset_stats is not a mapping: {stats[:200]!r}") from None


def deadline_of(status: JobStatus, timeout_seconds: float) -> float:
    """The job's own deadline (epoch seconds): its create time + ``timeout_seconds`` (now, when it has none).

    :param status: the job.
    :param timeout_seconds: how long the job may run.
    """
    start = datetime.fromisoformat(status.create_time).timestamp() if status.create_time else time.time()
    return start + timeout_seconds


@dataclass(frozen=True)
class TaskRef:
    """The task instance a job belongs to.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param run_id: the DAG run.
    :param map_index: the map index (-1 or None: not mapped).
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int | None = -1

    @property
    def key(self) -> str:
        """The run-stable identity key (``core.identity.identity_key``; never the try number)."""
        return identity_key(self.dag_id, self.task_id, self.run_id, self.map_index)


@dataclass(frozen=True)
class TuningRequest:
    """One try's inputs, rendered and typed.

    :param spec: what to tune, without continuation (``continue_from`` is resolved first, then it is validated).
    :param task: the task instance.
    :param location: the Vertex region (part of the fingerprint).
    :param state_uri: ``gs://`` prefix of the intent records; None: next to the training data.
    :param continue_from: ``"champion"``, a Model Registry name, or None (``services.continuation``).
    :param champion_pointer_uri: the champion pointer, for ``continue_from="champion"``.
    :param on_fingerprint_change: ``cancel_and_resubmit`` or ``fail``.
    :param limits: the budget limits.
    :param dataset_stats: the dataset step's ``stats`` (or their text).
    :param job_timeout_seconds: how long the job may run, from its create time.
    :param run_type: the DAG run's type, for the guard.
    :param api_base_url: the endpoint in use (None: Google's), for the guard.
    :param lifecycle_table: a deployment's model lifecycle table (JSON, ``core.lifecycle``); None: the shipped one.
    :param retirement_warn_days: warn this many days before the base model's tuning block (or retirement).
    :param today: the day the lifecycle table is read for (None: today, UTC).
    :param on_base_retirement: ``rebase`` or ``fail``: what a ``continue_from="champion"`` run does when the
        champion's base model is within ``retirement_warn_days`` of its tuning block, blocked or retired
        (``core.lifecycle.rebase_decision``): tune ``spec.base_model`` afresh instead, or stop.
    """

    spec: TuningSpec
    task: TaskRef
    location: str | None = None
    state_uri: str | None = None
    continue_from: str | None = None
    champion_pointer_uri: str | None = None
    on_fingerprint_change: str = "cancel_and_resubmit"
    limits: BudgetLimits = field(default_factory=BudgetLimits)
    dataset_stats: Any = None
    job_timeout_seconds: float = 86400.0
    run_type: str | None = None
    api_base_url: str | None = None
    lifecycle_table: str | None = None
    retirement_warn_days: int = 60
    today: date | None = None
    on_base_retirement: str = "rebase"


@dataclass(frozen=True)
class Started:
    """A launched (or reattached, or already finished) job.

    :param status: the job as the launcher found or created it.
    :param action: the launcher's decision (``create``, ``reattach``, ``return``, ``cancel_and_create``).
    :param backend: the backend it runs on (to wait with).
    :param deadline: the job's deadline (epoch seconds).
    :param budget: the budget estimate (None: no token count and no limit).
    """

    status: JobStatus
    action: str
    backend: Any
    deadline: float
    budget: BudgetEstimate | None = None


class TuningRun:
    """One try of a tuning task up to a running job.

    :param request: the inputs.
    :param backend: ``kind -> TuningBackend`` (called once, after the guards, the budget and the continuation).
    :param storage: ``() -> google.cloud.storage.Client`` (called only when a record or the pointer is read).
    :param registry: ``() -> VertexRegistry`` of the job's location (called only to resolve ``continue_from``).
    :param log: a logger.
    """

    def __init__(self, request: TuningRequest, *, backend: Callable[[str], Any], storage: Callable[[], Any],
                 registry: Callable[[], Any], log):
        self.request = request
        self._backend = backend
        self._storage = storage
        self._registry = registry
        self.log = log

    def start(self, publish: Callable[[str, Any], None] = lambda key, value: None) -> Started:
        """Guard, budget, continuation, launch (module docstring).

        :param publish: ``(key, value)``: gets ``("budget", …)`` as soon as the estimate is known.
        :raises Refused: nothing was created and a retry would not change that.
        """
        req = self.request
        if req.on_fingerprint_change not in POLICIES:
            raise ValueError("on_fingerprint_change must be 'cancel_and_resubmit' or 'fail', "
                             f"got {req.on_fingerprint_change!r}")
        if req.on_base_retirement not in ("rebase", "fail"):
            raise ValueError(f"on_base_retirement must be 'rebase' or 'fail', got {req.on_base_retirement!r}")
        demo_guard(run_type=req.run_type, api_base_url=req.api_base_url, log=self.log, arguments={
            "training_uri": req.spec.training_uri, "validation_uri": req.spec.validation_uri,
            "state_uri": req.state_uri, "champion_pointer_uri": req.champion_pointer_uri})
        state_uri = state_uri_for(req.spec.training_uri, req.state_uri)
        estimate = self.budget(publish)
        rebased = self.rebase(publish, state_uri)
        continuation = None if rebased else self.continuation(state_uri)
        spec = dataclasses.replace(req.spec, continue_from=continuation.model_version if continuation else None,
                                   checkpoint_id=continuation.checkpoint_id if continuation else None)
        spec.validate()
        backend = self._backend(spec.backend)
        if continuation is None:
            self.check_base_model(backend, spec, state_uri, publish)
        launch = self._launcher(spec, backend, state_uri, continuation, rebased).launch(spec)
        return Started(launch.status, launch.decision.action, backend,
                       deadline_of(launch.status, req.job_timeout_seconds), estimate)

    def check_base_model(self, backend, spec: TuningSpec, state_uri: str,
                         publish: Callable[[str, Any], None]) -> dict | None:
        """Step 5 of the module docstring: the base model, with the service and the lifecycle table.

        Skipped for a backend without ``base_model`` (the Gemini API: it lists no tunable model today) and when an
        earlier try of this task instance recorded a job (a retry reattaches to it whatever the base's state now;
        refusing would orphan a running job). Publishes ``("base_model", {model, location, served, retirement,
        days_left, state, message, table_as_of})``.

        :raises Refused: the service does not serve the model (nothing was created).
        """
        from ...backends.errors import NotFoundError, TuningApiError
        from ...core import lifecycle

        ask = getattr(backend, "base_model", None)
        if ask is None or self._job_recorded(state_uri):
            return None
        req, model = self.request, spec.base_model
        location = getattr(backend, "location", None) or req.location
        table = self._lifecycle()
        status = lifecycle.base_status(model, self._today(), table, warn_days=int(req.retirement_warn_days))
        info = {"model": model, "location": location, "state": status.state, "message": status.message,
                "retirement": status.retirement.isoformat() if status.retirement else None,
                "tuning_blocked_from": status.tuning_blocked_from.isoformat() if status.tuning_blocked_from else None,
                "days_left": status.days_left, "table_as_of": table.as_of.isoformat(), "served": None}
        try:
            ask(model)
        except ValueError as exc:            # not a model id (base_model_id): a retry would not change it
            raise Refused(f"nothing was created: {exc}") from exc
        except TuningApiError as exc:
            if isinstance(exc, NotFoundError):
                raise self._not_served(model, location, table, status, info, publish, exc) from exc
            if exc.code in (401, 403):       # e.g. a role without aiplatform.publisherModels.get: not a verdict
                self.log.warning("base model %s: the service did not say whether it serves it (%s); going on to "
                                 "the create, whose own answer counts", model, exc)
                publish("base_model", info)
                return info
            raise
        info["served"] = True
        publish("base_model", info)
        if status.state in ("warn", "blocked", "retired"):
            self.log.warning("base model %s (%s): %s", model, location, status.message)
        else:
            self.log.info("base model %s is served in %s; %s", model, location, status.message)
        return info

    def _not_served(self, model, location, table, status, info, publish, exc) -> Refused:
        """The refusal of a base model the service does not serve (404), naming what to use instead."""
        from ...core import lifecycle

        info["served"] = False
        publish("base_model", info)
        row = lifecycle.resolve_model(model, table)
        tunable = [r for r in (row.replacements if row else ()) if getattr(table.models.get(r), "tunable", None)]
        instead = (f"{' or '.join(tunable)} (Google's listed replacements that the table lists as tunable)"
                   if tunable else f"a currently tunable model such as {lifecycle.DEFAULT_BASE_MODEL}")
        known = f"; the lifecycle table (as of {table.as_of}) says: {status.message}" \
            if status.state != "unknown" else ""
        return Refused(f"nothing was created: base model {model} is not served in {location} (Vertex AI "
                       f"answered {exc.code} {exc.status or ''}: {exc.message}). It is retired, not yet released "
                       f"or not offered in this location{known}. Set base_model to {instead}, or choose a "
                       "location that offers it.")

    def _job_recorded(self, state_uri: str) -> bool:
        intent = self._intent(state_uri)
        return intent is not None and bool(intent.job_name)

    def budget(self, publish: Callable[[str, Any], None]) -> BudgetEstimate | None:
        """The budget limits against the estimate; publishes the estimate.

        :param publish: gets ``("budget", {estimate…, max_training_tokens, max_cost})``.
        :raises Refused: over a limit, or a limit without a token count (the message says what to change).
        """
        req, limits = self.request, self.request.limits
        try:
            est = check_budget(parse_stats(req.dataset_stats), limits, backend=req.spec.backend,
                               epochs=req.spec.epochs)
        except BudgetError as exc:
            raise Refused(str(exc)) from exc
        if est is not None:
            self.log.info("budget: estimated %s; limits: max_training_tokens=%s, max_cost=%s", est.describe(),
                          limits.max_training_tokens, limits.max_cost)
            publish("budget", {**est.to_dict(), "max_training_tokens": limits.max_training_tokens,
                               "max_cost": limits.max_cost})
        return est

    def _lifecycle(self):
        from ...core import lifecycle

        try:
            return lifecycle.load_table(self.request.lifecycle_table)
        except (OSError, ValueError) as exc:
            raise Refused(f"nothing was created: the model lifecycle table cannot be read: {exc}") from exc

    def _today(self) -> date:
        return self.request.today or datetime.now(timezone.utc).date()

    def _intent(self, state_uri: str):
        """This task instance's intent record (None: none yet, or unreadable: the launcher reads it again)."""
        from ..idempotence import IntentStore

        try:
            intent, _ = IntentStore(self._storage(), state_uri).read(self.request.task.key)
        except Exception as exc:  # noqa: BLE001 - an unreadable record is raised by the launcher itself
            self.log.debug("intent record not readable: %s", exc)
            return None
        return intent

    def rebase(self, publish: Callable[[str, Any], None], state_uri: str | None = None) -> bool:
        """``continue_from="champion"`` and the champion's base model retiring (the pointer's ``base_model``, the
        lifecycle table, ``on_base_retirement``): True when this run tunes ``spec.base_model`` afresh instead
        (a warning, and ``("rebase", {…})`` published); False to continue as asked. The new model is judged
        against the still-serving champion as usual.

        :raises Refused: ``on_base_retirement="fail"``, or a rebase that would not help (the message says why).
        """
        from ...core import lifecycle
        from ..champion_pointer import read_champion

        req = self.request
        if req.continue_from != "champion" or req.spec.backend != "vertex" or not req.champion_pointer_uri:
            return False
        # what an earlier try of this task instance decided holds for every later one: a promotion or another
        # day in between must not turn its job into a different one (cancelled and paid for again)
        intent = self._intent(state_uri) if state_uri else None
        earlier = (intent.continuation if intent is not None else None) or {}
        if earlier.get("raw") == req.continue_from and (earlier.get("rebased") or earlier.get("model_version")):
            if earlier.get("rebased"):
                self.log.info("continue_from=champion: the first try rebased onto %s; so does this one",
                              req.spec.base_model)
            return bool(earlier.get("rebased"))
        try:
            champion, _ = read_champion(self._storage(), req.champion_pointer_uri)
        except Exception as exc:  # noqa: BLE001 - the continuation reads it again and says what is wrong
            self.log.debug("champion pointer not readable for the base-model check: %s", exc)
            return False
        base = (champion or {}).get("base_model")
        if not base:
            if champion:
                self.log.info("the champion pointer names no base model (promoted before it was recorded): its "
                              "retirement date is not checked")
            return False
        decision, message = lifecycle.rebase_decision(base, self._today(), self._lifecycle(),
                                                      int(req.retirement_warn_days), req.on_base_retirement,
                                                      base_model=req.spec.base_model)
        if decision == "continue":
            self.log.info("%s", message)
            return False
        if decision == "fail":
            if lifecycle.base_status(base, self._today(), self._lifecycle(),
                                     int(req.retirement_warn_days)).state == "warn":
                # only warned (tuning on it still works): keep continuing until it is blocked, and say what to do
                self.log.warning("%s (continuing from the champion until its base is blocked)", message)
                publish("rebase", {"champion": champion.get("tuned_model"), "champion_base_model": base,
                                   "base_model": req.spec.base_model, "message": message, "rebased": False})
                return False
            raise Refused(f"nothing was created: {message}")
        self.log.warning("%s", message)
        publish("rebase", {"champion": champion.get("tuned_model"), "champion_base_model": base,
                           "base_model": req.spec.base_model, "message": message})
        return True

    def continuation(self, state_uri: str):
        """``continue_from`` resolved to an exact model version and checkpoint (None: from the base model).

        :param state_uri: where the intent records live (an earlier try's resolution is reused).
        :raises Refused: it cannot be resolved.
        """
        from ..continuation import ContinuationError, resolve

        req = self.request
        value = req.continue_from
        if not value:
            return None
        earlier = self._earlier_continuation(state_uri, value)
        if earlier is not None:
            return earlier
        try:
            found = resolve(value, backend=req.spec.backend, storage=self._storage(),
                            pointer_uri=req.champion_pointer_uri,
                            registry=self._registry() if req.spec.backend == "vertex" else None)
        except ContinuationError as exc:
            raise Refused(f"nothing was created: {exc}") from exc
        self.log.info("continuous tuning from %s (checkpoint %s; continue_from=%r)", found.model_version,
                      found.checkpoint_id or "default", value)
        return found

    def _earlier_continuation(self, state_uri: str, value: str):
        """What an earlier try of this task instance resolved ``continue_from`` to (kept in its intent record):
        ``"champion"`` resolves to this run's own model once it is promoted, and a retry must not become a new
        job for that."""
        from ..continuation import Continuation

        intent = self._intent(state_uri)
        earlier = (intent.continuation if intent is not None else None) or {}
        if earlier.get("raw") != value or not earlier.get("model_version"):
            return None
        self.log.info("continue_from=%r: reusing what the first try resolved (%s, checkpoint %s)", value,
                      earlier["model_version"], earlier.get("checkpoint_id") or "default")
        return Continuation(earlier["model_version"], earlier.get("checkpoint_id"), value)

    def _launcher(self, spec: TuningSpec, backend, state_uri: str, continuation, rebased: bool = False):
        from ..idempotence import IntentStore, JobLauncher

        req = self.request
        fp = fingerprint({**spec.fingerprint_inputs(), "project": getattr(backend, "project", None),
                          "location": req.location})
        kept = ({"raw": continuation.source, "model_version": continuation.model_version,
                 "checkpoint_id": continuation.checkpoint_id} if continuation else None)
        if rebased:     # kept, so that every later try of this task instance tunes afresh too
            kept = {"raw": req.continue_from, "rebased": True, "model_version": None, "checkpoint_id": None}
        return JobLauncher(backend, IntentStore(self._storage(), state_uri), key=req.task.key, fingerprint=fp,
                           policy=req.on_fingerprint_change, continuation=kept, task=dataclasses.asdict(req.task))
