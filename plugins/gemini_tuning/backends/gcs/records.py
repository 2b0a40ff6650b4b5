"""Small objects: JSON records with compare-and-swap on the generation (intent records, the champion pointer),
derived objects written whole (:func:`write_bytes`), and the triggerer's REST reads of training-metrics files.

A failed swap raises :class:`~.errors.GenerationMismatch`. Record reads are bounded: :data:`MAX_JSON_BYTES`
(1 MiB) by default for an intent or verdict (a champion pointer: ``core.constants.MAX_POINTER_BYTES``, which its
writer checks first with :func:`json_size`), :data:`MAX_METRICS_BYTES` (32 MiB) for one training-metrics file.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from google.api_core.exceptions import NotFound

from .errors import GenerationMismatch, check_size, is_412
from .uris import gs_uri, parse_gs_uri

if TYPE_CHECKING:
    from google.cloud.storage import Client

MAX_JSON_BYTES = 1 << 20  # read_json: a pointer, intent or verdict record is a few KB
MAX_METRICS_BYTES = 32 << 20  # read_texts_plan: one training-metrics file (read in the triggerer)


def read_json(client: Client, uri: str, *, max_bytes: int = MAX_JSON_BYTES,
              what: str = "a JSON record") -> tuple[dict | None, int]:
    """Read a small JSON object: ``(obj, generation)``, or ``(None, 0)`` when no object exists.

    Only "not found" means absent; every other error (permissions, 5xx after retries, invalid JSON, a JSON
    value that is not an object) propagates, so a caller never mistakes a failed read for "nothing there".
    The object's size (metadata) is checked first: above ``max_bytes`` it raises :class:`ObjectTooLarge` without
    downloading it; the download is then pinned to the generation whose size was checked (replaced in between:
    the read starts over, at most 3 times).
    """
    bucket, name = parse_gs_uri(uri, object_required=True)
    for attempt in range(3):
        blob = client.bucket(bucket).blob(name)
        try:
            blob.reload()
            if not blob.generation:
                raise RuntimeError(f"GCS returned no generation for {uri}; refusing a read that cannot be "
                                   "compared-and-swapped")
            check_size(uri, blob.size, max_bytes, what)
            data = blob.download_as_bytes(if_generation_match=blob.generation)
        except NotFound:
            return None, 0
        except Exception as exc:
            if attempt < 2 and is_412(exc):
                continue
            raise
        break
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError(f"{uri} holds JSON {type(obj).__name__}, expected an object")
    return obj, int(blob.generation)


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False).encode() + b"\n"


def json_size(obj: dict) -> int:
    """How many bytes :func:`write_json` writes for ``obj`` (a writer checks its readers' bound with it first)."""
    return len(_dump(obj))


def write_json(client: Client, uri: str, obj: dict, *, if_generation_match: int) -> int:
    """Write ``obj`` only if the live generation is ``if_generation_match`` (``0``: only if absent).

    Returns the new generation. Raises :class:`GenerationMismatch` when another writer got there first. A 412 on
    a retried request whose first attempt had in fact succeeded would look the same; so on 412 the live object
    is read back, and if it holds exactly these bytes its generation is returned instead.
    """
    if if_generation_match is None or int(if_generation_match) < 0:
        raise ValueError("write_json needs if_generation_match >= 0 (0 = create only)")
    bucket, name = parse_gs_uri(uri, object_required=True)
    data = _dump(obj)
    blob = client.bucket(bucket).blob(name)
    try:
        blob.upload_from_string(data, content_type="application/json", if_generation_match=int(if_generation_match))
    except Exception as exc:
        if not is_412(exc):
            raise
        live = client.bucket(bucket).blob(name)
        try:
            live.reload()
            # only an object of exactly these bytes can be our own write: compare sizes before downloading
            current = live.download_as_bytes(if_generation_match=live.generation) \
                if live.size is not None and int(live.size) == len(data) else None
        except NotFound:
            raise GenerationMismatch(uri, int(if_generation_match), 0) from exc
        except Exception as again:
            if not is_412(again):
                raise
            current = None  # replaced meanwhile: not our write either
        if current == data and live.generation:
            return int(live.generation)
        raise GenerationMismatch(uri, int(if_generation_match), live.generation) from exc
    return int(blob.generation)


def write_bytes(client: Client, uri: str, data: bytes, content_type: str = "application/octet-stream") -> int:
    """Writes a small object (evaluation results, gate decision, report), replacing any earlier version: these are
    derived per run and a retry recomputes them. Returns the new generation."""
    bucket, name = parse_gs_uri(uri, object_required=True)
    blob = client.bucket(bucket).blob(name)
    blob.upload_from_string(data, content_type=content_type)
    return int(blob.generation or 0)


# ------------------------------------------------------------------------------------------ REST reads
# The triggerer reads a job's metrics files with a plain authorized GET (``backends.rest``), so google-cloud-storage
# is never loaded there. The JSON API paths below are GCS's own (``/download/...`` serves media).
def read_texts_plan(uri: str, suffixes: tuple[str, ...], *, max_bytes: int = MAX_METRICS_BYTES):
    """A ``backends.rest`` plan: the text of every object under the ``gs://bucket/prefix`` whose name ends with
    one of ``suffixes``, in name order. An object above ``max_bytes`` (its listed size) raises
    :class:`ObjectTooLarge` before anything is downloaded."""
    from urllib.parse import quote

    from ..rest import Request

    bucket, prefix = parse_gs_uri(uri)
    names, token = [], None
    while True:
        params = {"prefix": prefix, "fields": "items(name,size),nextPageToken"}
        if token:
            params["pageToken"] = token
        page = yield Request("GET", f"/storage/v1/b/{bucket}/o", params)
        for item in page.get("items") or []:
            if item["name"].endswith(suffixes):
                check_size(gs_uri(bucket, item["name"]), item.get("size"), max_bytes, "a training-metrics file")
                names.append(item["name"])
        token = page.get("nextPageToken")
        if not token:
            break
    texts = []
    for name in sorted(names):
        texts.append((yield Request("GET", f"/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
                                    {"alt": "media"}, raw=True)))
    return texts
