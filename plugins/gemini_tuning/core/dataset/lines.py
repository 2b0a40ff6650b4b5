"""Reading JSONL bytes under bounds: lines without holding an over-long one, gunzip without a gzip bomb.

See "Bounds on hostile input" in the package docstring (:mod:`gemini_tuning.core.dataset`).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from itertools import chain
from typing import Any, BinaryIO

from .limits import MAX_DECOMPRESSED_BYTES, MAX_LINE_BYTES

__all__ = ["DecompressedTooLarge", "LongLine", "iter_lines"]

# 256 KiB for reads and writes: small enough to stay in the L2 cache while the lines are processed (1 MiB
# chunks measured ~10 % slower), big enough to make per-chunk overhead negligible.
_READ_CHUNK = 256 << 10


class LongLine(bytes):
    """What :func:`iter_lines` yields in place of a line longer than its ``max_line_bytes``: empty bytes (so a
    consumer that ignores it sees a blank line) carrying ``length`` (the line's bytes, without its newline) and
    ``limit``. The line itself was never held in memory. ``str()`` is the ``line-too-long`` message.

    :param length: the line's bytes, without its newline.
    :param limit: the ``max_line_bytes`` it exceeded.
    """

    length: int
    limit: int

    def __new__(cls, length: int, limit: int) -> LongLine:
        obj = super().__new__(cls)
        obj.length, obj.limit = length, limit
        return obj

    def __str__(self) -> str:
        return f"{self.length:,} bytes; the limit is {self.limit:,} bytes per line (max_line_bytes)"

    __repr__ = object.__repr__


class DecompressedTooLarge(ValueError):
    """Raised by :func:`iter_lines` when a gzip stream decompresses to more than ``max_decompressed_bytes``
    (reported by the parsers as the whole-file rule ``decompressed-too-large``).

    :param limit: the ``max_decompressed_bytes`` that was exceeded.
    """

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"the gzip stream decompresses to more than the {limit:,} bytes allowed "
                         "(max_decompressed_bytes)")


def iter_lines(fileobj: BinaryIO, chunk_size: int = _READ_CHUNK, *, max_line_bytes: int = MAX_LINE_BYTES,
               max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES) -> Iterator[bytes]:
    """Yield the lines of a binary stream without their ``\\n``; gunzips if the stream starts with 1f 8b.

    Detection is by magic bytes, not by file name; concatenated gzip members are supported. Reads
    ``chunk_size`` bytes at a time, so memory is bounded by the chunk plus ``max_line_bytes``: a longer line is
    skipped up to its newline (never held) and yielded as a :class:`LongLine` (empty bytes with its ``length``);
    reading goes on with the next line. A gzip stream that decompresses to more than ``max_decompressed_bytes``
    raises :class:`DecompressedTooLarge` (before the lines of the chunk that crossed the limit are yielded). A
    damaged gzip stream raises ``EOFError``/``gzip.BadGzipFile``/``zlib.error`` while iterating (prepare_dataset
    reports it as ``corrupt-gzip``).

    :param fileobj: a binary stream, plain or gzip.
    :param chunk_size: bytes read at a time (256 KiB).
    :param max_line_bytes: a longer line is yielded as a :class:`LongLine` (default :data:`MAX_LINE_BYTES`).
    :param max_decompressed_bytes: the most a gzip stream may decompress to (default
        :data:`MAX_DECOMPRESSED_BYTES`).
    :raises ValueError: for a limit below 1.
    """
    if int(max_line_bytes) < 1 or int(max_decompressed_bytes) < 1:
        raise ValueError("max_line_bytes and max_decompressed_bytes must be >= 1")
    return chain.from_iterable(_line_batches(fileobj, chunk_size, int(max_line_bytes), int(max_decompressed_bytes)))


def _line_batches(fileobj: BinaryIO, chunk_size: int, max_line: int, max_total: int) -> Iterator[list[bytes]]:
    head = b""
    while len(head) < 2:
        more = fileobj.read(2 - len(head))
        if not more:
            break
        head += more
    gz = head == b"\x1f\x8b"
    if gz:
        stream: Any = gzip.GzipFile(fileobj=_Prefixed(head, fileobj), mode="rb")
        head = b""
    else:
        stream = fileobj
    read = stream.read
    check_each = chunk_size + 2 > max_line  # a whole line can fit inside one chunk and still be too long
    pieces: list[bytes] = []  # the start of the current line, at most max_line bytes in all
    pending = 0  # bytes in pieces
    skipping = 0  # > 0: inside an over-long line, this many bytes of it seen (and dropped) so far
    total = 0  # decompressed bytes read (gzip)
    rest = b""  # the part of a chunk after an over-long line, still to be split
    while True:
        if rest:
            chunk, rest = rest, b""
        else:
            chunk = read(chunk_size)
            if head:  # the two bytes read for detection (they may hold a newline)
                chunk, head = head + chunk, b""
            if not chunk:
                break
            if gz:
                total += len(chunk)
                if total > max_total:
                    raise DecompressedTooLarge(max_total)
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                skipping += len(chunk)
                continue
            yield [LongLine(skipping + nl, max_line)]
            skipping = 0
            rest = chunk[nl + 1:]
            continue
        if b"\n" not in chunk:
            pending += len(chunk)
            if pending > max_line:
                skipping, pieces, pending = pending, [], 0
            else:
                pieces.append(chunk)
            continue
        if pieces:
            nl = chunk.find(b"\n")
            if pending + nl > max_line:
                yield [LongLine(pending + nl, max_line)]
                pieces, pending = [], 0
                rest = chunk[nl + 1:]
                continue
            pieces.append(chunk)
            chunk = b"".join(pieces)
            pieces, pending = [], 0
        lines = chunk.split(b"\n")
        last = lines.pop()
        if check_each:
            lines = [line if len(line) <= max_line else LongLine(len(line), max_line) for line in lines]
        yield lines
        if last:
            if len(last) > max_line:
                skipping = len(last)
            else:
                pieces.append(last)
                pending = len(last)
    if skipping:
        yield [LongLine(skipping, max_line)]
    elif pieces:
        yield [b"".join(pieces)]


class _Prefixed:
    """A read-only stream that returns ``prefix`` and then the rest of ``raw``."""

    def __init__(self, prefix: bytes, raw: BinaryIO):
        self._prefix = prefix
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            head, self._prefix = self._prefix, b""
            if size is None or size < 0:
                return head + self._raw.read()
            if size <= len(head):
                head, self._prefix = head[:size], head[size:]
                return head
            return head + self._raw.read(size - len(head))
        return self._raw.read(size)
