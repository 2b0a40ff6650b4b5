"""Every value that becomes part of a URL or a resource name, validated once, before any request exists.

Purpose: nothing from a run's input builds a host name, and a credentialed request (an OAuth bearer token, an API
key) goes only to Google's API hosts over ``https://`` or to a loopback emulator. A location such as
``x@attacker.example/`` or ``attacker.example#`` used to become part of ``https://{location}-aiplatform.googleapis
.com`` and send the token elsewhere.

How it works: :func:`validate_location` and :func:`validate_project` check the two values that name a Google
resource scope (``LOCATION_PATTERN`` and ``PROJECT_PATTERN`` are the same rules as JSON-schema patterns, for
Airflow Params). :func:`validate_resource_name` checks a full resource name the code puts into a URL path
(``projects/P/locations/L/tuningJobs/J``...): every part is an id of URL-safe characters. :func:`check_base_url`
decides where credentials may go and returns the normalized ``scheme://host[:port]``; the REST transport
(``backends.rest.RestClient``) calls it again and checks that each joined request URL keeps that host.

What it does not do: it does not check that a resource exists, nor that a region offers a service. Inside a full
resource name the project and location parts are checked for URL safety (the id alphabet), not for Google's exact
project-id and region forms (a backend compares the name's location with its own validated one); only the standalone
``location`` and ``project`` build a host or a request scope.

Known limitations: Vertex AI's multi-region locations (``us``, ``eu``, ``aiplatform.{us,eu}.rep.googleapis.com``)
are not accepted; a loopback emulator is trusted with the credentials (it is the operator's own machine).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["LOCATION_PATTERN", "PROJECT_PATTERN", "RESOURCE_KINDS", "InvalidName", "check_base_url",
           "validate_location", "validate_project", "validate_resource_name"]

MAX_SHOWN = 80


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


class InvalidName(ValueError):
    """A value that may not become part of a URL or a resource name. ``field``: what it is (``location``,
    ``api_base_url``, ``tuning job name``...); ``value``: what was given; ``rule``: what it must be, in words.

    :param field: what the value is (``location``, ``api_base_url``, ``tuning job name``, …).
    :param value: the value given (shown, shortened, in the default message).
    :param rule: what it must be, in words.
    :param message: the whole error message instead of ``invalid <field> <value>: <rule>``; None: that default.
    """

    def __init__(self, field: str, value: object, rule: str, *, message: str | None = None):
        self.field, self.value, self.rule = field, value, rule
        super().__init__(message or f"invalid {field} {_shown(value)}: {rule}")


# ------------------------------------------------------------------------------------------ location, project
#: A Google Cloud region (``us-central1``, ``europe-west4``, ``northamerica-northeast1``) or ``global``.
LOCATION_PATTERN = r"^(?:global|[a-z]{2,24}-[a-z]{2,24}[0-9]{1,2})$"
LOCATION_RULE = ("must be a Google Cloud region id (lowercase letters, a hyphen, lowercase letters and a number, "
                 "e.g. us-central1 or europe-west4) or 'global'")
_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
_PROJECT_ID = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
#: A Google Cloud project id (6-30 characters: lowercase letters, digits, hyphens; a letter first, no hyphen last),
#: optionally domain-scoped (``example.com:my-project``), or a project number.
PROJECT_PATTERN = rf"^(?:(?:{_DOMAIN}:)?{_PROJECT_ID}|[1-9][0-9]{{0,19}})$"
PROJECT_RULE = ("must be a Google Cloud project id (6 to 30 characters: lowercase letters, digits and hyphens, "
                "starting with a letter and not ending with a hyphen; optionally 'domain:' first) or a project "
                "number (digits)")
_LOCATION_RE = re.compile(LOCATION_PATTERN)
_PROJECT_RE = re.compile(PROJECT_PATTERN)


def validate_location(value: object, field: str = "location") -> str:
    """``value`` when it is a region id or ``global`` (:data:`LOCATION_PATTERN`); else :class:`InvalidName`."""
    if not isinstance(value, str) or not _LOCATION_RE.fullmatch(value):
        raise InvalidName(field, value, LOCATION_RULE)
    return value


def validate_project(value: object, field: str = "project") -> str:
    """``value`` when it is a project id or number (:data:`PROJECT_PATTERN`); else :class:`InvalidName`."""
    if not isinstance(value, str) or not _PROJECT_RE.fullmatch(value):
        raise InvalidName(field, value, PROJECT_RULE)
    return value


# ------------------------------------------------------------------------------------------ resource names
_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"           # one part of a name ("..": refused below)
_VERSION = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"       # after '@': a version id or an alias
_PARENT = rf"projects/(?:{_DOMAIN}:)?{_ID}/locations/{_ID}"
#: kind -> (the shape in words, the regex). The kinds whose names the backends put into URL paths.
RESOURCE_KINDS: dict[str, tuple[str, str]] = {
    "parent": ("projects/PROJECT/locations/LOCATION", _PARENT),
    "model": ("projects/PROJECT/locations/LOCATION/models/ID[@VERSION_OR_ALIAS]",
              rf"{_PARENT}/models/{_ID}(?:@{_VERSION})?"),
    "endpoint": ("projects/PROJECT/locations/LOCATION/endpoints/ID", rf"{_PARENT}/endpoints/{_ID}"),
    "tuning_job": ("projects/PROJECT/locations/LOCATION/tuningJobs/ID", rf"{_PARENT}/tuningJobs/{_ID}"),
    "batch_job": ("projects/PROJECT/locations/LOCATION/batchPredictionJobs/ID",
                  rf"{_PARENT}/batchPredictionJobs/{_ID}"),
    "tuned_model": ("tunedModels/ID", rf"tunedModels/{_ID}"),
    "operation": ("tunedModels/ID/operations/ID", rf"tunedModels/{_ID}/operations/{_ID}"),   # Gemini API
    "base_model": ("a base model: ID, models/ID, publishers/google/models/ID or "
                   "projects/PROJECT/locations/LOCATION/publishers/google/models/ID",
                   rf"{_ID}|models/{_ID}|(?:{_PARENT}/)?publishers/google/models/{_ID}"),
}
_KIND_RE = {kind: re.compile(rf"^(?:{regex})$") for kind, (_, regex) in RESOURCE_KINDS.items()}
_KIND_FIELD = {"parent": "resource parent", "model": "Vertex AI model name", "endpoint": "Vertex AI endpoint name",
               "tuning_job": "tuning job name", "batch_job": "batch prediction job name",
               "tuned_model": "Gemini API tuned model name", "operation": "operation name",
               "base_model": "base model name"}
ID_RULE = ("each id 1-128 ASCII letters, digits, '-', '_' or '.' starting with a letter or digit, no '..'; '@' only "
           "before a model version or alias; no '/', '#', '?', '%', whitespace or other characters inside a part")


def validate_resource_name(value: object, kind: str | tuple[str, ...], field: str | None = None) -> str:
    """``value`` when it is a resource name of ``kind`` (a key of :data:`RESOURCE_KINDS`, or a tuple of them:
    any of those); else :class:`InvalidName`. ``field`` names it in the message (default: from the kind)."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    unknown = [k for k in kinds if k not in RESOURCE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown resource kind(s) {unknown or kinds!r}; expected some of {sorted(RESOURCE_KINDS)}")
    if isinstance(value, str) and ".." not in value and any(_KIND_RE[k].fullmatch(value) for k in kinds):
        return value
    shapes = " | ".join(RESOURCE_KINDS[k][0] for k in kinds)
    raise InvalidName(field or " or ".join(_KIND_FIELD[k] for k in kinds), value, f"must be {shapes} ({ID_RULE})")


# ------------------------------------------------------------------------------------------ base URLs
BASE_URL_RULE = ("a credentialed request goes only to an https:// Google API host (*.googleapis.com, port 443) or to "
                 "a loopback emulator (http:// or https:// on 127.0.0.0/8, localhost or [::1]), written "
                 "scheme://host[:port] with nothing after it but an optional '/'")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_GOOGLE_RE = re.compile(rf"^(?:{_LABEL}\.)+googleapis\.com$")
_URL_CHARS_RE = re.compile(r"^[A-Za-z0-9.:/\[\]@?#%_~+-]*$")   # anything else: refused before parsing


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback     # 127.0.0.0/8, ::1 (strict: no "127.1", no octal)
    except ValueError:
        return False


def check_base_url(url: object, field: str = "api_base_url") -> str:
    """The normalized ``scheme://host[:port]`` of ``url`` when credentials may be sent there (:data:`BASE_URL_RULE`);
    else :class:`InvalidName` naming what is wrong. Pure: no DNS, the parsed host is compared as text."""

    def refuse(reason: str):
        return InvalidName(field, url, f"{reason}; {BASE_URL_RULE}")

    if not isinstance(url, str) or not url:
        raise refuse("not a URL string")
    if not url.isascii() or not _URL_CHARS_RE.fullmatch(url):
        raise refuse("it has a non-ASCII, whitespace, control, backslash or other character not allowed here")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("its host or port cannot be parsed (the port must be a number from 0 to 65535)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not url.lower().startswith(f"{scheme}://"):
        raise refuse("its scheme is not http:// or https://")
    if "@" in url:
        raise refuse("it has user info before the host ('@')")
    if "?" in url:
        raise refuse("it has a query ('?')")
    if "#" in url:
        raise refuse("it has a fragment ('#')")
    if parts.path not in ("", "/"):
        raise refuse("it has a path")
    if "%" in url:
        raise refuse("it has a percent escape ('%')")
    host = parts.hostname or ""
    ipv6 = parts.netloc.startswith("[")
    if not host or (not ipv6 and not _HOSTNAME_RE.fullmatch(host)):
        raise refuse("it has no valid host name")
    if port == 0:
        raise refuse("its port is 0")
    if _is_loopback(host):
        pass
    elif ipv6 or not _GOOGLE_RE.fullmatch(host):
        raise refuse(f"its host {host!r} is neither a Google API host nor loopback")
    elif scheme != "https":
        raise refuse("plain http:// is only for a loopback emulator")
    elif port not in (None, 443):
        raise refuse("a Google API host takes no port but 443")
    shown = f"[{host}]" if ipv6 else host
    return f"{scheme}://{shown}" + (f":{port}" if port is not None else "")
