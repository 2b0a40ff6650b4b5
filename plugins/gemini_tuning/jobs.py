"""Submit-or-reattach: the idempotent heart of the tuning operator, free of Airflow.

Every try of one task instance resolves to the same decision (``core.identity.decide``) about the job an earlier
try started: reattach to an active one with the same inputs, return a succeeded one, create anew after a failed or
cancelled one, and follow ``on_fingerprint_change`` when the inputs changed. The record of intent is written before
the paid call; an intent without a job name (a crash inside create) is resolved by the job's labels (Vertex) or its
deterministic id (Gemini API) before anything new is paid for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .backends import gcs
from .backends.errors import AlreadyExistsError, NotFoundError, is_transient
from .core.identity import ATTEMPT_LABEL, FINGERPRINT_LABEL, KEY_LABEL, Decision, decide
from .core.states import JobStatus
from .core.tuning import TuningSpec
from .intents import Intent, IntentStore

log = logging.getLogger(__name__)


class FingerprintChanged(RuntimeError):
    pass


@dataclass
class Launch:
    status: JobStatus
    decision: Decision
    intent: Intent


def marker(key: str, fingerprint: str, attempt: int) -> str:
    """Gemini API tuned models carry no labels: identity travels in the description."""
    return f"[gemini-tuning key={key} fp={fingerprint} attempt={attempt}]"


class JobLauncher:
    def __init__(self, backend, store: IntentStore, *, key: str, fingerprint: str, policy: str = "cancel_and_resubmit",
                 task: dict | None = None, create_grace_seconds: float = 120.0, create_attempts: int = 3,
                 sleep=time.sleep):
        self.backend, self.store = backend, store
        self.key, self.fingerprint, self.policy = key, fingerprint, policy
        self.task = task or {}
        self.create_grace_seconds, self.create_attempts, self.sleep = create_grace_seconds, create_attempts, sleep

    # ------------------------------------------------------------------------------------------------ lookup
    def _labels(self, attempt: int | None = None) -> dict:
        labels = {KEY_LABEL: self.key}
        if attempt is not None:
            labels[ATTEMPT_LABEL] = str(attempt)
        return labels

    def _by_identity(self, attempt: int | None) -> JobStatus | None:
        """The job created for this task instance (and attempt), found on the service itself."""
        if self.backend.kind == "vertex":
            jobs = self.backend.find(self._labels(attempt))
            if not jobs:
                return None
            live = [j for j in jobs if not j.terminal]
            return max(live or jobs, key=lambda j: j.create_time or "")
        from .backends.gemini_api import tuned_model_id

        candidates = [attempt] if attempt is not None else range(1, 51)
        found = None
        for n in candidates:
            try:
                found = self.backend.get(f"tunedModels/{tuned_model_id(self.key, n)}")
            except NotFoundError:
                if attempt is None:
                    break
        return found

    def _existing(self, intent: Intent | None) -> tuple[JobStatus | None, str | None]:
        if intent is None:
            job = self._by_identity(None)
            return job, (job.labels.get(FINGERPRINT_LABEL) if job else None)
        if intent.job_name:
            try:
                return self.backend.get(intent.job_name), intent.fingerprint
            except NotFoundError:
                log.warning("recorded job %s no longer exists", intent.job_name)
                return None, intent.fingerprint
        # intent without a job name: a try died inside create. Did the create go through?
        deadline = intent.created_at + self.create_grace_seconds
        while True:
            job = self._by_identity(intent.attempt)
            if job is not None:
                log.info("recovered %s from an intent with no recorded job name (attempt %d)", job.name,
                         intent.attempt)
                return job, intent.fingerprint
            if time.time() >= deadline:
                return None, intent.fingerprint
            log.info("an intent for attempt %d is %.0fs old with no job yet; waiting for a concurrent create",
                     intent.attempt, time.time() - intent.created_at)
            self.sleep(min(10.0, max(1.0, deadline - time.time())))

    # ------------------------------------------------------------------------------------------------ create
    def _create(self, spec: TuningSpec, attempt: int, examples_loader) -> JobStatus:
        labels = {**self._labels(attempt), FINGERPRINT_LABEL: self.fingerprint}
        for n in range(1, self.create_attempts + 1):
            try:
                if self.backend.kind == "vertex":
                    return self.backend.create(spec, labels)
                from .backends.gemini_api import tuned_model_id

                return self.backend.create(spec, examples_loader(), model_id=tuned_model_id(self.key, attempt),
                                           marker=marker(self.key, self.fingerprint, attempt))
            except AlreadyExistsError:
                job = self._by_identity(attempt)
                if job is not None:
                    return job
                raise
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc) or n == self.create_attempts:
                    raise
                log.warning("create failed ambiguously (%s); checking whether the job exists before retrying", exc)
                self.sleep(min(30.0, 2.0 ** n))
                job = self._by_identity(attempt)
                if job is not None:
                    return job
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------------------------ the flow
    def launch(self, spec: TuningSpec, examples_loader=None) -> Launch:
        for _ in range(5):  # compare-and-swap conflicts with a concurrent try: re-read and decide again
            intent, generation = self.store.read(self.key)
            existing, existing_fp = self._existing(intent)
            decision = decide(existing, existing_fp, self.fingerprint, self.policy)
            log.info("decision: %s (%s)", decision.action, decision.reason)
            if decision.action == "fail":
                raise FingerprintChanged(decision.reason)
            if decision.action in ("return", "reattach"):
                if intent is None or intent.job_name != _ref(existing):
                    intent = intent or Intent(self.key, self.fingerprint, 1, self.backend.kind, task=self.task)
                    intent.job_name = _ref(existing)
                    try:
                        self.store.save(intent, generation)
                    except gcs.GenerationMismatch:
                        continue
                return Launch(existing, decision, intent)
            if decision.action == "cancel_and_create":
                self.backend.cancel(_ref(existing))
                log.warning("cancelled %s: its inputs changed", existing.name)
            # an intent with no job behind it keeps its attempt number, so a late create is still found by it
            reuse = intent is not None and intent.job_name is None
            attempt = intent.attempt if reuse else (intent.attempt + 1 if intent else 1)
            history = list(intent.history) if intent else []
            if intent is not None and intent.job_name:
                history.append({"attempt": intent.attempt, "job_name": intent.job_name,
                                "fingerprint": intent.fingerprint, "state": existing.state if existing else None})
            new = Intent(self.key, self.fingerprint, attempt, self.backend.kind, task=self.task, history=history)
            try:
                generation = self.store.save(new, generation)
            except gcs.GenerationMismatch:
                continue
            status = self._create(spec, attempt, examples_loader)
            new.job_name = _ref(status)
            try:
                self.store.save(new, generation)
            except gcs.GenerationMismatch:
                log.warning("intent for %s changed while creating %s; it is recorded by its labels", self.key,
                            status.name)
            log.info("created %s (attempt %d)", status.name, attempt)
            return Launch(status, decision, new)
        raise RuntimeError(f"could not settle the intent record for {self.key}: too many concurrent updates")


def _ref(status: JobStatus) -> str:
    """What to poll: the Vertex job, or the Gemini API operation (it carries progress and loss)."""
    return status.operation or status.name
