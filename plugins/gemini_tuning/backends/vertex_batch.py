"""Vertex AI batch prediction jobs through google-genai (evaluation in batch mode); a
:class:`~gemini_tuning.backends.contract.BatchJobBackend`.

google-genai's batch jobs carry no labels, so a job's identity travels in its display name and :meth:`find` lists
by it. Each request and the response parse (:func:`batch_status`) are written once for the sync and async paths.
"""

from __future__ import annotations

from ..core.names import validate_resource_name
from ..core.states import JobStatus, normalize_state
from . import retry
from .vertex import GenaiBackend, asdk_call, sdk_call


def batch_status(job) -> JobStatus:
    """google.genai.types.BatchJob -> JobStatus (``output_uri``: the folder holding ``predictions.jsonl``)."""
    err = job.error
    return JobStatus(backend="vertex", name=job.name,
                     state=normalize_state(job.state) if job.state is not None else "JOB_STATE_UNSPECIFIED",
                     error_code=getattr(err, "code", None) if err else None,
                     error_message=getattr(err, "message", None) if err else None,
                     create_time=job.create_time.isoformat() if job.create_time else None,
                     end_time=job.end_time.isoformat() if job.end_time else None,
                     output_uri=job.output_info.gcs_output_directory if job.output_info else None)


class VertexBatchPredictionBackend(GenaiBackend):
    """Batch prediction jobs on Vertex AI; takes :class:`~gemini_tuning.backends.vertex.GenaiBackend`'s
    arguments."""

    def create(self, model: str, src_uri: str, dest_prefix: str, display_name: str) -> JobStatus:
        """``model``: a tuned Model Registry name (``…/models/M@1``) or a base model id. Not retried (the caller
        looks jobs up by display name first)."""
        from google.genai import types

        validate_resource_name(model, ("model", "endpoint", "base_model"), field="batch prediction model")
        config = types.CreateBatchJobConfig(dest=dest_prefix, display_name=display_name)
        return batch_status(sdk_call(lambda: self.client.batches.create(model=model, src=src_uri, config=config)))

    def find(self, display_name: str) -> list[JobStatus]:
        config = {"filter": f'display_name="{display_name}"', "page_size": 100}
        return retry.call(self.retry_policy, lambda: sdk_call(
            lambda: [batch_status(j) for j in self.client.batches.list(config=config)]))

    def get(self, name: str) -> JobStatus:
        validate_resource_name(name, "batch_job")
        return retry.call(self.retry_policy, lambda: sdk_call(lambda: batch_status(self.client.batches.get(name=name))))

    def cancel(self, name: str) -> None:
        validate_resource_name(name, "batch_job")
        retry.call(self.retry_policy, lambda: sdk_call(lambda: self.client.batches.cancel(name=name)))

    async def aget(self, name: str) -> JobStatus:
        validate_resource_name(name, "batch_job")
        return batch_status(await asdk_call(lambda: self.client.aio.batches.get(name=name)))

    async def acancel(self, name: str) -> None:
        validate_resource_name(name, "batch_job")
        await retry.acall(self.retry_policy, lambda: asdk_call(lambda: self.client.aio.batches.cancel(name=name)))

    async def awith_loss(self, status: JobStatus) -> JobStatus:
        return status            # a batch job has no loss curve

    def console_url(self, name: str) -> str:
        job_id = name.rsplit("/", 1)[-1]
        return (f"https://console.cloud.google.com/vertex-ai/locations/{self.location}/batch-predictions/{job_id}"
                f"?project={self.project}")
