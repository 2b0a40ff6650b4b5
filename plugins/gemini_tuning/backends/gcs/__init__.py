"""Google Cloud Storage: the only package of the plugin that talks to GCS.

Pure functions and small classes over a ``google.cloud.storage.Client`` (no Airflow import; the operator builds
the client from an Airflow connection with ``GCSHook(...).get_conn()``). Import them from here
(``from gemini_tuning.backends import gcs``); the modules hold one job each:

* :mod:`.uris` - :func:`parse_gs_uri` / :func:`gs_uri` (``gs://bucket/name`` <-> ``(bucket, name)``, with clear
  errors), :func:`browser_url`, :func:`rest_base_url`.
* :mod:`.streams` - :func:`open_source` (a local path or a ``gs://`` object as a binary stream, streamed,
  generation pinned, optionally refused above ``max_bytes`` before anything is read), :func:`read_bytes` (a small
  file or object, whole, e.g. a system instruction), :func:`read_jsonl` (a JSONL object as a list of dicts:
  Gemini API inline examples, evaluation rows; streamed, gzip decompressed), :class:`CountingReader`,
  :class:`ProgressLog`.
* :mod:`.upload` - :func:`upload_create_only` (never overwrites: an existing object with the same bytes is
  reused, another one raises :class:`ContentMismatch`) and :class:`StagedUpload` (a sink uploaded in parts while
  it is written, composed at its content-addressed name at the end; why: that module's docstring).
* :mod:`.records` - :func:`read_json` / :func:`write_json` (small JSON records with compare-and-swap on the
  generation: intent records, the champion pointer; a failed swap raises :class:`GenerationMismatch`),
  :func:`write_bytes`, :func:`read_texts_plan` (the triggerer's REST reads of training-metrics files).
* :mod:`.errors` - the exceptions, the size check, what a 412 looks like.

Every read that holds a whole object in memory first compares the object's size (its metadata, or the local
file's) with a ``max_bytes`` argument and raises :class:`ObjectTooLarge` (naming the object, its size and the limit)
before downloading: JSON records (intent, verdict) :data:`MAX_JSON_BYTES` (1 MiB; a champion pointer
``core.constants.MAX_POINTER_BYTES``), training-metrics files :data:`MAX_METRICS_BYTES` (32 MiB); the callers
pass their own for larger data (evaluation results, prompt sets).

:data:`DEFAULT_PART_SIZE` is read from this package whenever a :class:`StagedUpload` is made without a
``part_size``, so setting ``gcs.DEFAULT_PART_SIZE`` here takes effect.
"""

from __future__ import annotations

from .errors import ContentMismatch, GenerationMismatch, ObjectTooLarge
from .records import MAX_JSON_BYTES, MAX_METRICS_BYTES, json_size, read_json, read_texts_plan, write_bytes, write_json
from .streams import READ_CHUNK_SIZE, CountingReader, ProgressLog, open_source, read_bytes, read_jsonl
from .upload import DEFAULT_PART_SIZE, MAX_COMPOSE_SOURCES, SHA256_KEY, StagedUpload, UploadResult, upload_create_only
from .uris import browser_url, gs_uri, parse_gs_uri, rest_base_url

__all__ = [
    "ContentMismatch",
    "DEFAULT_PART_SIZE",
    "GenerationMismatch",
    "MAX_COMPOSE_SOURCES",
    "MAX_JSON_BYTES",
    "MAX_METRICS_BYTES",
    "READ_CHUNK_SIZE",
    "SHA256_KEY",
    "CountingReader",
    "ObjectTooLarge",
    "ProgressLog",
    "StagedUpload",
    "UploadResult",
    "browser_url",
    "gs_uri",
    "json_size",
    "open_source",
    "parse_gs_uri",
    "read_bytes",
    "read_json",
    "read_jsonl",
    "read_texts_plan",
    "rest_base_url",
    "upload_create_only",
    "write_bytes",
    "write_json",
]
