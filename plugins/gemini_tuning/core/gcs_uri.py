"""``gs://bucket/name`` URIs, pure: the one bucket-name rule and the one parser every layer uses.

Purpose: the bucket-name rule used to be written out in five places (the GCS backend, the pipeline-file schema,
the UI's pointer, prefix and report checks) and ``gs://`` URIs were split by hand (``uri[5:]``) in three more
(the input policy, the run's own buckets, the demo-data guard); the copies disagreed (``gs://a..b/...`` was
refused by the backend and accepted by the UI's report check and by the input policy). Now:

* :data:`BUCKET_PATTERN` - the bucket-name characters and length (3-222: lowercase letters, digits, ``.``, ``_``,
  ``-``, a letter or digit at both ends); :data:`BUCKET_RE` matches a whole name; :func:`is_bucket_name` adds the
  rule a regular expression without look-ahead cannot say (no ``..``);
* :data:`GCS_PREFIX_PATTERN` / :data:`GCS_OBJECT_PATTERN` - the same rule inside a URI, as JSON-schema patterns for
  Airflow Params and the pipeline-file schema (no look-ahead: pydantic's regex engine has none; the ``..`` rule is
  :func:`split_gs_uri`'s);
* :func:`split_gs_uri` - ``gs://bucket/name`` -> ``(bucket, name)`` with clear errors (``backends.gcs.parse_gs_uri``
  is this function); :func:`bucket_of` - the bucket of a URI, or None; :func:`gs_uri_matches` - a URI that parses
  and whose object name has a given shape (the UI's pointer, prefix and report checks).

No I/O, no Google import (``core`` is below ``backends``: the backend imports this, never the other way round).
"""

from __future__ import annotations

import re

__all__ = ["BUCKET_PATTERN", "BUCKET_RE", "GCS_OBJECT_PATTERN", "GCS_PREFIX_PATTERN", "GCS_PREFIX_RE", "MAX_NAME_BYTES",
           "bucket_of", "gs_uri_matches", "is_bucket_name", "split_gs_uri"]

SCHEME = "gs://"
#: Bucket names: 3-63 chars per dot-separated name (up to 222 in all), lowercase letters, digits, - _ .
BUCKET_PATTERN = r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"
BUCKET_RE = re.compile(BUCKET_PATTERN)   # use with fullmatch (is_bucket_name)
#: ``gs://bucket[/path]`` (the ``gcs_prefix`` run Param and the pipeline file's ``storage.gcs_prefix``)
GCS_PREFIX_PATTERN = rf"^gs://{BUCKET_PATTERN}(/.*)?$"
GCS_PREFIX_RE = re.compile(GCS_PREFIX_PATTERN)
#: ``gs://bucket/object`` (an object must be named: the rollback DAG's ``pointer_uri`` Param)
GCS_OBJECT_PATTERN = rf"^gs://{BUCKET_PATTERN}/.+$"
#: GCS's limit on an object name
MAX_NAME_BYTES = 1024


def is_bucket_name(name: object) -> bool:
    """Whether ``name`` is a bucket name by :data:`BUCKET_RE`, with no ``..``."""
    return isinstance(name, str) and BUCKET_RE.fullmatch(name) is not None and ".." not in name


def split_gs_uri(uri: object, *, object_required: bool = False) -> tuple[str, str]:
    """Split ``gs://bucket/name`` into ``("bucket", "name")``; the name is returned as written.

    A bare bucket or a prefix (``gs://bucket``, ``gs://bucket/dir/``) is accepted unless ``object_required``,
    which demands an object name (not empty, not ending in ``/``). Raises ``ValueError`` naming the URI and what
    is wrong: not a string, not ``gs://``, a bucket name :func:`is_bucket_name` refuses, no object when one is
    required, an object name with a line break or longer than :data:`MAX_NAME_BYTES`.
    """
    if not isinstance(uri, str):
        raise ValueError(f"expected a gs:// URI string, got {type(uri).__name__}: {uri!r}")
    if not uri.startswith(SCHEME):
        raise ValueError(f"not a gs:// URI: {uri!r} (expected gs://bucket/object)")
    bucket, _, name = uri[len(SCHEME):].partition("/")
    if not is_bucket_name(bucket):
        raise ValueError(f"invalid bucket name {bucket!r} in {uri!r} (3-63 characters: a-z 0-9 - _ .)")
    if object_required and (not name or name.endswith("/")):
        raise ValueError(f"{uri!r} names no object (expected gs://bucket/path/to/object)")
    if "\n" in name or "\r" in name or len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"invalid object name in {uri!r} (a line break, or longer than {MAX_NAME_BYTES} bytes)")
    return bucket, name


def bucket_of(uri: object) -> str | None:
    """The bucket of a ``gs://`` URI whose bucket name is valid (the object name is not looked at), else None."""
    if not isinstance(uri, str) or not uri.startswith(SCHEME):
        return None
    bucket = uri[len(SCHEME):].partition("/")[0]
    return bucket if is_bucket_name(bucket) else None


def gs_uri_matches(uri: object, object_re: re.Pattern) -> bool:
    """Whether ``uri`` parses (:func:`split_gs_uri`) and its object name (without the leading ``/``; empty for a
    bare bucket) matches ``object_re`` as a whole."""
    try:
        _, name = split_gs_uri(uri)
    except ValueError:
        return False
    return object_re.fullmatch(name) is not None
