"""In-process GCS emulator: gcp-storage-emulator plus the generation preconditions it lacks.

``start_gcs()`` runs the PyPI ``gcp-storage-emulator`` server in a background thread of the calling process and
returns a :class:`GcsEmulator` handle (``url``, ``port``, ``stop()``, ``wipe()``). Point google-cloud-storage at it
with ``STORAGE_EMULATOR_HOST=<url>`` (the ``http://`` scheme is required).

The emulator ignores every generation precondition (see shared/reference/offline-stand-ins.md §1), and the plugin
depends on them: datasets are uploaded create-only (``if_generation_match=0``) and the champion pointer is updated
by compare-and-swap on the generation. ``install_preconditions()`` wraps the emulator's object handlers so that,
as on real GCS:

* insert (media, multipart, resumable session creation), resumable finalize, delete, patch/update, compose and
  copy/rewrite evaluate ``ifGenerationMatch`` (``0`` = "no live object may exist"), ``ifGenerationNotMatch``,
  ``ifMetagenerationMatch`` and ``ifMetagenerationNotMatch`` against the live object and answer HTTP 412 with
  the GCS JSON error envelope (google-cloud-storage raises ``PreconditionFailed``). Copy/rewrite also honour the
  ``ifSource...`` variants and ``sourceGeneration``; compose honours each source's ``generation`` and
  ``objectPreconditions.ifGenerationMatch``.
* a resumable upload is checked when the session is created and again when the final chunk lands (the object
  may have been created meanwhile); a refused session is discarded.
* a ``generation=N`` query parameter on get/download/delete/patch that is not the live generation is a 404 (a
  bucket without versioning keeps no older generations).
* reads (get, download) honour the same conditions: ``...Match`` failures are 412, ``...NotMatch`` failures 304.
* downloads carry ``X-Goog-Generation``/``X-Goog-Metageneration``; without them ``Blob.download_as_bytes()`` sets
  ``blob.generation`` to ``None``, which would silently turn a later CAS write into an unconditional one.
* a new object starts at metageneration 1 (the emulator starts at 2 when the upload carries metadata), and
  ``PUT`` on an object (``Blob.update()``) is served like ``PATCH`` instead of 501.

Not covered: preconditions inside ``client.batch()`` requests and XML API (``x-goog-if-generation-match``) uploads.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import urllib.request
from http import HTTPStatus
from typing import Self

from gcp_storage_emulator import server as _server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects as _objects
from gcp_storage_emulator.storage import RESUMABLE_DIR

__all__ = ["GcsEmulator", "install_preconditions", "start_gcs"]

logger = logging.getLogger(__name__)

_PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold."
# Which kind of condition failed: ...Match -> 412; ...NotMatch -> 412 on writes, 304 on reads.
_FAILED_MATCH = "match"
_FAILED_NOT_MATCH = "notmatch"

# The request being handled by this thread, so the resumable-finalize hook (which only gets the session's object
# resource) can read the conditions from the session URL's query string. The emulator builds the session URL from
# the creating request's URL, so ``ifGenerationMatch`` etc. come back with every chunk.
_tls = threading.local()
_install_lock = threading.Lock()
_installed = False


# --------------------------------------------------------------------------------------------------------------------
# Condition evaluation and GCS-style error answers
# --------------------------------------------------------------------------------------------------------------------


def _send_error(response, status: HTTPStatus, reason: str, message: str, location: str | None = None) -> None:
    error = {"domain": "global", "reason": reason, "message": message}
    if location:
        error.update(locationType="header", location=location)
    response.status = status
    response.json({"error": {"code": status.value, "message": message, "errors": [error]}})


def _precondition_failed(response) -> None:
    _send_error(
        response,
        HTTPStatus.PRECONDITION_FAILED,
        "conditionNotMet",
        _PRECONDITION_MESSAGE,
        "If-Match",
    )


def _not_found(response, bucket: str, name: str) -> None:
    _send_error(response, HTTPStatus.NOT_FOUND, "notFound", f"No such object: {bucket}/{name}")


def _live(storage, bucket: str, name: str | None) -> dict | None:
    """The live object's resource, or None."""
    if not name:
        return None
    try:
        return storage.get_file_obj(bucket, name)
    except NotFound:
        return None


def _qint(query: dict, key: str) -> int | None:
    values = query.get(key)
    return int(values[0]) if values else None  # ValueError -> 400 in _guard


def _condition_failure(query: dict, live: dict | None, prefix: str = "if") -> str | None:
    """Evaluate ``<prefix>GenerationMatch`` & co. of ``query`` against ``live`` (None = no live object).

    Returns None when every condition holds, else _FAILED_MATCH or _FAILED_NOT_MATCH. As documented for GCS:
    generation 0 stands for "no live object"; a NotMatch or metageneration condition fails when there is none.
    """
    generation = int(live["generation"]) if live else 0
    metageneration = int(live["metageneration"]) if live else None
    wanted = _qint(query, prefix + "GenerationMatch")
    if wanted is not None and wanted != generation:
        return _FAILED_MATCH
    wanted = _qint(query, prefix + "MetagenerationMatch")
    if wanted is not None and wanted != metageneration:
        return _FAILED_MATCH
    wanted = _qint(query, prefix + "GenerationNotMatch")
    if wanted is not None and (live is None or wanted == generation):
        return _FAILED_NOT_MATCH
    wanted = _qint(query, prefix + "MetagenerationNotMatch")
    if wanted is not None and (live is None or wanted == metageneration):
        return _FAILED_NOT_MATCH
    return None


def _refuse_write(query: dict, live: dict | None, response, prefix: str = "if") -> bool:
    """Answer 412 and return True if a write's conditions do not hold."""
    if _condition_failure(query, live, prefix):
        _precondition_failed(response)
        return True
    return False


def _generation_mismatch(query: dict, key: str, live: dict) -> bool:
    wanted = _qint(query, key)
    return wanted is not None and wanted != int(live["generation"])


# --------------------------------------------------------------------------------------------------------------------
# Per-handler checks: each returns True when it has already answered (refused) the request
# --------------------------------------------------------------------------------------------------------------------


def _check_insert(request, response, storage) -> bool:
    """objects.insert: media and multipart uploads, resumable session creation."""
    query = request.query
    if "upload_id" in query:
        return False  # a resumable chunk POSTed instead of PUT: checked at finalize
    name = query["name"][0] if query.get("name") else None
    upload_type = (query.get("uploadType") or [""])[0]
    if name is None and upload_type in ("multipart", "resumable") and isinstance(request.data, dict):
        resource = request.data.get("meta") if upload_type == "multipart" else request.data
        name = (resource or {}).get("name")
    if name is None:  # malformed request: let the emulator answer it
        return False
    return _refuse_write(query, _live(storage, request.params["bucket_name"], name), response)


def _check_existing(request, response, storage) -> bool:
    """delete, patch, update: 404 when missing (or ``generation`` is not the live one), then the conditions."""
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    live = _live(storage, bucket, name)
    if live is None or _generation_mismatch(request.query, "generation", live):
        _not_found(response, bucket, name)
        return True
    return _refuse_write(request.query, live, response)


def _check_read(request, response, storage) -> bool:
    """get (metadata) and download: like _check_existing, but a failed NotMatch is 304 Not Modified."""
    soft_deleted = (request.query.get("softDeleted") or [""])[0].lower()
    if soft_deleted in ("1", "true", "yes"):
        return False  # the emulator resolves soft-deleted generations itself
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    live = _live(storage, bucket, name)
    if live is None or _generation_mismatch(request.query, "generation", live):
        _not_found(response, bucket, name)
        return True
    failure = _condition_failure(request.query, live)
    if failure == _FAILED_NOT_MATCH:
        response.status = HTTPStatus.NOT_MODIFIED
        return True
    if failure:
        _precondition_failed(response)
        return True
    return False


def _add_generation_headers(request, response, storage) -> None:
    """After a download: the headers google-cloud-storage reads ``generation``/``metageneration`` from."""
    if response.status not in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
        return
    live = _live(storage, request.params["bucket_name"], request.params["object_id"])
    if live is not None:
        response["X-Goog-Generation"] = str(live["generation"])
        response["X-Goog-Metageneration"] = str(live["metageneration"])
        response["X-Goog-Storage-Class"] = live.get("storageClass") or "STANDARD"
        response["X-Goog-Stored-Content-Length"] = str(live.get("size"))


def _check_compose(request, response, storage) -> bool:
    """compose: each source's ``generation``/``objectPreconditions``, then the destination's conditions."""
    bucket = request.params["bucket_name"]
    data = request.data if isinstance(request.data, dict) else {}
    for source in data.get("sourceObjects") or []:
        live = _live(storage, bucket, source.get("name"))
        if live is None:  # the emulator answers 404
            return False
        wanted = source.get("generation")
        if wanted is not None and int(wanted) != int(live["generation"]):
            _not_found(response, bucket, source["name"])
            return True
        wanted = (source.get("objectPreconditions") or {}).get("ifGenerationMatch")
        if wanted is not None and int(wanted) != int(live["generation"]):
            _precondition_failed(response)
            return True
    return _refuse_write(request.query, _live(storage, bucket, request.params["object_id"]), response)


def _check_copy(request, response, storage) -> bool:
    """copyTo and rewriteTo: ``sourceGeneration`` and ``ifSource...`` on the source, ``if...`` on the destination."""
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    source = _live(storage, bucket, name)
    if source is None:  # the emulator answers 404
        return False
    if _generation_mismatch(request.query, "sourceGeneration", source):
        _not_found(response, bucket, name)
        return True
    if _refuse_write(request.query, source, response, prefix="ifSource"):
        return True
    dest = _live(storage, request.params["dest_bucket_name"], request.params["dest_object_id"])
    return _refuse_write(request.query, dest, response)


def _no_check(request, response, storage) -> bool:
    return False


# --------------------------------------------------------------------------------------------------------------------
# Wrappers
# --------------------------------------------------------------------------------------------------------------------


def _guard(original, check, after=None):
    """Wrap an emulator handler ``(request, response, storage)``: run ``check`` first, ``after`` on success."""

    @functools.wraps(original)
    def handler(request, response, storage, *args, **kwargs):
        _tls.request = request
        try:
            refused = check(request, response, storage)
        except (TypeError, ValueError):  # a non-integer condition or generation
            _send_error(response, HTTPStatus.BAD_REQUEST, "invalid", "Invalid argument.")
            refused = True
        if refused:
            _tls.request = None
            return None
        try:
            result = original(request, response, storage, *args, **kwargs)
        finally:
            _tls.request = None  # don't keep a large upload body alive until the next request
        if after is not None:
            after(request, response, storage)
        return result

    handler._gcs_preconditions = True
    return handler


def _guard_finalize(original):
    """Wrap ``_finalize_resumable_object``, called once the last byte of a resumable upload has arrived."""

    @functools.wraps(original)
    def finalize(response, storage, obj, data, upload_id):
        request = getattr(_tls, "request", None)
        query = request.query if request is not None else {}
        try:
            failure = _condition_failure(query, _live(storage, obj["bucket"], obj["name"]))
        except (TypeError, ValueError):
            failure = _FAILED_MATCH  # unreachable in practice: the same query passed at session creation
        if failure:
            _discard_resumable_session(storage, upload_id)
            _precondition_failed(response)
            return None
        return original(response, storage, obj, data, upload_id)

    finalize._gcs_preconditions = True
    return finalize


def _discard_resumable_session(storage, upload_id: str) -> None:
    try:
        storage.delete_resumable_file_obj(upload_id)
    except NotFound:
        pass
    storage._delete_file(RESUMABLE_DIR, storage.safe_id(upload_id))
    storage._write_config_to_file()


def _fresh_metageneration(original):
    """Wrap ``_make_object_resource`` (every object creation): a new object has metageneration 1 on GCS; the
    emulator bumps it to 2 when the upload carries metadata (which google-cloud-storage always sends)."""

    @functools.wraps(original)
    def make_object_resource(*args, **kwargs):
        obj = original(*args, **kwargs)
        obj["metageneration"] = "1"
        return obj

    make_object_resource._gcs_preconditions = True
    return make_object_resource


def install_preconditions() -> None:
    """Patch gcp-storage-emulator's object handlers in this process (idempotent). See the module docstring."""
    global _installed
    with _install_lock:
        if _installed:
            return
        checks = {
            "insert": (_check_insert, None),
            # upload_partial only records the request for _guard_finalize
            "upload_partial": (_no_check, None),
            "delete": (_check_existing, None),
            "patch": (_check_existing, None),
            "compose": (_check_compose, None),
            "copy": (_check_copy, None),
            "rewrite": (_check_copy, None),
            "get": (_check_read, None),
            "download": (_check_read, _add_generation_headers),
        }
        replaced = {}  # original function -> wrapper
        patch_wrapper = None
        for name, (check, after) in checks.items():
            original = getattr(_objects, name)
            replaced[original] = _guard(original, check, after)
            # Module attribute: for the handlers' calls to each other (get -> download, insert -> upload_partial)
            # and the router's fallback for uploads POSTed without the /upload prefix (``objects.insert``).
            setattr(_objects, name, replaced[original])
            if name == "patch":
                patch_wrapper = replaced[original]
        _objects._make_object_resource = _fresh_metageneration(_objects._make_object_resource)
        _objects._finalize_resumable_object = _guard_finalize(_objects._finalize_resumable_object)

        # The route table captured the function objects at import; its per-route dicts are mutable.
        for _regex, methods in _server.HANDLERS:
            for method, handler in list(methods.items()):
                if handler in replaced:
                    methods[method] = replaced[handler]
            # Blob.update() sends PUT to the object URL, which the emulator answers with 501. Serve it like PATCH
            # (fields missing from the body are kept rather than cleared).
            if methods.get(_server.PATCH) is patch_wrapper and _server.PUT not in methods:
                methods[_server.PUT] = patch_wrapper
        _installed = True


# --------------------------------------------------------------------------------------------------------------------
# Server lifecycle
# --------------------------------------------------------------------------------------------------------------------


def _quiet_logging() -> None:
    # "[RESPONSE] Content handled as string" is logged at WARNING on every text answer; request lines at INFO.
    for name in ("gcp_storage_emulator", "api.object", "api.bucket"):
        logging.getLogger(name).setLevel(logging.ERROR)


class GcsEmulator:
    """Handle on a running emulator. ``url`` is ``http://host:port``, ready for ``STORAGE_EMULATOR_HOST``."""

    def __init__(
        self,
        server,
        url: str,
        port: int,
        data_dir: str | None,
        default_bucket: str | None,
    ):
        self._server = server
        self.url = url
        self.port = port
        self.data_dir = data_dir
        self.default_bucket = default_bucket
        self._stopped = False
        # Loopback control calls must not go through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"GcsEmulator(url={self.url!r}, data_dir={self.data_dir!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and release the port (idempotent; takes up to 0.5 s, the server's poll interval)."""
        if not self._stopped:
            self._stopped = True
            self._server.stop()

    def wipe(self, keep_buckets: bool = True) -> None:
        """Delete all objects (and, with ``keep_buckets=False``, all buckets; the default bucket is then
        re-created). Goes through the server thread, so it cannot race a request in flight."""
        if self._stopped:
            raise RuntimeError("the GCS emulator is stopped")
        self._call("GET", "/wipe?keep-buckets=true" if keep_buckets else "/wipe")
        if not keep_buckets and self.default_bucket:
            self._call("POST", "/storage/v1/b", {"name": self.default_bucket})

    def _call(self, method: str, path: str, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with self._opener.open(request, timeout=30) as answer:
            answer.read()


def _repoint_media_links(storage, base_url: str) -> None:
    """Objects store an absolute ``mediaLink`` (``http://host:port/download/...``) that google-cloud-storage
    downloads from; after a restart on another port the persisted ones point at a dead address. Only values of
    existing keys change (atomic under the GIL, so harmless if the server thread is already answering); they are
    saved with the next write and re-pointed again at every start."""
    for bucket_objects in list(storage.objects.values()):
        for obj in list(bucket_objects.values()):
            link = obj.get("mediaLink") or ""
            if "/download/" in link:
                obj["mediaLink"] = base_url + link[link.find("/download/") :]


def start_gcs(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    data_dir: str | None = None,
    default_bucket: str | None = None,
) -> GcsEmulator:
    """Start gcp-storage-emulator (with :func:`install_preconditions`) in a daemon thread of this process.

    ``port=0`` picks a free port. ``data_dir=None`` keeps everything in memory; otherwise objects live under
    ``<data_dir>/.cloudstorage`` and survive a restart on the same directory. ``default_bucket`` is created if
    missing. The server is single-threaded (one request at a time, HTTP/1.0) by design: its storage is not
    thread-safe.
    """
    install_preconditions()
    _quiet_logging()
    if data_dir is not None:
        data_dir = os.path.abspath(data_dir)
    srv = _server.create_server(
        host,
        port,
        in_memory=data_dir is None,
        default_bucket=default_bucket,
        data_dir=data_dir,
    )
    api = srv._api
    api.daemon = True  # never keep the process alive
    # The HTTP server is bound inside the thread, and Server.start() would wait forever if that fails: catch the
    # error there and raise it here.
    failures: list[BaseException] = []
    serve = api.run

    def run() -> None:
        try:
            serve()
        except BaseException as exc:
            failures.append(exc)
            if api.is_running.is_set():
                logger.exception("GCS emulator stopped serving")

    api.run = run
    api.start()
    while not api.is_running.wait(0.01):
        if not api.is_alive():
            raise OSError(f"GCS emulator could not listen on {host}:{port}: {failures[0] if failures else '?'}")
    bound_port = api._httpd.server_address[1]
    url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    emulator = GcsEmulator(srv, f"http://{url_host}:{bound_port}", bound_port, data_dir, default_bucket)
    _repoint_media_links(srv._storage, emulator.url)
    logger.info("GCS emulator listening on %s (%s)", emulator.url, data_dir or "in memory")
    return emulator
