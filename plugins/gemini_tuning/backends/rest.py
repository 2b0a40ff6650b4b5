"""One REST transport for the hand-written calls (Gemini API ``tunedModels``, the Vertex job poll): each call is a
:class:`Request` built by one function and parsed by one function; :class:`RestClient` only moves bytes, with
``requests`` on the worker and ``aiohttp`` in the triggerer.

A *plan* is a generator that yields Requests and receives their JSON answers (a call that needs two round trips,
e.g. "find the operation, then cancel it", is one plan); :meth:`RestClient.run` drives it synchronously,
:meth:`RestClient.arun` asynchronously, so the sync and async paths never write a request twice.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..core.names import InvalidName, check_base_url

Plan = Generator["Request", Any, Any]
#: What a request path may hold: RFC 3986 path characters and %XX escapes, after one leading '/'.
_PATH_RE = re.compile(r"^/(?!/)(?:[A-Za-z0-9\-._~:@!$&'()*+,;=/]|%[0-9A-Fa-f]{2})*$")
_DOT_SEGMENT_RE = re.compile(r"(?:^|/)\.{1,2}(?:/|$)|//|%2[eE]")


@dataclass(frozen=True)
class Request:
    """One HTTP call.

    :param method: the HTTP method.
    :param path: the absolute path on the client's base URL (checked by :func:`join_url`).
    :param params: the query parameters.
    :param json: the JSON body (None: no body).
    :param raw: the answer is returned as text, not parsed as JSON (a media download).
    """

    method: str
    path: str
    params: dict = field(default_factory=dict)
    json: dict | None = None
    raw: bool = False


def bearer_headers(credentials, quota_project: str | None = None) -> dict[str, str]:
    """``Authorization: Bearer`` from google-auth credentials (refreshed when needed; blocking), and
    ``x-goog-user-project``: ``quota_project``, else the credentials' own quota project (user ADC need one), as
    google-auth's ``apply`` and the SDKs do."""
    if not credentials.valid:
        import google.auth.transport.requests

        credentials.refresh(google.auth.transport.requests.Request())
    headers = {"Authorization": f"Bearer {credentials.token}"}
    quota_project = quota_project or getattr(credentials, "quota_project_id", None)
    if quota_project:
        headers["x-goog-user-project"] = quota_project
    return headers


def join_url(base_url: str, path: str) -> str:
    """``base_url + path``, refused (:class:`InvalidName`) unless ``path`` is a plain absolute path and the joined
    URL keeps ``base_url``'s scheme, host and port: the last guard before a credentialed request leaves."""
    if not isinstance(path, str) or not _PATH_RE.fullmatch(path) or _DOT_SEGMENT_RE.search(path):
        raise InvalidName("request path", path, "must start with one '/' and hold only ASCII letters, digits and "
                          "-._~:@!$&'()*+,;=/ or %XX escapes (no '?', '#', '..' or '.' segment, '//', %2e or "
                          f"whitespace): a request may not change the host of {base_url}")
    url = base_url + path
    base, joined = urlsplit(base_url), urlsplit(url)
    if (joined.scheme, joined.netloc, joined.query, joined.fragment) != (base.scheme, base.netloc, "", "") \
            or joined.username is not None:
        raise InvalidName("request URL", url, f"must stay on {base_url}")
    return url


class RestClient:
    """:param base_url: scheme and host, e.g. ``https://us-central1-aiplatform.googleapis.com``; refused
        (:class:`~gemini_tuning.core.names.InvalidName`) unless ``core.names.check_base_url`` allows credentials
        there, and every request URL is checked to stay on it (:func:`join_url`).
    :param field: what ``base_url`` is called in that error (``api_base_url``, ``STORAGE_EMULATOR_HOST``...).
    :param headers: returns the auth headers (may block: it is called in a thread on the async side when
        ``headers_ready`` says a refresh is due).
    :param headers_ready: True when ``headers`` can be called without I/O.
    :param raise_for: ``(status, body text, response headers)`` -> raises the service's error, or returns. (What
        an error means for one call in particular, e.g. a create, is that call's business, in its backend.)
    :param timeout: seconds per request.
    """

    def __init__(self, base_url: str, *, headers: Callable[[], Mapping[str, str]],
                 headers_ready: Callable[[], bool] = lambda: True,
                 raise_for: Callable[[int, str, Mapping], None], timeout: float = 60.0,
                 field: str = "base_url"):
        self.base_url = check_base_url(base_url, field)
        self._headers = headers
        self._headers_ready = headers_ready
        self._raise_for = raise_for
        self.timeout = timeout
        self._session = None
        self._asession = None          # aiohttp session of the event loop that made it (closed by aclose)
        self._aloop = None
        self._refresh_lock: asyncio.Lock | None = None

    def send(self, req: Request) -> dict:
        import requests

        url = join_url(self.base_url, req.path)
        if self._session is None:
            self._session = requests.Session()
        resp = self._session.request(req.method, url, params=req.params or None,
                                     json=req.json, headers=dict(self._headers()), timeout=self.timeout)
        self._raise_for(resp.status_code, resp.text, resp.headers)
        if req.raw:
            return resp.text
        return resp.json() if resp.content else {}

    async def asend(self, req: Request) -> dict:
        import aiohttp

        url = join_url(self.base_url, req.path)
        loop = asyncio.get_running_loop()
        session = self._asession
        if session is None or session.closed or self._aloop is not loop:
            session = self._asession = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._aloop, self._refresh_lock = loop, asyncio.Lock()
        headers = await self._aheaders()
        async with session.request(req.method, url, params=req.params or None,
                                   json=req.json, headers=dict(headers)) as resp:
            text = await resp.text()
            self._raise_for(resp.status, text, resp.headers)
            if req.raw:
                return text
            return json.loads(text) if text else {}

    async def _aheaders(self) -> Mapping[str, str]:
        """The auth headers; a due token refresh runs once, in a thread, however many calls wait for it."""
        if self._headers_ready():
            return self._headers()
        async with self._refresh_lock:
            if self._headers_ready():
                return self._headers()
            return await asyncio.to_thread(self._headers)

    def run(self, plan: Plan):
        try:
            req = next(plan)
            while True:
                req = plan.send(self.send(req))
        except StopIteration as stop:
            return stop.value

    async def arun(self, plan: Plan):
        try:
            req = next(plan)
            while True:
                req = plan.send(await self.asend(req))
        except StopIteration as stop:
            return stop.value

    async def aclose(self) -> None:
        """Closes the aiohttp session (call before its event loop ends)."""
        session, self._asession = self._asession, None
        if session is not None and not session.closed:
            await session.close()


def single(req: Request, parse: Callable[[dict], Any] = lambda body: body) -> Plan:
    """The plan of one request and its parse."""
    return parse((yield req))


def google_api_error(status: int, text: str, headers: Mapping | None):
    """Google's error envelope as our error: 404 NotFoundError, 409 AlreadyExistsError, else TuningApiError;
    Retry-After kept. (The backends raise it after their own service-specific cases.)"""
    from .errors import AlreadyExistsError, NotFoundError, TuningApiError, parse_retry_after

    message, canonical = google_error(text, status)
    cls = {404: NotFoundError, 409: AlreadyExistsError}.get(status, TuningApiError)
    return cls(status, message, status=canonical,
               retry_after=parse_retry_after(headers.get("Retry-After") if headers else None))


def google_error(text: str, status: int) -> tuple[str, str | None]:
    """(message, canonical status) of Google's error envelope ``{"error": {"code", "message", "status"}}``."""
    try:
        err = json.loads(text).get("error", {})
    except (ValueError, AttributeError):
        err = {}
    if not isinstance(err, dict):
        err = {}
    return err.get("message") or text[:500] or f"HTTP {status}", err.get("status")
