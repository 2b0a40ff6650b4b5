"""Vertex AI tuning jobs: google-genai (``Client(vertexai=True)``) for create, list and generate on the worker; a
plain authorized REST GET for the status poll and the cancel, on both sides.

Why the poll is not google-genai: a status poll runs every few minutes for every deferred job in the triggerer.
Through google-genai it built the pydantic ``TuningJob`` model each time and kept the SDK (≈55 MiB) loaded in the
triggerer; measured by ``scripts/bench_tuning_wait.py --part c``. The REST poll is one request definition
(:func:`get_job_request`) and one parse (:func:`parse_job`) for the sync and async paths, driven by
``backends.rest.RestClient``. ``job_status`` (the parse of google-genai's object, for what create returns) and
:func:`parse_job` must agree field by field: ``tests/unit/test_backend_requests.py`` checks them on recorded jobs.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from functools import cached_property

from ..core.generation import GenerationSettings
from ..core.identity import FINGERPRINT_LABEL
from ..core.names import check_base_url, validate_location, validate_project, validate_resource_name
from ..core.states import Checkpoint, JobStatus, normalize_state
from ..core.tuning import ADAPTER_SIZES, TuningSpec
from . import gcs, retry
from .contract import JobIdentity
from .errors import NotFoundError, TuningApiError, retry_after_of
from .rest import Request, RestClient, bearer_headers, google_api_error, single
from .vertex_metrics import (  # noqa: F401  (re-exported: the metrics file's parse moved to its own module)
    METRICS_SUFFIXES,
    TRAIN_LOSS_KEYS,
    VALIDATION_LOSS_KEYS,
    MetricPoints,
    _with_points,
    parse_metrics,
)

API_VERSION = "v1beta1"        # google-genai's Vertex default; it has tuningJobState and tuningJobMetadata

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
    pre = getattr(job, "pre_tuned_model", None)
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
        checkpoints=tuple(Checkpoint(str(c.checkpoint_id), _int(c.epoch), _int(c.step), c.endpoint)
                          for c in (getattr(tuned, "checkpoints", None) or ())),
        continued_from=_source(getattr(pre, "tuned_model_name", None), getattr(pre, "checkpoint_id", None)),
        base_model=getattr(job, "base_model", None) or (getattr(pre, "base_model", None) if pre else None),
        billable_tokens=_int(getattr(stats, "total_billable_token_count", None)) if stats else None,
        dropped_count=_int(getattr(stats, "total_truncated_example_count", None)) if stats else None,
        dropped=_dropped(getattr(stats, "truncated_example_indices", None) if stats else None,
                         getattr(stats, "dropped_example_reasons", None) if stats else None),
    )


def _dropped(indices, reasons) -> tuple[tuple[int, str], ...]:
    """``truncatedExampleIndices`` (1-based, "a partial sample") paired with ``droppedExampleReasons`` ("for each
    index in truncated_example_indices"); a missing reason is empty."""
    reasons = list(reasons or ())
    return tuple((int(i), str(reasons[n]) if n < len(reasons) else "") for n, i in enumerate(indices or ()))


def _source(model: str | None, checkpoint: str | None) -> str | None:
    """``M@1`` or ``M@1 checkpoint 2``: where a continuous tuning job started."""
    if not model:
        return None
    return f"{model} checkpoint {checkpoint}" if checkpoint else model


def _int(value) -> int | None:
    return int(value) if value is not None else None        # int64 fields arrive as strings in REST JSON


def parse_job(body: dict) -> JobStatus:
    """A ``TuningJob`` as REST JSON (camelCase, int64 as strings) -> JobStatus; the twin of :func:`job_status`."""
    stats = (body.get("tuningDataStats") or {}).get("supervisedTuningDataStats") or {}
    total = _int(stats.get("tuningStepCount"))
    done = _int((body.get("tuningJobMetadata") or {}).get("completedStepCount"))
    state = normalize_state(body["state"]) if body.get("state") is not None else "JOB_STATE_UNSPECIFIED"
    if state == "JOB_STATE_SUCCEEDED" and total:
        done = total
    tuned = body.get("tunedModel") or {}
    err = body.get("error") or {}
    return JobStatus(
        backend="vertex", name=body["name"], state=state, sub_state=body.get("tuningJobState"),
        completed_steps=done, total_steps=total,
        progress_percent=round(100.0 * done / total, 1) if (done is not None and total) else None,
        tuned_model=tuned.get("model"), endpoint=tuned.get("endpoint"),
        error_code=err.get("code"), error_message=err.get("message"), labels=dict(body.get("labels") or {}),
        create_time=_rfc3339(body.get("createTime")), end_time=_rfc3339(body.get("endTime")),
        example_count=_int(stats.get("tuningDatasetExampleCount")), metrics_uri=body.get("gcsMetricsUri"),
        checkpoints=tuple(Checkpoint(str(c["checkpointId"]), _int(c.get("epoch")), _int(c.get("step")),
                                     c.get("endpoint")) for c in tuned.get("checkpoints") or ()),
        continued_from=_source((body.get("preTunedModel") or {}).get("tunedModelName"),
                               (body.get("preTunedModel") or {}).get("checkpointId")),
        base_model=body.get("baseModel") or (body.get("preTunedModel") or {}).get("baseModel"),
        billable_tokens=_int(stats.get("totalBillableTokenCount")),
        dropped_count=_int(stats.get("totalTruncatedExampleCount")),
        dropped=_dropped(stats.get("truncatedExampleIndices"), stats.get("droppedExampleReasons")))


def _rfc3339(value: str | None) -> str | None:
    """The same ISO form :func:`job_status` gives (``datetime.isoformat()`` of the parsed timestamp)."""
    if not value:
        return None
    head, dot, frac = value.replace("Z", "+00:00").partition(".")
    if dot:                                   # Google sends up to 9 fractional digits; Python reads 6
        digits = len(frac) - len(frac.lstrip("0123456789"))
        frac = frac[:min(digits, 6)] + frac[digits:]
    return datetime.fromisoformat(head + dot + frac).isoformat()


def job_name(name: str) -> str:
    """``name`` when it is a tuning job name (``core.names``); the REST poll and the cancel put it in the URL."""
    return validate_resource_name(name, "tuning_job")


def get_job_request(name: str) -> Request:
    return Request("GET", f"/{API_VERSION}/{name}")


def cancel_job_request(name: str) -> Request:
    return Request("POST", f"/{API_VERSION}/{name}:cancel", json={})


_BASE_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.-]{0,127}(?:@[A-Za-z0-9._-]{1,64})?$")


def base_model_id(model: str) -> str:
    """The bare publisher model id of ``model`` (``gemini-3.5-flash`` from ``publishers/google/models/…``,
    ``projects/…/publishers/google/models/…`` or ``models/…``); it goes into a URL path, so anything but a model
    id's characters is a ``ValueError`` naming the value."""
    name = str(model or "").strip()
    if "/models/" in name:
        name = name.rsplit("/models/", 1)[1]
    name = name.removeprefix("models/")
    if not _BASE_MODEL_ID.match(name):
        raise ValueError(f"base_model {model!r} is not a Gemini model id (e.g. gemini-3.5-flash)")
    return name


def base_model_request(model: str) -> Request:
    """``publishers.models.get`` of a Google base model (``aiplatform.publishers.models.get``): 200 with the
    PublisherModel while it is served, 404 once retired ("API requests referencing a retired model ID typically
    returns a 404 error", reference §5; the exact body is unverified)."""
    return Request("GET", f"/{API_VERSION}/publishers/google/models/{base_model_id(model)}")


def raise_for(status: int, text: str, headers) -> None:
    """Google's error envelope -> our errors (``rest.google_api_error``)."""
    if status >= 400:
        raise google_api_error(status, text, headers)


def vertex_base_url(location: str, base_url: str | None, field: str = "api_base_url") -> str:
    """The checked ``scheme://host[:port]`` of every Vertex AI call: ``base_url`` (the emulator) when given, else
    Google's host of ``location``. Either is checked (``core.names``) before a request exists."""
    if base_url:
        return check_base_url(base_url, field)
    location = validate_location(location)
    host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    return check_base_url(f"https://{host}", "location")


def normalize_sub_state(value) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value))


def genai_client(project: str, location: str, credentials, base_url: str | None):
    """A google-genai Vertex client; ``base_url`` points it at another host (the emulator). It is always given
    the checked base URL (:func:`vertex_base_url`): without one, google-genai would build the host from
    ``location`` itself, or take ``$GOOGLE_VERTEX_BASE_URL``."""
    from google import genai
    from google.genai import types

    project, location = validate_project(project), validate_location(location)
    http = types.HttpOptions(base_url=vertex_base_url(location, base_url))
    return genai.Client(vertexai=True, project=project, location=location, credentials=credentials,
                        http_options=http)


def sdk_call(fn):
    """Runs one SDK call, turning google-genai's APIError into ours (the one wrapper for sync calls)."""
    try:
        return fn()
    except Exception as exc:
        raise _api_error(exc) from exc


async def asdk_call(coro_fn):
    """The async twin of :func:`sdk_call`."""
    try:
        return await coro_fn()
    except Exception as exc:
        raise _api_error(exc) from exc


class GenaiBackend:
    """What both Vertex backends share: the connection settings and one google-genai client, closed per loop.

    :param project: the Google Cloud project (``core.names.PROJECT_PATTERN``).
    :param location: the Vertex AI region (``core.names.LOCATION_PATTERN``).
    :param credentials: google-auth credentials (google-genai refuses anonymous ones).
    :param base_url: another host for every call (the emulator): ``https://`` Google or loopback only
        (``core.names.check_base_url``); None = Google.
    :param retry_policy: retries of idempotent calls (get, list, cancel).

    All three are checked here, before any request or credential use (``core.names.InvalidName``).
    """

    kind = "vertex"

    def __init__(self, *, project: str, location: str, credentials, base_url: str | None = None,
                 retry_policy: retry.RetryPolicy | None = None):
        self.project = validate_project(project)
        self.location = validate_location(location)
        self.base_url = check_base_url(base_url) if base_url else None
        self.credentials = credentials
        self.retry_policy = retry_policy or retry.RetryPolicy()
        self.rest = RestClient(vertex_base_url(self.location, self.base_url), field="api_base_url",
                               headers=lambda: bearer_headers(credentials),
                               headers_ready=lambda: credentials.valid, raise_for=raise_for)

    @cached_property
    def client(self):
        """google-genai's client, built on first use (the status poll does not need it)."""
        return genai_client(self.project, self.location, self.credentials, self.base_url)

    async def aclose(self) -> None:
        """Closes the async HTTP sessions of this event loop (call before the loop ends)."""
        await self.rest.aclose()
        if "client" in self.__dict__:
            await self.client.aio.aclose()
            del self.__dict__["client"]


class VertexTuningBackend(GenaiBackend):
    """Vertex AI ``tuningJobs`` (a :class:`~gemini_tuning.backends.contract.TuningBackend`).

    Identity travels in labels: create puts ``JobIdentity.labels()`` on the job, find lists by a label filter.
    The loss curve is not on the job: it is read from the job's ``gcsMetricsUri`` through ``storage``.

    Takes :class:`GenaiBackend`'s arguments; the loss curve is read with the same credentials from GCS's JSON API
    (``$STORAGE_EMULATOR_HOST`` when set).
    """

    def __init__(self, **connection):
        super().__init__(**connection)
        credentials = self.credentials
        self.gcs_rest = RestClient(gcs.rest_base_url(), field="STORAGE_EMULATOR_HOST",
                                   headers=lambda: bearer_headers(credentials),
                                   headers_ready=lambda: credentials.valid, raise_for=raise_for)

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
        source = spec.base_model
        if spec.continue_from:       # google-genai sends preTunedModel for a "projects/..." base model
            source = spec.continue_from
            if spec.checkpoint_id:
                cfg["pre_tuned_model_checkpoint_id"] = spec.checkpoint_id
        return {"base_model": source, "training_dataset": types.TuningDataset(gcs_uri=spec.training_uri),
                "config": types.CreateTuningJobConfig(**cfg)}

    @staticmethod
    def _list_config(labels: dict, page_size: int = 100) -> dict:
        flt = " AND ".join(f'labels.{k}="{v}"' for k, v in sorted(labels.items()))
        return {"filter": flt, "page_size": page_size}

    # ------------------------------------------------------------------ sync (operators)
    def create(self, spec: TuningSpec, identity: JobIdentity) -> JobStatus:
        """One create call, never retried here: the launcher recovers an ambiguous failure with :meth:`find`."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tuning is experimental"
            return job_status(sdk_call(lambda: self.client.tunings.tune(**self._create_args(spec,
                                                                                           identity.labels()))))

    def find(self, identity: JobIdentity) -> JobStatus | None:
        jobs = retry.call(self.retry_policy, lambda: sdk_call(lambda: [
            job_status(j) for j in self.client.tunings.list(config=self._list_config(identity.lookup_labels()))]))
        if not jobs:
            return None
        live = [j for j in jobs if not j.terminal]
        return max(live or jobs, key=lambda j: j.create_time or "")

    @staticmethod
    def fingerprint_of(status: JobStatus) -> str | None:
        return status.labels.get(FINGERPRINT_LABEL)

    def get(self, name: str) -> JobStatus:
        job_name(name)
        return retry.call(self.retry_policy, lambda: self.rest.run(single(get_job_request(name), parse_job)))

    def base_model(self, model: str) -> dict:
        """The PublisherModel of ``model`` (:func:`base_model_request`); :class:`NotFoundError` when the service
        does not serve it (retired, or not offered here). Retried like every idempotent read."""
        return retry.call(self.retry_policy, lambda: self.rest.run(single(base_model_request(model))))

    def cancel(self, name: str) -> None:
        job_name(name)
        retry.call(self.retry_policy, lambda: self.rest.run(single(cancel_job_request(name))))

    def with_loss(self, status: JobStatus) -> JobStatus:
        """Reads the loss curve from the job's ``gcsMetricsUri`` (best effort, see :func:`parse_metrics`)."""
        if not status.metrics_uri:
            return status
        try:
            texts = self.gcs_rest.run(gcs.read_texts_plan(status.metrics_uri, METRICS_SUFFIXES))
        except Exception as exc:  # noqa: BLE001 - loss is reporting, never control
            log.warning("could not read training metrics from %s: %s", status.metrics_uri, exc)
            return status
        return _with_points(status, texts)

    # ------------------------------------------------------------------ async (triggers)
    async def aget(self, name: str) -> JobStatus:
        job_name(name)
        return await self.rest.arun(single(get_job_request(name), parse_job))

    async def acancel(self, name: str) -> None:
        job_name(name)
        await retry.acall(self.retry_policy, lambda: self.rest.arun(single(cancel_job_request(name))))

    async def aclose(self) -> None:
        await self.gcs_rest.aclose()
        await super().aclose()

    async def awith_loss(self, status: JobStatus) -> JobStatus:
        if not status.metrics_uri:
            return status
        try:
            texts = await self.gcs_rest.arun(gcs.read_texts_plan(status.metrics_uri, METRICS_SUFFIXES))
        except Exception as exc:  # noqa: BLE001 - loss is reporting, never control
            log.warning("could not read training metrics from %s: %s", status.metrics_uri, exc)
            return status
        return _with_points(status, texts)

    # ------------------------------------------------------------------ generation (evaluation)
    @staticmethod
    def _generate_config(settings: GenerationSettings):
        from google.genai import types

        return types.GenerateContentConfig(temperature=settings.temperature, top_p=settings.top_p,
                                           max_output_tokens=settings.max_output_tokens, seed=settings.seed,
                                           system_instruction=settings.system_instruction)

    async def agenerate(self, model: str, prompt: str, settings: GenerationSettings) -> str:
        """``model``: the tuned model's endpoint, or a base model id. Not retried here (the engine does)."""
        from ..core.generation import Generated, usage_of

        validate_resource_name(model, ("endpoint", "model", "base_model"), field="generation model")
        resp = await asdk_call(lambda: self.client.aio.models.generate_content(
            model=model, contents=prompt, config=self._generate_config(settings)))
        meta = resp.usage_metadata
        return Generated(resp.text or "", usage_of(getattr(meta, "prompt_token_count", 0),
                                                   getattr(meta, "candidates_token_count", 0)))

    def console_url(self, name: str) -> str:
        job_id = name.rsplit("/", 1)[-1]
        return (f"https://console.cloud.google.com/vertex-ai/generative/language/locations/{self.location}"
                f"/tuning/tuningJob/{job_id}?project={self.project}")
