"""The deferred wait for a Vertex AI batch prediction job (evaluation in batch mode)."""

from __future__ import annotations

from .base_job import BaseJobTrigger


class BatchPredictionJobTrigger(BaseJobTrigger):
    """Polls a batch prediction job. Takes every argument of
    :class:`~gemini_tuning.triggers.base_job.BaseJobTrigger`. Batch jobs have no loss curve (``read_loss``)."""

    read_loss = False

    def make_backend(self, hook):
        backend = hook.vertex_batch(self.project_id, self.location)
        _ = backend.client  # google-genai polls batch jobs: build it here, in the worker thread, not on the loop
        return backend
