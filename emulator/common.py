"""Small helpers shared by the Vertex and Gemini API surfaces: body parsing, paging, AIP-160 label filters."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import wire
from .errors import ApiError


async def json_body(request: web.Request) -> dict:
    """The request body as an object with camelCase field names (see ``emulator.wire``)."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    body = wire.loads(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON payload received. Expected an object.")
    return wire.camel_keys(body)   # snake_case or camelCase field names, as Google's front end accepts


def ok(body: dict, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def page(items: list, request: web.Request, *, default_size: int, max_size: int) -> tuple[list, str | None]:
    try:
        size = int(request.query.get("pageSize") or default_size)
    except ValueError:
        raise ApiError(400, "pageSize must be an integer.") from None
    if size < 0:
        raise ApiError(400, "pageSize must not be negative.")
    size = min(size or default_size, max_size)
    token = request.query.get("pageToken") or ""
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise ApiError(400, "Invalid page token.") from None
    chunk = items[start:start + size]
    nxt = start + size
    return chunk, (base64.urlsafe_b64encode(str(nxt).encode()).decode() if nxt < len(items) else None)


def list_response(request: web.Request, key: str, items: list, *, default_size: int, max_size: int = 1000,
                  view: Callable[[Any], dict] | None = None) -> web.Response:
    """One page of ``items`` as a list call's answer: ``{key: [...], "nextPageToken": ...}`` (no token on the last
    page). ``view`` makes each item of the page its wire form."""
    chunk, nxt = page(items, request, default_size=default_size, max_size=max_size)
    out = {key: [view(i) for i in chunk] if view is not None else chunk}
    if nxt:
        out["nextPageToken"] = nxt
    return ok(out)


_TERM = re.compile(r'^\s*(?P<key>[A-Za-z_][\w.\-]*)\s*(?P<op>=|!=|:)\s*(?P<value>"[^"]*"|[^\s"]+)\s*$')


def parse_filter(expr: str | None) -> list[tuple[str, str, str]]:
    """Supports the AIP-160 subset Vertex list calls are used with: ``labels.k="v" AND labels.k2:* AND state=X``."""
    if not expr or not expr.strip():
        return []
    terms = []
    for part in re.split(r"\s+AND\s+", expr.strip(), flags=re.IGNORECASE):
        m = _TERM.match(part)
        if not m:
            raise ApiError(400, f"Invalid filter expression: {part!r}.")
        value = m["value"][1:-1] if m["value"].startswith('"') else m["value"]
        terms.append((m["key"], m["op"], value))
    return terms


def matches(resource: dict, terms: list[tuple[str, str, str]]) -> bool:
    for key, op, value in terms:
        if key.startswith("labels."):
            actual = (resource.get("labels") or {}).get(key[len("labels."):])
        else:
            actual = resource.get(key, resource.get(wire.camel(key)))
        if op == ":":
            if actual is None or (value != "*" and str(actual) != value):
                return False
        elif op == "=":
            if actual is None or str(actual) != value:
                return False
        elif op == "!=" and actual is not None and str(actual) == value:
            return False
    return True
