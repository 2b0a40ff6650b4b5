"""Reading: local files and ``gs://`` objects as bounded binary streams, whole small reads, JSONL rows, and the
read-through wrappers that report progress (:class:`CountingReader`) or expose a slice of a file
(:class:`FileSlice`, what a staged part is uploaded from).

Every read that holds a whole object in memory first compares its size (the object's metadata, or the local
file's) with ``max_bytes`` and raises :class:`~.errors.ObjectTooLarge` before downloading.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from .errors import check_size
from .uris import parse_gs_uri

if TYPE_CHECKING:
    from google.cloud.storage import Client

log = logging.getLogger(__package__)

READ_CHUNK_SIZE = 16 * 1024 * 1024  # gs:// sources are read in ranged requests of this size


def open_source(path_or_uri: str, client: Client | None = None, *, chunk_size: int = READ_CHUNK_SIZE,
                max_bytes: int | None = None, what: str = "this input") -> BinaryIO:
    """Open a local file or a ``gs://`` object for streaming binary reads (close it when done).

    A ``gs://`` object is read in ranged requests of ``chunk_size`` bytes, pinned to the generation seen when it
    was opened (a concurrent overwrite fails the read with ``PreconditionFailed`` instead of mixing versions),
    and as stored (``raw_download``: a gzip object stays gzip; :func:`~gemini_tuning.core.dataset.iter_lines`
    detects that by its magic bytes). A missing object raises ``FileNotFoundError`` either way. With
    ``max_bytes``, a larger file or object (its stored size) raises :class:`ObjectTooLarge` before any byte is
    read (``what`` names the data in the message).
    """
    if not path_or_uri.startswith("gs://"):
        fh = open(path_or_uri, "rb")  # noqa: SIM115 - the caller closes it
        if max_bytes is not None:
            try:
                check_size(path_or_uri, os.fstat(fh.fileno()).st_size, max_bytes, what)
            except BaseException:
                fh.close()
                raise
        return fh
    if client is None:
        raise ValueError(f"reading {path_or_uri} needs a storage client")
    bucket, name = parse_gs_uri(path_or_uri, object_required=True)
    blob = client.bucket(bucket).get_blob(name)
    if blob is None:
        raise FileNotFoundError(f"{path_or_uri} does not exist")
    check_size(path_or_uri, blob.size, max_bytes, what)
    return blob.open("rb", chunk_size=chunk_size, raw_download=True, if_generation_match=blob.generation)


def read_bytes(path_or_uri: str, client: Client | None = None, *, max_bytes: int, what: str = "this input") -> bytes:
    """The whole content of a local file or ``gs://`` object of at most ``max_bytes`` (checked before reading,
    and again while reading, so a file that grows meanwhile is not read past the limit)."""
    with open_source(path_or_uri, client, max_bytes=max_bytes, what=what,
                     chunk_size=max(256 * 1024, min(int(max_bytes) + 1, READ_CHUNK_SIZE))) as fh:
        data = fh.read(int(max_bytes) + 1)
    check_size(path_or_uri, len(data), max_bytes, what)
    return data


def read_jsonl(client: Client, uri: str, *, max_bytes: int, what: str = "this read",
               max_line_bytes: int = 16 << 20) -> list[dict]:
    """Read a JSONL object and parse it (one JSON object per non-blank line).

    For data that must be held in memory anyway (Gemini API inline examples, evaluation rows, batch
    predictions); refuses objects larger than ``max_bytes`` before downloading them (:class:`ObjectTooLarge`).
    The object is streamed in chunks at the generation its size was checked on (only the parsed rows are held,
    not the bytes as well), and a line above ``max_line_bytes`` is a ``ValueError`` naming the object and line
    (it is never held whole). A gzip object is decompressed up to ``max_bytes``.
    """
    from ...core.dataset import LongLine, iter_lines

    rows = []
    with open_source(uri, client, max_bytes=max_bytes, what=what, chunk_size=8 << 20) as fh:
        for n, line in enumerate(iter_lines(fh, max_line_bytes=max_line_bytes, max_decompressed_bytes=max_bytes), 1):
            if line.__class__ is LongLine:
                raise ValueError(f"{uri}:{n}: a line of {line}")
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"{uri}:{n}: expected a JSON object, got {type(row).__name__}")
                rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- progress
class ProgressLog:
    """``progress(done_bytes)`` callback that logs bytes and MB/s at most every ``every_bytes`` or ``every_s``.

    :param label: what is being read or uploaded, the start of each log line (``"read train.jsonl"``).
    :param total: the expected size in bytes, logged as "of N MB"; None: unknown, not logged.
    :param logger: where to log (INFO); None: this package's logger.
    :param every_bytes: log again once this many more bytes are done (default 128 MiB)...
    :param every_s: ...or once this many seconds have passed since the last line (default 15).
    """

    def __init__(self, label: str, *, total: int | None = None, logger: logging.Logger | None = None,
                 every_bytes: int = 128 * 1024 * 1024, every_s: float = 15.0):
        self.label = label
        self.total = total
        self.log = logger or log
        self.every_bytes = every_bytes
        self.every_s = every_s
        self.start = self._last_t = time.monotonic()
        self._last_b = 0
        self._lock = threading.Lock()

    def __call__(self, done: int, *, final: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not final and done - self._last_b < self.every_bytes and now - self._last_t < self.every_s:
                return
            self._last_t = now
            self._last_b = done
        rate = done / 1e6 / max(now - self.start, 1e-9)
        of = f" of {self.total / 1e6:,.1f} MB" if self.total else ""
        self.log.info("%s: %s MB%s (%.1f MB/s)", self.label, f"{done / 1e6:,.1f}", of, rate)


class CountingReader:
    """Read-through wrapper that reports the cumulative bytes read (progress of a local read or upload).

    :param raw: the binary stream read through; other attributes are passed on to it.
    :param progress: called with the cumulative byte count after each non-empty read; None: count only.
    :param base: the count to start from (bytes already done before this stream).
    """

    def __init__(self, raw: IO[bytes], progress: Callable[[int], None] | None, base: int = 0):
        self._raw = raw
        self._progress = progress
        self.count = base

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        if self._progress is not None and data:
            self._progress(self.count)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class FileSlice:
    """``length`` bytes of a file from ``start``, seen as a stream that starts at 0 (what the client requires).

    :param path: the local file, opened for reading until :meth:`close`.
    :param start: the byte offset in the file where the slice begins.
    :param length: the slice's size in bytes; reads stop there.
    """

    def __init__(self, path: str, start: int, length: int):
        self._fh = open(path, "rb")  # noqa: SIM115
        self._start = start
        self._length = length
        self._pos = 0
        self._fh.seek(start)

    def read(self, size: int = -1) -> bytes:
        left = self._length - self._pos
        size = left if size is None or size < 0 else min(size, left)
        data = self._fh.read(size)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + pos))
        self._fh.seek(self._start + self._pos)
        return self._pos

    def close(self) -> None:
        self._fh.close()
