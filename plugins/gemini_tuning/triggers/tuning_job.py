"""The deferred wait for a tuning job (Vertex AI or Gemini API): the shared job trigger plus the loss curve."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core.states import JobStatus
from ..core.wait import LossThrottle
from . import base_job
from .base_job import BaseJobTrigger


class TuningJobTrigger(BaseJobTrigger):
    """Polls a tuning job; logs state, progress and the latest loss on every poll.

    Takes every argument of :class:`~gemini_tuning.triggers.base_job.BaseJobTrigger`, and:

    :param backend: ``vertex`` or ``gemini_api`` (``core.tuning.BACKENDS``).
    :param read_metrics: read the loss curve when the service keeps it apart from the job (default). Kept so that
        a trigger serialized by 0.1.0 before this module moved (which passed it; False for batch jobs) resumes.
    """

    def __init__(self, *, backend: str, read_metrics: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.backend = backend
        self.read_metrics = read_metrics
        self._loss = LossThrottle()
        self._points: tuple = ()
        self._validation: tuple = ()

    def kwargs(self) -> dict[str, Any]:
        return {"backend": self.backend, "read_metrics": self.read_metrics, **super().kwargs()}

    def make_backend(self, hook):
        return hook.backend(self.backend, project_id=self.project_id, location=self.location)

    async def enrich(self, backend, status: JobStatus) -> JobStatus:
        """A loss curve kept apart from the job (Vertex: its metrics file) is read when progress moved, at most
        every two minutes, and at the end; a status that carries its own loss (Gemini API) is left as it is."""
        if status.metrics_uri is None or not self.read_metrics:
            return status
        if self._loss.due(status, base_job._now()):
            self._loss.mark(status, base_job._now())
            read = await backend.awith_loss(status)
            self._points = read.loss_history or self._points
            self._validation = read.validation_history or self._validation
        return dataclasses.replace(status, loss_history=self._points or status.loss_history,
                                   validation_history=self._validation or status.validation_history)
