"""The contracts every backend implements. The services and the Airflow layer speak only these.

A tuning backend is one class with the methods of :class:`TuningBackend`; adding a service (a third backend) means
writing that class and naming it in the hook's builder table (``hooks.GeminiTuningHook``) — nothing in the launcher,
the trigger or the operators changes. Each backend owns its identity mechanics: Vertex AI puts the identity in
labels and finds jobs by a label filter; the Gemini API has no labels, so its tuned-model id is derived from the
identity and a repeated create answers 409.

A batch-prediction backend (:class:`BatchJobBackend`) is the same shape for Vertex batch prediction jobs, whose
identity travels in the display name.

Sync methods serve the operators (worker), async ones (``a…``) the triggers; each backend writes every request and
every response parse once and shares them between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..core.generation import GenerationSettings
from ..core.identity import ATTEMPT_LABEL, FINGERPRINT_LABEL, KEY_LABEL
from ..core.states import JobStatus
from ..core.tuning import TuningSpec


@dataclass(frozen=True)
class JobIdentity:
    """Who a job belongs to: the run-stable key of one task instance, its input fingerprint, and the attempt
    (1, 2, … after failed or cancelled jobs). ``attempt`` None in a lookup means "any attempt, the newest".

    :param key: the run-stable identity key of the task instance (``core.identity.identity_key``), a label value.
    :param fingerprint: the digest of the job's inputs; labelled at create, never filtered on by :meth:`lookup_labels`.
    :param attempt: 1, 2, … (a new attempt after a failed or cancelled job); None: any attempt, the newest.
    """

    key: str
    fingerprint: str
    attempt: int | None = None

    def labels(self) -> dict[str, str]:
        """The identity as Google labels (Vertex), put on the job at create."""
        return {**self.lookup_labels(), FINGERPRINT_LABEL: self.fingerprint}

    def lookup_labels(self) -> dict[str, str]:
        """What :meth:`TuningBackend.find` filters on: the key, and the attempt when set (never the fingerprint:
        a job created with other inputs must still be found, so the launcher can decide about it)."""
        labels = {KEY_LABEL: self.key}
        if self.attempt is not None:
            labels[ATTEMPT_LABEL] = str(self.attempt)
        return labels

    def marker(self) -> str:
        """The identity as text, for services without labels (Gemini API: the tuned model's description)."""
        return f"[gemini-tuning key={self.key} fp={self.fingerprint} attempt={self.attempt}]"


@runtime_checkable
class TuningBackend(Protocol):
    """One tuning service. ``kind`` is its name in ``core.tuning.BACKENDS``."""

    kind: str

    def create(self, spec: TuningSpec, identity: JobIdentity) -> JobStatus:
        """Start a job carrying ``identity``; one call, never retried here (the launcher looks an ambiguous failure
        up with :meth:`find` first). A create the service already has raises ``AlreadyExistsError``."""

    def find(self, identity: JobIdentity) -> JobStatus | None:
        """The job created for ``identity.key`` (and ``identity.attempt`` when set) on the service itself: the
        newest live one, else the newest; None when there is none."""

    def fingerprint_of(self, status: JobStatus) -> str | None:
        """The input fingerprint a job was created with, when the service keeps it (None: unknown)."""

    def get(self, name: str) -> JobStatus: ...

    async def aget(self, name: str) -> JobStatus: ...

    def cancel(self, name: str) -> None: ...

    async def acancel(self, name: str) -> None: ...

    def with_loss(self, status: JobStatus) -> JobStatus:
        """``status`` with its loss curve, when the service keeps it apart from the job (best effort: a failed read
        returns ``status`` unchanged; loss is reporting, never control)."""

    async def awith_loss(self, status: JobStatus) -> JobStatus: ...

    async def agenerate(self, model: str, prompt: str, settings: GenerationSettings) -> str:
        """One generateContent call on a tuned (or base) model; not retried here (the evaluation engine does)."""

    async def aclose(self) -> None:
        """Close the HTTP sessions of the running event loop."""

    def console_url(self, name: str) -> str: ...


@runtime_checkable
class BatchJobBackend(Protocol):
    """Batch prediction jobs (evaluation in batch mode)."""

    kind: str

    def create(self, model: str, src_uri: str, dest_prefix: str, display_name: str) -> JobStatus: ...

    def find(self, display_name: str) -> Sequence[JobStatus]: ...

    def get(self, name: str) -> JobStatus: ...

    async def aget(self, name: str) -> JobStatus: ...

    def cancel(self, name: str) -> None: ...

    async def acancel(self, name: str) -> None: ...

    async def aclose(self) -> None: ...
