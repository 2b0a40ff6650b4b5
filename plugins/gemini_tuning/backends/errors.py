"""Errors the backends raise, and the one definition of what is transient (safe to retry after a pause)."""

from __future__ import annotations

import asyncio
import email.utils
import time

TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})


class TuningApiError(Exception):
    """A service answered with an error. ``code`` is the HTTP status; ``status`` Google's canonical name.

    :param code: the HTTP status (404, 429, …); :attr:`transient` is decided on it.
    :param message: the service's error message.
    :param status: Google's canonical status name (``NOT_FOUND``, ``RESOURCE_EXHAUSTED``, …); None when not given.
    :param retry_after: seconds to wait before a retry, from the ``Retry-After`` header; None when not sent.
    """

    def __init__(self, code: int, message: str, *, status: str | None = None, retry_after: float | None = None):
        super().__init__(f"{code} {status or ''}: {message}".replace("  ", " "))
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_HTTP


class NotFoundError(TuningApiError):
    """The resource does not exist (HTTP 404). Arguments as :class:`TuningApiError`."""


class AlreadyExistsError(TuningApiError):
    """The resource already exists (HTTP 409), e.g. a repeated create. Arguments as :class:`TuningApiError`."""


class InsufficientScopesError(TuningApiError):
    """OAuth credentials without the scope the Gemini API requires for tuning."""


class TuningDiscontinuedError(TuningApiError):
    """Google refused Gemini API tuning (discontinued in 2025): use the Vertex AI backend."""


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def is_transient(exc: BaseException) -> bool:
    """429/5xx/408 answers, connection resets, timeouts: worth retrying. 4xx answers and bugs are not."""
    if isinstance(exc, TuningApiError):
        return exc.transient
    code = getattr(exc, "code", None)  # google.genai.errors.APIError, google.api_core exceptions
    if isinstance(code, int) and 100 <= code < 600:
        return code in TRANSIENT_HTTP
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return True
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    # httpx / aiohttp / requests / urllib3 transport failures (resets, disconnects, read timeouts)
    if module.startswith(("httpx", "httpcore", "aiohttp", "requests", "urllib3")):
        return any(k in name for k in ("Connect", "Timeout", "Protocol", "Disconnect", "Reset", "Payload",
                                       "ServerDisconnected", "ReadError", "WriteError", "RemoteProtocol",
                                       "ChunkedEncoding", "ClientOSError"))
    return False


def retry_after_of(exc: BaseException) -> float | None:
    ra = getattr(exc, "retry_after", None)
    if ra is not None:
        return ra
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            return parse_retry_after(headers.get("Retry-After"))
        except (TypeError, ValueError):
            return None
    return None
