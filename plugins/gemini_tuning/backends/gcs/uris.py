"""``gs://bucket/name`` URIs: parsing with clear errors, building, and where a person or a REST call finds them."""

from __future__ import annotations

import os
from urllib.parse import quote

from ...core.gcs_uri import split_gs_uri

#: ``gs://bucket/name`` -> ``("bucket", "name")`` with clear errors: the core's one parser
#: (``core.gcs_uri.split_gs_uri``; the bucket-name rule is ``core.gcs_uri.BUCKET_PATTERN``).
parse_gs_uri = split_gs_uri


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
