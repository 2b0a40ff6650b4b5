"""Uploads that never overwrite: :func:`upload_create_only` and :class:`StagedUpload`.

* :func:`upload_create_only` - upload a local file to a name that must not exist yet (``ifGenerationMatch=0``);
  when it does exist, check that it holds the same bytes and reuse it (``created=False``), else raise
  :class:`ContentMismatch`. Never overwrites.
* :class:`StagedUpload` - a file-like sink that uploads what is written to it *while it is being written*, for
  data whose final, content-addressed name is only known at the end (see "Why staged parts" below).

Why staged parts (measured with ``scripts/bench_prepare_upload.py``: 1,024 MB of Vertex JSONL, 2 shared
cores, GCS emulator in its own process; times vary +-30 % with the machine's load)
----------------------------------------------------------------------------------------------------------
The object name is the SHA-256 of the *converted* data, so it is known only once validation has read the whole
input. Reference points in the same runs: the raw ``upload_from_filename`` of the input took 21-30 s (peak RSS
264 MB, about two of its 100 MiB chunks above the interpreter), validation alone 8-10 s (88 MB).

1. Validate into a temp file, then upload it create-only: the times add up, ratio 0.59-0.75 to the raw upload;
   on real GCS, where uploading runs at about the speed of validation, it halves the throughput.
2. One resumable upload under a temporary name while validating, then copy to the final name and delete the
   temporary object: at best raw + copy (2.2 s) + delete (about 2 s) on the emulator (~0.83), and the process
   holds the client's chunk buffers on top of validation (~264 + 30 MB).
3. (chosen) Upload *parts* of 64 MiB under a staging prefix from a background thread while validating (the core
   writes into a local spool file; each full part is uploaded from there), then ``compose`` the parts into the
   final name with ``ifGenerationMatch=0`` and delete them. This is ``gcloud storage cp``'s "parallel composite
   upload"; compose is a server-side operation. Measured: ratio 0.89-1.01, peak RSS 173 MB. The part uploads hide
   behind validation; what remains after it is compose (9.6-10 s) and deleting the parts (1.7-2.2 s), both slow
   only on the emulator, whose compose concatenates ``bytes`` with ``+=`` (quadratic in the number of parts:
   30 x 32 MiB took 15.7 s, 15 x 64 MiB 9.3 s, 10 x 100 MiB 8.0 s; hence 64 MiB parts, which also keep one part,
   i.e. ~64 MB, in memory). 32 parts of 64 MiB (2 GiB) fit one compose; more are composed in groups first.

Data smaller than one part is never staged: :meth:`StagedUpload.finish` uploads it straight to the final name.
Parts are ``STANDARD`` storage class (no early-deletion fee on Nearline/Coldline buckets). On failure (bad data,
an upload error, a kill) :meth:`StagedUpload.abort` cancels queued parts and deletes uploaded ones; only a hard
crash between a part upload and the cleanup can leave parts behind, always under ``<destination>/_staging/`` (a
lifecycle rule deleting ``_staging/`` objects after a day covers that). The final object only ever appears
complete: compose is atomic, and a resumable upload that is never finalized leaves no object. The spool file
needs local disk for the converted data (the size of the training file, at most 1 GB for Vertex).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.api_core.exceptions import NotFound

from .errors import ContentMismatch, is_412
from .streams import CountingReader, FileSlice
from .uris import gs_uri, parse_gs_uri

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Client

log = logging.getLogger(__package__)

DEFAULT_PART_SIZE = 64 * 1024 * 1024  # one staged part; 32 of them (the compose limit) hold 2 GiB
MAX_COMPOSE_SOURCES = 32  # GCS limit per compose request
SHA256_KEY = "sha256"  # custom metadata key holding the hex SHA-256 of an uploaded object


@dataclass(frozen=True)
class UploadResult:
    """What a create-only upload left at its name.

    :param uri: the ``gs://`` object.
    :param generation: the object's GCS generation (the uploaded one, or the reused one's).
    :param created: True: this upload created it; False: an identical object already existed and was reused.
    :param bytes: the object's size in bytes.
    """

    uri: str
    generation: int
    created: bool  # False: an identical object already existed and was reused
    bytes: int


def _default_part_size() -> int:
    """``gemini_tuning.backends.gcs.DEFAULT_PART_SIZE``, read from the package when a :class:`StagedUpload` is
    made: that is the knob callers and tests set (this module's own constant is only its initial value)."""
    from . import DEFAULT_PART_SIZE as size

    return size


def _crc32c_b64(path: str) -> str:
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(8 * 1024 * 1024), b""):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()


def _reuse_existing(blob: Blob, uri: str, *, sha256: str, size: int, local_path: str) -> UploadResult:
    """After a 412 on a create-only write: reuse the live object if it holds the same bytes, else raise."""
    blob.reload()  # NotFound if it vanished meanwhile: let it propagate, the caller's retry will create it
    stored = (blob.metadata or {}).get(SHA256_KEY)
    if stored is not None:
        same = stored == sha256 and blob.size == size
        how = f"sha256 {stored[:16]}..., {blob.size} bytes"
    else:  # written by someone else without our metadata: fall back to size + CRC32C of the bytes
        same = blob.size == size and blob.crc32c == _crc32c_b64(local_path)
        how = f"no sha256 metadata, {blob.size} bytes, crc32c {blob.crc32c}"
    if not same:
        raise ContentMismatch(
            f"{uri} already exists (generation {blob.generation}; {how}) but differs from the data to upload "
            f"(sha256 {sha256[:16]}..., {size} bytes); refusing to overwrite it")
    log.info("%s already exists with the same content (generation %s): reusing it", uri, blob.generation)
    return UploadResult(uri, int(blob.generation), False, size)


def upload_create_only(
    client: Client,
    local_path: str,
    uri: str,
    *,
    sha256: str,
    content_type: str = "application/jsonl",
    progress: Callable[[int], None] | None = None,
) -> UploadResult:
    """Upload ``local_path`` to ``uri`` only if no object exists there (``ifGenerationMatch=0``).

    The object carries ``sha256`` in its custom metadata. If the name is taken (a rerun, a retry, a concurrent
    run), the existing object is compared (stored sha256 and size, or size and CRC32C) and reused with
    ``created=False``; a different object raises :class:`ContentMismatch`. A resumable upload that fails midway is
    never finalized, so no partial object appears. ``progress(bytes_sent)`` is called as chunks are read.
    """
    bucket, name = parse_gs_uri(uri, object_required=True)
    size = os.path.getsize(local_path)
    blob = client.bucket(bucket).blob(name)
    blob.metadata = {SHA256_KEY: sha256}
    try:
        with open(local_path, "rb") as fh:
            blob.upload_from_file(CountingReader(fh, progress), size=size, content_type=content_type,
                                  if_generation_match=0)
    except Exception as exc:
        if not is_412(exc):
            raise
        return _reuse_existing(client.bucket(bucket).blob(name), uri, sha256=sha256, size=size,
                               local_path=local_path)
    return UploadResult(uri, int(blob.generation), True, size)


class StagedUpload:
    """A write-only sink whose bytes are uploaded to GCS while they are still being written.

    Everything written is spooled to a local temp file (memory stays flat); each full part of ``part_size``
    bytes is uploaded by a background thread to ``<staging_uri>.part-NNNNN``. :meth:`finish` then composes the
    parts into the final ``uri`` create-only (or, when nothing was staged yet, uploads the spool file straight to
    ``uri``) and deletes the parts. Use it as a context manager: leaving the block without :meth:`finish`, or
    with an exception, calls :meth:`abort`, which deletes every staged part. See the module docstring for why.

    :param client: the GCS client the parts are uploaded and composed with.
    :param staging_uri: ``gs://`` name prefix of the staged parts (``.part-NNNNN`` appended); the final object must
        be in the same bucket (compose is within one bucket).
    :param part_size: bytes per staged part; None: the package's ``DEFAULT_PART_SIZE`` (64 MiB) at creation.
    :param content_type: the final object's content type.
    :param progress: called with the bytes uploaded so far, as parts (or the direct upload) progress; None: silent.
    :param spool_dir: the directory of the local spool file; None: the system temp directory.
    """

    def __init__(self, client: Client, staging_uri: str, *, part_size: int | None = None,
                 content_type: str = "application/jsonl", progress: Callable[[int], None] | None = None,
                 spool_dir: str | None = None):
        self._client = client
        self._bucket_name, self._staging = parse_gs_uri(staging_uri, object_required=True)
        self._bucket = client.bucket(self._bucket_name)
        self.part_size = int(part_size or _default_part_size())
        self.content_type = content_type
        self._progress = progress
        fd, self.spool_path = tempfile.mkstemp(prefix="gemini-tuning-", suffix=".jsonl", dir=spool_dir)
        self._spool = os.fdopen(fd, "wb")
        self._written = 0  # bytes written to the spool
        self._staged = 0  # bytes handed to the uploader
        self._uploaded = 0  # bytes whose part upload finished
        self._futures: list[Future] = []
        self._parts: list[Blob | None] = []  # by part index; None until uploaded
        self._extra: list[Blob] = []  # intermediate composites (more than 32 parts)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.done = False

    # -- file-like sink
    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = self._spool.write(data)
        self._written += n
        if self._written - self._staged >= self.part_size:
            self._check_failed()
            self._spool.flush()
            while self._written - self._staged >= self.part_size:
                self._submit(self._staged, self.part_size)
        return n

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._spool.flush()

    @property
    def bytes_written(self) -> int:
        return self._written

    # -- internals
    def _submit(self, start: int, length: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcs-staged-upload")
        index = len(self._parts)
        self._parts.append(None)
        self._futures.append(self._pool.submit(self._upload_part, index, start, length))
        self._staged += length

    def _upload_part(self, index: int, start: int, length: int) -> None:
        blob = self._bucket.blob(f"{self._staging}.part-{index:05d}")
        blob.storage_class = "STANDARD"
        stream = FileSlice(self.spool_path, start, length)
        try:
            blob.upload_from_file(stream, size=length, content_type=self.content_type)
        finally:
            stream.close()
        with self._lock:
            self._parts[index] = blob
            self._uploaded += length
            uploaded = self._uploaded
        if self._progress is not None:
            self._progress(uploaded)

    def _check_failed(self) -> None:
        for fut in self._futures:
            if fut.done() and fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]

    def _compose(self, target: Blob, sources: list[Blob], **kwargs: Any) -> Blob:
        target.content_type = self.content_type
        target.compose(sources, **kwargs)
        return target

    # -- outcome
    def finish(self, uri: str, *, sha256: str) -> UploadResult:
        """Publish the written bytes at ``uri`` (create-only, see :func:`upload_create_only`); delete the parts."""
        if self.done:
            raise RuntimeError("StagedUpload.finish() called twice")
        self._spool.close()
        size = self._written
        try:
            if not self._futures:  # smaller than a part: nothing staged, upload straight to the final name
                result = upload_create_only(self._client, self.spool_path, uri, sha256=sha256,
                                            content_type=self.content_type, progress=self._progress)
            else:
                if self._written > self._staged:
                    self._submit(self._staged, self._written - self._staged)
                t0 = time.monotonic()
                for fut in self._futures:
                    fut.result()
                t1 = time.monotonic()
                result = self._publish(uri, sha256=sha256, size=size)
                t2 = time.monotonic()
        except BaseException:
            self.abort()
            raise
        self.done = True
        self._cleanup()
        if self._futures:
            log.info("%s: %d staged part(s); waited %.1fs for the last uploads, compose %.1fs, cleanup %.1fs",
                     uri, len(self._futures), t1 - t0, t2 - t1, time.monotonic() - t2)
        return result

    def _publish(self, uri: str, *, sha256: str, size: int) -> UploadResult:
        sources: list[Blob] = [b for b in self._parts if b is not None]
        level = 0
        while len(sources) > MAX_COMPOSE_SOURCES:  # more than 32 parts: compose in groups first
            level += 1
            groups = [sources[i:i + MAX_COMPOSE_SOURCES] for i in range(0, len(sources), MAX_COMPOSE_SOURCES)]
            sources = []
            for g, group in enumerate(groups):
                blob = self._bucket.blob(f"{self._staging}.compose-{level}-{g:05d}")
                blob.storage_class = "STANDARD"
                sources.append(self._compose(blob, group))
                self._extra.append(blob)
        bucket, name = parse_gs_uri(uri, object_required=True)
        final = self._client.bucket(bucket).blob(name)
        final.metadata = {SHA256_KEY: sha256}
        try:
            self._compose(final, sources, if_generation_match=0)
        except Exception as exc:
            if not is_412(exc):
                raise
            return _reuse_existing(self._client.bucket(bucket).blob(name), uri, sha256=sha256, size=size,
                                   local_path=self.spool_path)
        if final.size is not None and int(final.size) != size:  # cannot happen unless a part was corrupted
            final.delete(if_generation_match=final.generation)  # never leave wrong bytes under a content name
            raise RuntimeError(f"composed {uri} had {final.size} bytes, expected {size}; deleted it")
        if self._progress is not None:
            self._progress(size)
        return UploadResult(uri, int(final.generation), True, size)

    def abort(self) -> None:
        """Stop uploading and delete every staged part (best effort: failures are logged, not raised)."""
        self.done = True
        if self._pool is not None:
            for fut in self._futures:
                fut.cancel()
            self._pool.shutdown(wait=True)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        leftovers = [b for b in self._parts if b is not None] + self._extra
        self._parts = []
        self._extra = []
        for blob in leftovers:
            try:
                blob.delete(if_generation_match=blob.generation)
            except NotFound:
                pass
            except Exception:
                log.warning("could not delete staged part %s", gs_uri(self._bucket_name, blob.name), exc_info=True)
        if not self._spool.closed:
            self._spool.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool_path)

    def __enter__(self) -> StagedUpload:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.done:
            self.abort()
