"""Gemini API ``tunedModels`` over REST, by hand (google-genai drops ``trainingData`` on this API).

Each call is a ``Request`` built by one function and parsed by one function; ``backends.rest.RestClient`` moves
the bytes (requests for operators, aiohttp for triggers). Auth: an API key in the ``x-goog-api-key`` header (never
in the URL, where it would land in logs), or OAuth credentials with the tuning scope and ``x-goog-user-project``.
"""

from __future__ import annotations

import logging
import re

from ..core.generation import GenerationSettings, response_text
from ..core.names import check_base_url, validate_resource_name
from ..core.states import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobStatus, LossPoint
from ..core.tuning import TuningSpec
from . import gcs, retry
from .contract import JobIdentity
from .errors import (
    InsufficientScopesError,
    NotFoundError,
    TuningApiError,
    TuningDiscontinuedError,
)
from .rest import Request, RestClient, bearer_headers, google_api_error, google_error

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
TUNING_SCOPE = "https://www.googleapis.com/auth/generative-language.tuning"
# Google's refusal since 2025 says that *tuning* is *no longer* offered. Both halves must be there: a plain "not
# supported" (an unsupported base model, a bad hyperparameter) or a mention of Vertex is an ordinary 400.
_TUNING = r"\btun(?:e|ed|ing)\b"
_GONE = r"(?:no longer (?:be )?(?:supported|available|offered)|discontinued|(?:been|is being) (?:deprecated|removed|" \
        r"turned down|shut down))"
_DISCONTINUED = re.compile(rf"{_TUNING}[^.]*?{_GONE}|{_GONE}[^.]*?{_TUNING}", re.IGNORECASE)


def is_tuning_discontinued(message: str) -> bool:
    """Whether an error message is Google's "tuning on the Gemini API is discontinued" refusal."""
    return bool(_DISCONTINUED.search(message or ""))


# ------------------------------------------------------------------------------------------ request definitions
def tuned_model_id(key: str, attempt: int) -> str:
    """Deterministic id per (task instance, attempt): a retried create answers 409 instead of paying twice."""
    return f"gt-{key.lower()[:24]}-{attempt}"


def create_request(spec: TuningSpec, examples: list[dict], model_id: str, marker: str) -> Request:
    hyper = {}
    if spec.epochs is not None:
        hyper["epochCount"] = int(spec.epochs)
    if spec.batch_size is not None:
        hyper["batchSize"] = int(spec.batch_size)
    if spec.learning_rate is not None:
        hyper["learningRate"] = float(spec.learning_rate)
    elif spec.learning_rate_multiplier is not None:
        hyper["learningRateMultiplier"] = float(spec.learning_rate_multiplier)
    body = {"baseModel": spec.base_model,
            "description": " ".join(filter(None, [spec.description, marker])),
            "tuningTask": {"hyperparameters": hyper,
                           "trainingData": {"examples": {"examples": [
                               {"textInput": e.get("text_input", e.get("textInput")), "output": e["output"]}
                               for e in examples]}}}}
    if spec.display_name:
        body["displayName"] = spec.display_name
    return Request("POST", "/v1beta/tunedModels", {"tunedModelId": model_id}, body)


def get_operation_request(operation: str) -> Request:
    return Request("GET", f"/v1/{operation}")


def list_operations_request(model: str) -> Request:
    return Request("GET", f"/v1beta/{model}/operations")


def cancel_request(operation: str) -> Request:
    return Request("POST", f"/v1/{operation}:cancel", json={})


def delete_request(model: str) -> Request:
    return Request("DELETE", f"/v1beta/{model}")


def generate_request(model: str, prompt: str, settings: GenerationSettings) -> Request:
    """``model``: ``tunedModels/x`` or ``models/gemini-…`` (a base model)."""
    return Request("POST", f"/v1beta/{model}:generateContent", json=settings.request_body(prompt))


# ------------------------------------------------------------------------------------------ response parses
def parse_operation(op: dict) -> JobStatus:
    meta = op.get("metadata") or {}
    model = meta.get("tunedModel") or op.get("name", "").split("/operations/")[0]
    snaps = tuple(LossPoint(int(s["step"]), int(s["epoch"]) if s.get("epoch") is not None else None,
                            float(s["meanLoss"])) for s in meta.get("snapshots") or [] if "meanLoss" in s)
    err = op.get("error") or {}
    if not op.get("done"):
        state = RUNNING
    elif err:
        state = CANCELLED if err.get("code") == 1 else FAILED
    else:
        state = SUCCEEDED
    response = op.get("response") or {}
    return JobStatus(backend="gemini_api", name=model, state=state, operation=op.get("name"),
                     completed_steps=meta.get("completedSteps"), total_steps=meta.get("totalSteps"),
                     progress_percent=meta.get("completedPercent"), loss_history=snaps,
                     tuned_model=response.get("name") or (model if state == SUCCEEDED else None),
                     error_code=err.get("code"), error_message=err.get("message"),
                     create_time=response.get("createTime"),
                     end_time=(response.get("tuningTask") or {}).get("completeTime"))


def raise_for(status: int, text: str, headers) -> None:
    """The Gemini API's errors -> ours: a 403 about scopes is :class:`InsufficientScopesError`, the rest Google's
    envelope (``rest.google_api_error``). What an error of the create call means besides: :func:`create_error`."""
    if status < 400:
        return
    message, canonical = google_error(text, status)
    if status == 403 and "scope" in message.lower():
        raise InsufficientScopesError(status, f"{message} Tuning on the Gemini API needs OAuth credentials with the "
                                              f"scope {TUNING_SCOPE} (or use an API key).", status=canonical)
    raise google_api_error(status, text, headers)


def _no_tunable_model(exc: TuningApiError) -> bool:
    """Google's answer today (reference §6, inferred from the documented ``generateContent`` reply; unverified): a
    404 saying the base model "is not found for API version v1beta, or is not supported for createTunedModel".
    No Gemini API model supports that method since May 2025, so it means the same as a refusal of tuning."""
    return exc.code == 404 and "createtunedmodel" in (exc.message or "").lower()


def create_error(exc: TuningApiError) -> TuningApiError:
    """An error of the create call: Google's refusal of tuning on the Gemini API (a 400, 403 or 404 that says so,
    :func:`is_tuning_discontinued`) becomes :class:`TuningDiscontinuedError`; any other error is ``exc``."""
    if type(exc) in (TuningApiError, NotFoundError) and exc.code in (400, 403, 404) \
            and (is_tuning_discontinued(exc.message) or _no_tunable_model(exc)):
        return TuningDiscontinuedError(exc.code, f"Google refused Gemini API tuning: {exc.message} Google stopped "
                                                 "offering tuning on the Gemini API in 2025; use backend='vertex' "
                                                 "(Vertex AI supervised tuning) instead.", status=exc.status)
    return exc


class GeminiApiTuningBackend:
    """Gemini API ``tunedModels`` (a :class:`~gemini_tuning.backends.contract.TuningBackend`).

    Identity: tuned models carry no labels, so the tuned-model id is derived from the identity
    (:func:`tuned_model_id`), a repeated create answers 409, and :meth:`find` looks the id up; the identity is
    also written into the description (:meth:`JobIdentity.marker`). Progress and loss come with every status (the
    operation's ``completedPercent`` and ``snapshots``). Training examples are sent inline, read from the prepared
    JSONL in GCS (4 MB at most, the request limit).

    :param base_url: another host (the emulator): ``https://`` Google or loopback only
        (``core.names.check_base_url``, checked here); None = ``generativelanguage.googleapis.com``.
    :param api_key: an API key, sent as ``x-goog-api-key`` (never in a URL). Or:
    :param credentials: OAuth credentials with the ``generative-language.tuning`` scope.
    :param quota_project: the project billed for OAuth calls (``x-goog-user-project``).
    :param retry_policy: retries of idempotent calls (get, cancel, delete).
    :param timeout: seconds per HTTP request.
    :param storage: a zero-argument callable returning a ``google.cloud.storage.Client`` (training examples).
    """

    kind = "gemini_api"
    MAX_INLINE_BYTES = 4 * 1024 * 1024
    MAX_ATTEMPTS_PROBED = 50

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None, credentials=None,
                 quota_project: str | None = None, retry_policy: retry.RetryPolicy | None = None,
                 timeout: float = 60.0, storage=None):
        self.base_url = check_base_url(base_url or DEFAULT_BASE_URL)
        if not api_key and credentials is None:
            raise ValueError("the Gemini API needs an API key or OAuth credentials")
        self.api_key = api_key
        self.credentials = credentials
        self.quota_project = quota_project
        self.retry_policy = retry_policy or retry.RetryPolicy()
        self.timeout = timeout
        self.storage = storage
        self.rest = RestClient(self.base_url, field="api_base_url", headers=self._headers,
                               headers_ready=lambda: bool(self.api_key or self.credentials.valid),
                               raise_for=raise_for, timeout=timeout)

    def __repr__(self) -> str:  # never show the key
        return f"GeminiApiTuningBackend(base_url={self.base_url!r}, auth={'api_key' if self.api_key else 'oauth'})"

    # ------------------------------------------------------------------ transport
    def _headers(self) -> dict:
        if self.api_key:
            return {"x-goog-api-key": self.api_key}
        return bearer_headers(self.credentials, self.quota_project)

    # ------------------------------------------------------------------ plans: each call written once
    @staticmethod
    def _status_plan(name: str):
        """``name`` is the operation (preferred) or the tuned model."""
        validate_resource_name(name, ("tuned_model", "operation"))
        if "/operations/" in name:
            return parse_operation((yield get_operation_request(name)))
        ops = (yield list_operations_request(name)).get("operations") or []
        if not ops:
            raise NotFoundError(404, f"no tuning operation found for {name}")
        return parse_operation(ops[0])

    @classmethod
    def _cancel_plan(cls, name: str):
        validate_resource_name(name, ("tuned_model", "operation"))
        op = name if "/operations/" in name else (yield from cls._status_plan(name)).operation
        yield cancel_request(validate_resource_name(op, "operation"))

    # ------------------------------------------------------------------ sync (operators)
    def _examples(self, uri: str) -> list[dict]:
        if self.storage is None:
            raise ValueError("the Gemini API backend needs a storage client to read the training examples")
        return gcs.read_jsonl(self.storage(), uri, max_bytes=self.MAX_INLINE_BYTES)

    def create(self, spec: TuningSpec, identity: JobIdentity) -> JobStatus:
        """Not retried: the deterministic model id makes a repeated create answer 409 (AlreadyExistsError). Google's
        refusal of Gemini API tuning raises :class:`TuningDiscontinuedError` (:func:`create_error`)."""
        model_id = tuned_model_id(identity.key, identity.attempt)
        request = create_request(spec, self._examples(spec.training_uri), model_id, identity.marker())
        try:
            return parse_operation(self.rest.send(request))
        except TuningApiError as exc:
            mapped = create_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def find(self, identity: JobIdentity) -> JobStatus | None:
        """The tuned model of ``identity.attempt``; with no attempt, the last one of the attempts 1, 2, … that
        exist (probed in order up to the first that does not)."""
        found = None
        for n in [identity.attempt] if identity.attempt is not None else range(1, self.MAX_ATTEMPTS_PROBED + 1):
            try:
                found = self.get(f"tunedModels/{tuned_model_id(identity.key, n)}")
            except NotFoundError:
                break
        return found

    @staticmethod
    def fingerprint_of(status: JobStatus) -> str | None:
        return None              # no labels on the Gemini API: only the intent record knows

    @staticmethod
    def with_loss(status: JobStatus) -> JobStatus:
        return status            # the operation's snapshots are the loss curve, already in the status

    def get(self, name: str) -> JobStatus:
        return retry.call(self.retry_policy, lambda: self.rest.run(self._status_plan(name)))

    def cancel(self, name: str) -> None:
        retry.call(self.retry_policy, lambda: self.rest.run(self._cancel_plan(name)))

    def delete(self, model: str) -> bool:
        """Deletes a tuned model. Returns False when it was already gone (idempotent)."""
        validate_resource_name(model, "tuned_model")
        try:
            retry.call(self.retry_policy, lambda: self.rest.send(delete_request(model)))
            return True
        except NotFoundError:
            return False

    # ------------------------------------------------------------------ async (triggers)
    async def aget(self, name: str) -> JobStatus:
        return await self.rest.arun(self._status_plan(name))

    async def acancel(self, name: str) -> None:
        await retry.acall(self.retry_policy, lambda: self.rest.arun(self._cancel_plan(name)))

    async def awith_loss(self, status: JobStatus) -> JobStatus:
        return status

    async def agenerate(self, model: str, prompt: str, settings: GenerationSettings) -> str:
        """One generateContent call, not retried here (the evaluation engine owns retries and rate limits)."""
        validate_resource_name(model, ("tuned_model", "base_model"), field="generation model")
        return response_text(await self.rest.asend(generate_request(model, prompt, settings)))

    async def aclose(self) -> None:
        """Closes the aiohttp session (call before its event loop ends)."""
        await self.rest.aclose()

    def console_url(self, name: str) -> str:
        model = name.split("/operations/")[0]
        return f"https://aistudio.google.com/app/{model.replace('tunedModels/', 'tuned_models/')}"  # [unverified]
