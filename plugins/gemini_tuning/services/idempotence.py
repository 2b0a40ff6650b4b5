"""Idempotence for the paid create call: identity, intent records and the launcher, in one place, free of Airflow.

Purpose
    Every try of one task instance (retry, clear, a worker killed mid-create) must end up with the same tuning job,
    and never pay for a second one by accident.
How it works
    * identity: a run-stable key from (dag, task, run, map index) — never the try number — and a fingerprint of the
      inputs (``core.identity``), carried by the job itself through the backend's own mechanics (labels on Vertex,
      a deterministic tuned-model id on the Gemini API; see ``backends.contract.TuningBackend``);
    * intent record: a small JSON object in GCS per task instance (:class:`IntentStore`), written *before* the paid
      call and updated with the job name right after it, always compare-and-swap on the GCS generation;
    * launcher (:class:`JobLauncher`): on every try, read the record, find the earlier job, and follow
      ``core.identity.decide_launch``: reattach to an active job with the same inputs, return a succeeded one,
      create anew after a failed or cancelled one, follow ``on_fingerprint_change`` when the inputs changed. An
      intent without a job name (a crash inside create) is resolved on the service before anything is paid again;
      a create that failed ambiguously (reset, timeout, 5xx) is looked up before it is retried.
What it does not do
    Wait for the job (``core.wait`` + the trigger), or know which service it talks to.
Known limitations
    Why GCS and not ``task_state_store``: a clear through the REST API may discard the latter (apache/airflow
    #72100). A read error of the record is raised, never taken for "no record". Gemini API jobs carry no labels:
    without any intent record the fingerprint of such a job is unknown, and a changed-input check treats it as
    different.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace

from ..backends import gcs, retry
from ..backends.contract import JobIdentity, TuningBackend
from ..backends.errors import AlreadyExistsError, NotFoundError
from ..core.identity import Decision, decide_launch
from ..core.states import JobStatus
from ..core.tuning import TuningSpec

log = logging.getLogger(__name__)

#: The paid create's retries (``backends.retry``, the package's one retry implementation): 3 calls at most, pauses
#: drawn below 2 s then 4 s (a Retry-After honoured up to 30 s), no time bound; before each retry the job is looked
#: up (:meth:`JobLauncher._create`), so an ambiguous failure whose create went through is never paid twice.
CREATE_RETRY = retry.RetryPolicy(attempts=3, initial_delay=2.0, max_delay=30.0, total_seconds=None)


class FingerprintChanged(RuntimeError):
    """A retry found a live job with other inputs and ``on_fingerprint_change='fail'``."""


# ------------------------------------------------------------------------------------------------ intent records
@dataclass
class Intent:
    """The record of one task instance's tuning job: written before the paid call, completed right after it.

    :param key: the task instance's run-stable identity key; also the record's name (``intents/<key>.json``).
    :param fingerprint: the fingerprint of the job's inputs.
    :param attempt: 1, 2, … (a new attempt after a failed, cancelled or changed job); part of the job's identity.
    :param backend: the backend's ``kind`` (``vertex`` / ``gemini_api``).
    :param job_name: what to poll and cancel (the job, or the Gemini API operation); None while the create is in
        flight, or when it never went through.
    :param created_at: when the record was made, epoch seconds.
    :param task: dag_id, task_id, run_id, map_index (for people reading the record).
    :param history: earlier attempts, ``[{attempt, job_name, fingerprint, state}]``, oldest first.
    :param continuation: ``continue_from`` as given and what the first try resolved it to; None: no continuation.
    """

    key: str
    fingerprint: str
    attempt: int
    backend: str
    job_name: str | None = None
    created_at: float = field(default_factory=time.time)
    task: dict = field(default_factory=dict)          # dag_id, task_id, run_id, map_index (for humans)
    history: list = field(default_factory=list)       # earlier attempts: [{attempt, job_name, fingerprint}]
    continuation: dict | None = None                   # continue_from as given and what the first try resolved

    @classmethod
    def from_dict(cls, d: dict) -> Intent:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class IntentStore:
    """Intent records under ``<prefix_uri>/intents/<key>.json``.

    :param client: a ``google.cloud.storage.Client``.
    :param prefix_uri: ``gs://bucket/prefix`` where the records live.
    """

    def __init__(self, client, prefix_uri: str):
        self.client = client
        self.prefix = prefix_uri.rstrip("/")
        gcs.parse_gs_uri(self.prefix + "/x")  # validate early

    def uri(self, key: str) -> str:
        return f"{self.prefix}/intents/{key}.json"

    def read(self, key: str) -> tuple[Intent | None, int]:
        """(record, generation); (None, 0) only when the object does not exist."""
        obj, generation = gcs.read_json(self.client, self.uri(key), what="an intent record")
        return (Intent.from_dict(obj) if obj is not None else None), generation

    def save(self, intent: Intent, generation: int) -> int:
        """Writes iff the stored generation is still ``generation`` (0: must not exist); raises
        ``gcs.GenerationMismatch`` when another writer got there first."""
        return gcs.write_json(self.client, self.uri(intent.key), asdict(intent), if_generation_match=generation)


# ------------------------------------------------------------------------------------------------ launcher
@dataclass
class Launch:
    """What :meth:`JobLauncher.launch` did.

    :param status: the job's status: the one created, or the earlier try's job it returns or reattaches to.
    :param decision: what was decided, and why (create, reattach, return, cancel_and_create).
    :param intent: the intent record as saved.
    """

    status: JobStatus
    decision: Decision
    intent: Intent


class JobLauncher:
    """Submit-or-reattach for one task instance.

    :param backend: a :class:`~gemini_tuning.backends.contract.TuningBackend`.
    :param store: where intent records live (:class:`IntentStore` or anything with its ``read``/``save``).
    :param key: the task instance's run-stable identity key (``core.identity.identity_key``).
    :param fingerprint: the fingerprint of the job's inputs (``core.identity.fingerprint``).
    :param policy: ``cancel_and_resubmit`` or ``fail``: what to do when a retry finds a live job with other inputs.
    :param task: dag_id, task_id, run_id, map_index, stored in the record for people reading it.
    :param create_grace_seconds: how long an intent without a job name may be a create still in flight.
    :param create_attempts: create calls at most, each retry after looking the job up first (sets the attempts of
        ``create_retry``).
    :param create_retry: the create call's :class:`~gemini_tuning.backends.retry.RetryPolicy` (default
        :data:`CREATE_RETRY`); only transient errors (``backends.errors.is_transient``) are retried.
    :param sleep: the sleep function (tests pass a no-op): the grace wait and the create's retry pauses.
    :param continuation: ``{"raw", "model_version", "checkpoint_id"}`` kept in the record, so that a retry or a clear
        of the task reuses what the first try resolved ``continue_from`` to (a promotion in between must not
        make it a different job).
    """

    def __init__(self, backend: TuningBackend, store: IntentStore, *, key: str, fingerprint: str,
                 policy: str = "cancel_and_resubmit", task: dict | None = None, create_grace_seconds: float = 120.0,
                 create_attempts: int | None = None, create_retry: retry.RetryPolicy | None = None, sleep=time.sleep,
                 continuation: dict | None = None):
        self.continuation = continuation
        self.backend = backend
        self.store = store
        self.key = key
        self.fingerprint = fingerprint
        self.policy = policy
        self.task = task or {}
        self.create_grace_seconds = create_grace_seconds
        policy = create_retry or CREATE_RETRY
        if create_attempts is not None:
            policy = replace(policy, attempts=int(create_attempts))
        if policy.attempts < 1:
            raise ValueError(f"create_attempts must be >= 1, got {policy.attempts}")
        self.create_retry = policy
        self.sleep = sleep

    def _identity(self, attempt: int | None) -> JobIdentity:
        return JobIdentity(self.key, self.fingerprint, attempt)

    def _existing(self, intent: Intent | None) -> tuple[JobStatus | None, str | None]:
        """The job an earlier try started, and the fingerprint it was started with."""
        if intent is None:
            job = self.backend.find(self._identity(None))
            return job, (self.backend.fingerprint_of(job) if job else None)
        if intent.job_name:
            try:
                return self.backend.get(intent.job_name), intent.fingerprint
            except NotFoundError:
                log.warning("recorded job %s no longer exists", intent.job_name)
                return None, intent.fingerprint
        # an intent without a job name: a try died inside create. Did the create go through?
        deadline = intent.created_at + self.create_grace_seconds
        while True:
            job = self.backend.find(self._identity(intent.attempt))
            if job is not None:
                log.info("recovered %s from an intent with no recorded job name (attempt %d)", job.name,
                         intent.attempt)
                return job, intent.fingerprint
            if time.time() >= deadline:
                return None, intent.fingerprint
            log.info("an intent for attempt %d is %.0fs old with no job yet; waiting for a concurrent create",
                     intent.attempt, time.time() - intent.created_at)
            self.sleep(min(10.0, max(1.0, deadline - time.time())))

    def _create(self, spec: TuningSpec, attempt: int) -> JobStatus:
        """Create the job, through ``backends.retry.call`` with :attr:`create_retry`: a transient failure is
        retried after the pause, and each retry first looks the job up (an ambiguous failure - reset, timeout,
        5xx - may have created it: then that job is returned, nothing is paid twice). A create refused as already
        existing returns the job found under this identity."""
        identity = self._identity(attempt)
        calls = 0

        def once() -> JobStatus:
            nonlocal calls
            calls += 1
            if calls > 1:                       # the previous create failed ambiguously: did it go through?
                job = self.backend.find(identity)
                if job is not None:
                    log.info("found %s created by the create call that failed", job.name)
                    return job
            try:
                return self.backend.create(spec, identity)
            except AlreadyExistsError:
                job = self.backend.find(identity)
                if job is not None:
                    return job
                raise

        def on_retry(n: int, exc: BaseException, pause: float) -> None:
            log.warning("create failed ambiguously (attempt %d: %s); checking whether the job exists before "
                        "retrying in %.1fs", n, exc, pause)

        return retry.call(self.create_retry, once, on_retry=on_retry, sleep=self.sleep)

    def launch(self, spec: TuningSpec) -> Launch:
        """Decide, record and (only when the decision says so) create. Returns the job and the decision."""
        for _ in range(5):  # compare-and-swap conflicts with a concurrent try: re-read and decide again
            intent, generation = self.store.read(self.key)
            existing, existing_fp = self._existing(intent)
            decision = decide_launch(existing, existing_fp, self.fingerprint, self.policy)
            log.info("decision: %s (%s)", decision.action, decision.reason)
            if decision.action == "fail":
                raise FingerprintChanged(decision.reason)
            if decision.action in ("return", "reattach"):
                if intent is None or intent.job_name != existing.poll_name:
                    intent = intent or Intent(self.key, self.fingerprint, 1, self.backend.kind, task=self.task,
                                              continuation=self.continuation)
                    intent.job_name = existing.poll_name
                    try:
                        self.store.save(intent, generation)
                    except gcs.GenerationMismatch:
                        continue
                return Launch(existing, decision, intent)
            if decision.action == "cancel_and_create":
                self.backend.cancel(existing.poll_name)
                log.warning("cancelled %s: its inputs changed", existing.name)
            # an intent with no job behind it keeps its attempt number, so a late create is still found by it
            reuse = intent is not None and intent.job_name is None
            attempt = intent.attempt if reuse else (intent.attempt + 1 if intent else 1)
            history = list(intent.history) if intent else []
            if intent is not None and intent.job_name:
                history.append({"attempt": intent.attempt, "job_name": intent.job_name,
                                "fingerprint": intent.fingerprint, "state": existing.state if existing else None})
            new = Intent(self.key, self.fingerprint, attempt, self.backend.kind, task=self.task, history=history,
                         continuation=self.continuation)
            try:
                generation = self.store.save(new, generation)
            except gcs.GenerationMismatch:
                continue
            status = self._create(spec, attempt)
            new.job_name = status.poll_name
            try:
                self.store.save(new, generation)
            except gcs.GenerationMismatch:
                log.warning("intent for %s changed while creating %s; it is recorded on the service", self.key,
                            status.name)
            log.info("created %s (attempt %d)", status.name, attempt)
            return Launch(status, decision, new)
        raise RuntimeError(f"could not settle the intent record for {self.key}: too many concurrent updates")
