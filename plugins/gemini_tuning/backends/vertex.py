"""Vertex AI tuning jobs through google-genai (``Client(vertexai=True)``; ``client.aio`` on the async side).

Request definitions (``_create_args``, ``_list_config``) and the response parse (``job_status``) are written once
and used by both the sync methods (operators) and the async ones (triggers).
"""

from __future__ import annotations

import json
import logging
from functools import cached_property

from ..core.generation import GenerationSettings
from ..core.states import JobStatus, LossPoint, normalize_state
from ..core.tuning import ADAPTER_SIZES, TuningSpec
from . import retry
from .errors import NotFoundError, TuningApiError, retry_after_of

log = logging.getLogger(__name__)


def _api_error(exc: Exception) -> Exception:
    """google.genai.errors.APIError -> our error types (keeps transport errors as they are)."""
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        cls = NotFoundError if exc.code == 404 else TuningApiError
        return cls(exc.code, exc.message or str(exc), status=exc.status, retry_after=retry_after_of(exc))
    return exc


def job_status(job) -> JobStatus:
    """google.genai.types.TuningJob -> JobStatus (the one parse, for sync and async)."""
    stats = getattr(getattr(job, "tuning_data_stats", None), "supervised_tuning_data_stats", None)
    total = getattr(stats, "tuning_step_count", None) if stats else None
    meta = getattr(job, "tuning_job_metadata", None)
    done = getattr(meta, "completed_step_count", None) if meta else None
    state = normalize_state(job.state) if job.state is not None else "JOB_STATE_UNSPECIFIED"
    if state == "JOB_STATE_SUCCEEDED" and total:
        done = total
    pct = round(100.0 * done / total, 1) if (done is not None and total) else None
    tuned = job.tuned_model
    err = job.error
    return JobStatus(
        backend="vertex", name=job.name, state=state,
        sub_state=normalize_sub_state(getattr(job, "tuning_job_state", None)),
        completed_steps=done, total_steps=total, progress_percent=pct,
        tuned_model=getattr(tuned, "model", None) if tuned else None,
        endpoint=getattr(tuned, "endpoint", None) if tuned else None,
        error_code=getattr(err, "code", None) if err else None,
        error_message=getattr(err, "message", None) if err else None,
        labels=dict(job.labels or {}),
        create_time=job.create_time.isoformat() if job.create_time else None,
        end_time=job.end_time.isoformat() if job.end_time else None,
        example_count=getattr(stats, "tuning_dataset_example_count", None) if stats else None,
        metrics_uri=getattr(job, "gcs_metrics_uri", None),
    )


def batch_status(job) -> JobStatus:
    """google.genai.types.BatchJob (Vertex batch prediction) -> JobStatus."""
    err = job.error
    out = job.output_info.gcs_output_directory if job.output_info else None
    return JobStatus(backend="vertex", name=job.name,
                     state=normalize_state(job.state) if job.state is not None else "JOB_STATE_UNSPECIFIED",
                     error_code=getattr(err, "code", None) if err else None,
                     error_message=getattr(err, "message", None) if err else None,
                     create_time=job.create_time.isoformat() if job.create_time else None,
                     end_time=job.end_time.isoformat() if job.end_time else None, output_uri=out)


def _is_batch(name: str) -> bool:
    return "/batchPredictionJobs/" in name


def normalize_sub_state(value) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value))


def parse_metrics(text: str) -> tuple[LossPoint, ...]:
    """Training loss from the job's metrics file (``gcsMetricsUri``).

    [unverified format] Google does not document the file; this reads JSONL rows carrying a step and one of
    ``train_total_loss`` / ``/train_total_loss`` / ``loss`` (the metric names the Vertex console shows), which is
    what the emulator writes. Rows it cannot read are skipped, never fatal: loss is reporting, not control.
    """
    points = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        loss = next((row[k] for k in ("train_total_loss", "/train_total_loss", "loss") if k in row), None)
        step = row.get("step")
        if isinstance(loss, (int, float)) and step is not None:
            points.append(LossPoint(int(step), int(row["epoch"]) if row.get("epoch") is not None else None, float(loss)))
    return tuple(sorted(points, key=lambda p: p.step))


class VertexTuningBackend:
    kind = "vertex"

    def __init__(self, *, project: str, location: str, credentials, base_url: str | None = None,
                 retry_policy: retry.RetryPolicy | None = None):
        self.project, self.location, self.credentials, self.base_url = project, location, credentials, base_url
        self.retry_policy = retry_policy or retry.RetryPolicy()

    @cached_property
    def client(self):
        from google import genai
        from google.genai import types

        http = types.HttpOptions(base_url=self.base_url) if self.base_url else None
        return genai.Client(vertexai=True, project=self.project, location=self.location,
                            credentials=self.credentials, http_options=http)

    # ------------------------------------------------------------------ request definitions
    @staticmethod
    def _create_args(spec: TuningSpec, labels: dict) -> dict:
        from google.genai import types

        cfg = {"labels": {**spec.labels, **labels}}
        if spec.display_name:
            cfg["tuned_model_display_name"] = spec.display_name
        if spec.description:
            cfg["description"] = spec.description
        if spec.epochs is not None:
            cfg["epoch_count"] = int(spec.epochs)
        if spec.learning_rate_multiplier is not None:
            cfg["learning_rate_multiplier"] = float(spec.learning_rate_multiplier)
        if spec.adapter_size is not None:
            cfg["adapter_size"] = types.AdapterSize(ADAPTER_SIZES[spec.adapter_size])
        if spec.validation_uri:
            cfg["validation_dataset"] = types.TuningValidationDataset(gcs_uri=spec.validation_uri)
        return {"base_model": spec.base_model, "training_dataset": types.TuningDataset(gcs_uri=spec.training_uri),
                "config": types.CreateTuningJobConfig(**cfg)}

    @staticmethod
    def _list_config(labels: dict, page_size: int = 100) -> dict:
        flt = " AND ".join(f'labels.{k}="{v}"' for k, v in sorted(labels.items()))
        return {"filter": flt, "page_size": page_size}

    # ------------------------------------------------------------------ sync (operators)
    def create(self, spec: TuningSpec, labels: dict) -> JobStatus:
        """One create call, never retried here: the caller recovers an ambiguous failure by listing labels."""
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "tuning is experimental"
                return job_status(self.client.tunings.tune(**self._create_args(spec, labels)))
        except Exception as exc:  # noqa: BLE001
            raise _api_error(exc) from exc

    def get(self, name: str) -> JobStatus:
        def once():
            try:
                if _is_batch(name):
                    return batch_status(self.client.batches.get(name=name))
                return job_status(self.client.tunings.get(name=name))
            except Exception as exc:  # noqa: BLE001
                raise _api_error(exc) from exc

        return retry.call(self.retry_policy, once)

    def find(self, labels: dict) -> list[JobStatus]:
        def once():
            try:
                return [job_status(j) for j in self.client.tunings.list(config=self._list_config(labels))]
            except Exception as exc:  # noqa: BLE001
                raise _api_error(exc) from exc

        return retry.call(self.retry_policy, once)

    def cancel(self, name: str) -> None:
        def once():
            try:
                (self.client.batches if _is_batch(name) else self.client.tunings).cancel(name=name)
            except Exception as exc:  # noqa: BLE001
                raise _api_error(exc) from exc

        retry.call(self.retry_policy, once)

    # ------------------------------------------------------------------ async (triggers)
    async def aget(self, name: str) -> JobStatus:
        try:
            if _is_batch(name):
                return batch_status(await self.client.aio.batches.get(name=name))
            return job_status(await self.client.aio.tunings.get(name=name))
        except Exception as exc:  # noqa: BLE001
            raise _api_error(exc) from exc

    async def acancel(self, name: str) -> None:
        async def once():
            try:
                await (self.client.aio.batches if _is_batch(name) else self.client.aio.tunings).cancel(name=name)
            except Exception as exc:  # noqa: BLE001
                raise _api_error(exc) from exc

        await retry.acall(self.retry_policy, once)

    # ------------------------------------------------------------------ batch prediction (evaluation, batch mode)
    def create_batch(self, model: str, src_uri: str, dest_prefix: str, display_name: str) -> JobStatus:
        """``model``: a tuned Model Registry name (``…/models/M@1``) or a base model id. Not retried (the caller
        looks jobs up by display name first)."""
        from google.genai import types

        try:
            return batch_status(self.client.batches.create(
                model=model, src=src_uri, config=types.CreateBatchJobConfig(dest=dest_prefix, display_name=display_name)))
        except Exception as exc:  # noqa: BLE001
            raise _api_error(exc) from exc

    def find_batches(self, display_name: str) -> list[JobStatus]:
        """Batch jobs carry no labels through google-genai: identity travels in the display name."""
        def once():
            try:
                return [batch_status(j) for j in self.client.batches.list(
                    config={"filter": f'display_name="{display_name}"', "page_size": 100})]
            except Exception as exc:  # noqa: BLE001
                raise _api_error(exc) from exc

        return retry.call(self.retry_policy, once)

    @staticmethod
    def _generate_config(settings: GenerationSettings):
        from google.genai import types

        return types.GenerateContentConfig(temperature=settings.temperature, top_p=settings.top_p,
                                           max_output_tokens=settings.max_output_tokens, seed=settings.seed,
                                           system_instruction=settings.system_instruction)

    async def agenerate(self, model: str, prompt: str, settings: GenerationSettings) -> str:
        """``model``: the tuned model's endpoint, or a base model id. Not retried here (the engine does)."""
        try:
            resp = await self.client.aio.models.generate_content(model=model, contents=prompt,
                                                                 config=self._generate_config(settings))
        except Exception as exc:  # noqa: BLE001
            raise _api_error(exc) from exc
        return resp.text or ""

    async def aclose(self) -> None:
        """Closes the async HTTP sessions of this event loop (call before the loop ends)."""
        if "client" in self.__dict__:
            await self.client.aio.aclose()
            del self.__dict__["client"]

    def console_url(self, name: str) -> str:
        job_id = name.rsplit("/", 1)[-1]
        return (f"https://console.cloud.google.com/vertex-ai/generative/language/locations/{self.location}"
                f"/tuning/tuningJob/{job_id}?project={self.project}")
