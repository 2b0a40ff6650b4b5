"""The deferred wait for a tuning job (Vertex AI or Gemini API): the shared job trigger, reading the loss curve."""

from __future__ import annotations

from typing import Any

from .base_job import BaseJobTrigger


class TuningJobTrigger(BaseJobTrigger):
    """Polls a tuning job; logs state, progress and the latest loss on every poll. A loss curve kept apart from the
    job (Vertex: its metrics file) is read when progress moved, at most every two minutes, and at the end
    (``services.tuning.wait``); a status that carries its own loss (Gemini API) is used as it is.

    Takes every argument of :class:`~gemini_tuning.triggers.base_job.BaseJobTrigger`, and:

    :param backend: ``vertex`` or ``gemini_api`` (``core.tuning.BACKENDS``).
    """

    read_loss = True

    def __init__(self, *, backend: str, **kwargs):
        super().__init__(**kwargs)
        self.backend = backend

    def kwargs(self) -> dict[str, Any]:
        return {"backend": self.backend, **super().kwargs()}

    def make_backend(self, hook):
        return hook.backend(self.backend, project_id=self.project_id, location=self.location)
