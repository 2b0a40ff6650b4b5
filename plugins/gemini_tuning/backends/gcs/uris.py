"""``gs://bucket/name`` URIs: parsing with clear errors, building, and where a person or a REST call finds them."""

from __future__ import annotations

import os
import re
from urllib.parse import quote

# Bucket names: 3-63 chars per dot-separated name (up to 222 in all), lowercase letters, digits, - _ .
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def parse_gs_uri(uri: str, *, object_required: bool = False) -> tuple[str, str]:
    """Split ``gs://bucket/name`` into ``("bucket", "name")``; the name is returned as written.

    A bare bucket or a prefix (``gs://bucket``, ``gs://bucket/dir/``) is accepted unless ``object_required``,
    which demands an object name (not empty, not ending in ``/``).
    """
    if not isinstance(uri, str):
        raise ValueError(f"expected a gs:// URI string, got {type(uri).__name__}: {uri!r}")
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r} (expected gs://bucket/object)")
    bucket, _, name = uri[5:].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ValueError(f"invalid bucket name {bucket!r} in {uri!r} (3-63 characters: a-z 0-9 - _ .)")
    if object_required and (not name or name.endswith("/")):
        raise ValueError(f"{uri!r} names no object (expected gs://bucket/path/to/object)")
    if "\n" in name or "\r" in name or len(name.encode()) > 1024:
        raise ValueError(f"invalid object name in {uri!r} (a line break, or longer than 1024 bytes)")
    return bucket, name


def gs_uri(bucket: str, name: str) -> str:
    return f"gs://{bucket}/{name}"


def browser_url(uri: str) -> str:
    """Where a person opens the object: the GCS emulator's download URL when ``STORAGE_EMULATOR_HOST`` is set,
    else the authenticated Cloud console URL."""
    bucket, name = parse_gs_uri(uri, object_required=True)
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:
        return f"{host.rstrip('/')}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media"
    return f"https://storage.cloud.google.com/{bucket}/{quote(name)}"


def rest_base_url() -> str:
    """GCS's JSON API host, or ``$STORAGE_EMULATOR_HOST`` (the variable google-cloud-storage honours)."""
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:
        return host if host.startswith("http") else f"http://{host}"
    return "https://storage.googleapis.com"
