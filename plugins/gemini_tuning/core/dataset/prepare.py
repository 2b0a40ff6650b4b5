"""The entry points: validate and convert a training file (:func:`prepare_dataset`) or a separate validation file
(:func:`prepare_validation_dataset`), line by line, into hashed sinks.

The loop is written once for both: a validation file is a run in which every example goes to the validation side
and the validation rules of :mod:`.targets` replace the training ones. Everything per line that is not the hot
path's bookkeeping lives in :class:`~gemini_tuning.core.dataset.run._Run`.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

from ..issues import DataValidationError, Issue
from .dedup import _DigestSet
from .leakage import _ascii_leak_key, normalize_prompt
from .limits import CHARS_PER_TOKEN, GEMINI_MAX_PAYLOAD_BYTES, VERTEX_MAX_FILE_BYTES
from .lines import DecompressedTooLarge, LongLine
from .options import DatasetOptions
from .run import _Run, _Stop
from .schema import _encode, _typed_decode, _vertex_decode
from .stats import _distribution
from .targets import _file_rules, _validation_file_rules, check_validation_target

__all__ = ["PrepareResult", "line_ranges", "prepare_dataset", "prepare_validation_dataset", "source_lines"]

_BOM = b"\xef\xbb\xbf"
# 256 KiB for writes, like the reads of iter_lines: small enough to stay in the L2 cache, big enough to make
# per-chunk overhead negligible.
_BUFFER_BYTES = 256 << 10


@dataclass(frozen=True)
class PrepareResult:
    """What one run wrote and found (the file was valid: an invalid one raises instead).

    :param train_count: training examples written (0 for a separate validation file).
    :param validation_count: validation examples written (the split, or every example of a validation file).
    :param dropped_duplicates: duplicates left out (``duplicates="drop"``).
    :param train_sha256: SHA-256 of the exact bytes written to the training sink (of no bytes when none were).
    :param validation_sha256: SHA-256 of the bytes written to the validation sink; None without a validation sink.
    :param train_bytes: bytes written to the training sink.
    :param validation_bytes: bytes written to the validation sink.
    :param stats: counts, length distributions per role and the token estimates (package docstring, "Stats").
    :param warnings: warning-severity issues, at most ``max_errors`` listed per rule plus one summary each.
    :param leaked_lines: lines whose user prompt equals an evaluation prompt.
    :param formats: detected input format -> number of lines.
    :param train_lines: the source file's line (1-based) of each training example written, in order: the service
        reports dropped examples by their index in the written file, and :func:`source_lines` maps them back.
        Not in :meth:`to_dict` (one number per example); :func:`line_ranges` is its compact form.
    """

    train_count: int
    validation_count: int
    dropped_duplicates: int
    train_sha256: str
    validation_sha256: str | None
    train_bytes: int
    validation_bytes: int
    stats: dict
    warnings: list[Issue] = field(default_factory=list)
    leaked_lines: list[int] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    train_lines: array = field(default_factory=lambda: array("I"), repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-able form (for XCom or a report), without ``train_lines``."""
        return {k: v for k, v in asdict(self).items() if k != "train_lines"}


def line_ranges(lines: Iterable[int]) -> list[list[int]]:
    """Source lines as ``[[first, count], ...]`` runs of consecutive lines (a file with few lines left out or split
    off is a handful of runs)."""
    out: list[list[int]] = []
    for ln in lines:
        if out and out[-1][0] + out[-1][1] == ln:
            out[-1][1] += 1
        else:
            out.append([int(ln), 1])
    return out


def source_lines(ranges: list, indices: Iterable[int]) -> dict[int, int | None]:
    """1-based indices into the written training file -> the source file's line (None past its end), from
    :func:`line_ranges`' runs."""
    starts, firsts = [], []
    n = 0
    for first, count in ranges:
        starts.append(n)
        firsts.append(int(first))
        n += int(count)
    out: dict[int, int | None] = {}
    for i in indices:
        k = int(i) - 1
        if not 0 <= k < n:
            out[int(i)] = None
            continue
        r = bisect.bisect_right(starts, k) - 1
        out[int(i)] = firsts[r] + (k - starts[r])
    return out


def prepare_dataset(
    lines: Iterable[bytes],
    *,
    source_name: str,
    options: DatasetOptions,
    train_sink: BinaryIO,
    validation_sink: BinaryIO | None = None,
    eval_prompts: Iterable[str] | None = None,
) -> PrepareResult:
    """Validate and convert a training file's ``lines`` into ``train_sink`` and ``validation_sink``; see the
    package docstring (:mod:`gemini_tuning.core.dataset`) for formats, rules and definitions.

    Sinks receive bytes-like chunks (``bytearray``) of about 256 KiB; each chunk is a fresh object.

    :param lines: raw JSONL lines without their newline, 1-based by position (e.g. from :func:`iter_lines`).
    :param source_name: how the issues name the file.
    :param options: target, split and rule options.
    :param train_sink: receives the training JSONL.
    :param validation_sink: receives the validation split; required when ``options.validation_fraction > 0``.
    :param eval_prompts: evaluation prompts for the leakage check of training examples (None: no check).
    :raises DataValidationError: (after writing possibly partial output, which the caller discards) when any
        error-severity issue was found; reading stops once ``max_errors`` errors are collected (``truncated``).
    :raises ValueError: for a split without a validation sink.
    """
    if options.validation_fraction > 0 and validation_sink is None:
        raise ValueError("validation_fraction > 0 needs a validation_sink")
    return _prepare(lines, source_name, options, train_sink, validation_sink, eval_prompts, None)


def prepare_validation_dataset(
    lines: Iterable[bytes],
    *,
    source_name: str,
    options: DatasetOptions,
    validation_sink: BinaryIO,
    train_count: int,
) -> PrepareResult:
    """Validate and convert a separate validation file's ``lines`` into ``validation_sink``, with the validation
    rules: the per-example rules of the target, ``file-too-large`` for the validation file and, on Vertex,
    ``validation-too-large`` against ``train_count``; not the training-only ``too-few-examples``, and no leakage
    check. Every example is a validation example: the result has ``train_count`` 0 and the digest in
    ``validation_sha256``. A target without validation data (the Gemini API) raises ``validation-unsupported``
    before a line is read (:func:`check_validation_target`).

    :param lines: raw JSONL lines without their newline, 1-based by position (e.g. from :func:`iter_lines`).
    :param source_name: how the issues name the file.
    :param options: target and rule options; ``validation_fraction`` must be 0 (there is nothing to split).
    :param validation_sink: receives the validation JSONL, in chunks like :func:`prepare_dataset`'s sinks.
    :param train_count: the number of training examples the file goes with (Vertex's 30 % rule).
    :raises DataValidationError: as :func:`prepare_dataset`.
    :raises ValueError: for a ``validation_fraction`` other than 0.
    """
    check_validation_target(options, source_name)
    if options.validation_fraction:
        raise ValueError("a separate validation file is not split: validation_fraction must be 0")
    return _prepare(lines, source_name, options, None, validation_sink, None, int(train_count))


def _buffered(buf: bytearray, out: bytes, hasher, sink, limit: int) -> bytearray:
    """``out`` and a newline appended to ``buf``; at ``limit`` bytes the buffer is hashed and written, and a new
    one returned (a fresh object each time: the sink may keep the old one)."""
    buf += out
    buf += b"\n"
    if len(buf) >= limit:
        hasher.update(buf)
        sink.write(buf)
        return bytearray()
    return buf


def _prepare(lines: Iterable[bytes], source_name: str, options: DatasetOptions, train_sink: BinaryIO | None,
             validation_sink: BinaryIO | None, eval_prompts: Iterable[str] | None,
             train_of: int | None) -> PrepareResult:
    """The loop of both entry points. ``train_of``: None for a training file; for a separate validation file the
    number of training examples it goes with (then every example is a validation example, ``train_sink`` is
    never written and the validation file rules apply)."""
    run = _Run(source_name, options, eval_prompts)
    add = run.add
    convert = run.convert
    vertex = run.vertex
    eval_set = run.eval_set
    eval_keys = run.eval_keys
    ascii_leak_key = _ascii_leak_key
    leak_severity = "error" if options.leakage == "fail" else "warning"
    dup_mode = options.duplicates
    split = options.validation_fraction > 0
    threshold = int(options.validation_fraction * 2**64)
    if train_of is not None:  # a separate validation file: every digest (< 2**64) goes to validation
        split, threshold = True, 1 << 64
    seen = _DigestSet()
    seen_add = seen.add
    sha256 = hashlib.sha256
    from_bytes = int.from_bytes
    encode = _encode
    decode = _typed_decode
    vertex_decode = _vertex_decode
    turns = run._turns
    n_contents = 0

    sys_len, user_len, model_len, ex_len = array("I"), array("I"), array("I"), array("I")
    sys_append, user_append, model_append, ex_append = sys_len.append, user_len.append, model_len.append, ex_len.append
    buffer_bytes = _BUFFER_BYTES
    train_hash, val_hash = sha256(), sha256()
    train_buf = bytearray()  # written when >= 256 KiB; a new buffer each time, the sink may keep the old one
    val_buf = bytearray()
    train_bytes = val_bytes = 0
    train_count = val_count = dropped = duplicates = 0
    train_tokens = 0
    leaked = array("I")
    train_lines = array("I")
    train_line = train_lines.append
    blank_start = 0
    nonblank = 0
    ln = 0
    file_limit = VERTEX_MAX_FILE_BYTES if vertex else GEMINI_MAX_PAYLOAD_BYTES
    size_reported = False
    truncated = False
    stopped = False  # reading stopped at a whole-file limit: the whole-file rules would be misleading

    try:
        for ln, raw in enumerate(lines, 1):
            if not raw or raw[0] != 123:  # not "{": blank, BOM, leading whitespace or not an object
                if raw.__class__ is LongLine:  # never held: iter_lines skipped it
                    if blank_start:
                        n = ln - blank_start
                        add(blank_start, "empty-line", "empty line" if n == 1 else f"{n} empty lines (to {ln - 1})")
                        blank_start = 0
                    nonblank += 1
                    add(ln, "line-too-long", str(raw))
                    continue
                if ln == 1 and raw.startswith(_BOM):
                    raw = raw[3:]
                if not raw.strip():
                    if not blank_start:
                        blank_start = ln
                    continue
            if blank_start:
                n = ln - blank_start
                add(blank_start, "empty-line", "empty line" if n == 1 else f"{n} empty lines (to {ln - 1})")
                blank_start = 0
            nonblank += 1
            try:
                vex = vertex_decode(raw)  # fast path: a text-only contents line
            except ValueError:
                vex = None
            if vex is not None and vex.contents is not None:
                n_contents += 1
                res = turns(ln, vex, vex.systemInstruction, vex.contents, "contents", 0, "model")
            else:
                try:
                    ex = decode(raw)
                except ValueError:
                    ex = run.slow(raw, ln)
                    if ex is None:
                        continue
                res = convert(ln, ex)
            if res is None:
                continue
            obj, sys_c, user_c, model_c, prompts = res
            try:
                out = encode(obj)
            except UnicodeEncodeError as exc:  # a lone surrogate escape such as "\ud800"
                add(ln, "not-utf8", f"text holds a lone surrogate escape that cannot be encoded as UTF-8: {exc}")
                continue
            h = from_bytes(sha256(out).digest()[:8], "big") or 1
            if not seen_add(h, ln):
                duplicates += 1
                if dup_mode == "drop":
                    dropped += 1
                    continue
                if dup_mode == "fail":
                    add(ln, "duplicate", f"same example as line {seen.first_line(h)}")
                elif run.warn_counts["duplicate"] < run.max_errors:  # listed: name the first line
                    add(ln, "duplicate", f"same example as line {seen.first_line(h)}", "warning")
                else:  # counted in the summary only
                    add(ln, "duplicate", "same example as an earlier line", "warning")
            total_c = sys_c + user_c + model_c
            if sys_c:
                sys_append(sys_c)
            user_append(user_c)
            model_append(model_c)
            ex_append(total_c)
            if split and h < threshold:
                val_count += 1
                val_bytes += len(out) + 1
                if not run.errors:
                    val_buf = _buffered(val_buf, out, val_hash, validation_sink, buffer_bytes)
                if vertex and val_bytes > VERTEX_MAX_FILE_BYTES and not size_reported:
                    size_reported = True
                    add(ln, "file-too-large", f"the validation file exceeds {VERTEX_MAX_FILE_BYTES:,} bytes here")
                continue
            train_count += 1
            train_line(ln)
            train_tokens += (total_c + 3) >> 2  # ceil(total_c / CHARS_PER_TOKEN)
            train_bytes += len(out) + 1
            if eval_set is not None:
                for p in prompts:
                    if p.isascii() and ascii_leak_key(p) not in eval_keys:  # cheap exact pre-filter
                        continue
                    if normalize_prompt(p) in eval_set:
                        leaked.append(ln)
                        add(ln, "leakage", "the user prompt equals an evaluation prompt", leak_severity)
                        break
            if not run.errors:
                train_buf = _buffered(train_buf, out, train_hash, train_sink, buffer_bytes)
            if train_bytes > file_limit and not size_reported:
                size_reported = True
                if vertex:
                    add(ln, "file-too-large", f"the training file exceeds {VERTEX_MAX_FILE_BYTES:,} bytes here")
                else:
                    add(ln, "payload-too-large", f"the examples exceed the Gemini API inline limit of "
                                                 f"{GEMINI_MAX_PAYLOAD_BYTES:,} bytes here")
    except _Stop:
        truncated = True
    except DecompressedTooLarge as exc:  # raised by iter_lines: nothing after the limit was read
        stopped = True
        try:
            add(None, "decompressed-too-large", str(exc))
        except _Stop:
            truncated = True
    except (EOFError, OSError, zlib.error) as exc:  # damaged gzip stream, raised by iter_lines
        if not isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
            raise
        try:
            add(None, "corrupt-gzip", f"the gzip stream is damaged after line {ln}: {exc}")
        except _Stop:
            truncated = True

    if n_contents:
        run.formats["contents"] += n_contents
    if not truncated and not stopped:
        try:
            if train_of is None:
                _file_rules(run, nonblank, train_count, val_count)
            else:
                _validation_file_rules(run, nonblank, val_count, train_of)
        except _Stop:
            truncated = True
    if run.errors:
        raise DataValidationError(run.issues, truncated=truncated)

    for buf, hasher, sink in ((train_buf, train_hash, train_sink), (val_buf, val_hash, validation_sink)):
        if buf:
            hasher.update(buf)
            sink.write(buf)  # type: ignore[union-attr]
    warnings = [i for i in run.issues if i.severity == "warning"]
    for rule, n in run.warn_counts.items():
        if n > run.max_errors:
            warnings.append(Issue(source_name, None, rule, f"{n - run.max_errors} more {rule} warning(s) not "
                                                           "listed", "warning"))
    stats = {
        "examples": {"train": train_count, "validation": val_count, "dropped_duplicates": dropped,
                     "duplicates": duplicates, "lines": ln},
        "roles": {"system": _distribution(sys_len), "user": _distribution(user_len),
                  "model": _distribution(model_len), "example": _distribution(ex_len)},
        "token_estimate": f"ceil(chars / {CHARS_PER_TOKEN})",
        "epochs": int(options.epochs),
        "train_tokens": train_tokens,
        "billable_tokens": train_tokens * int(options.epochs),
    }
    return PrepareResult(
        train_count=train_count,
        validation_count=val_count,
        dropped_duplicates=dropped,
        train_sha256=train_hash.hexdigest(),
        validation_sha256=val_hash.hexdigest() if validation_sink is not None else None,
        train_bytes=train_bytes,
        validation_bytes=val_bytes,
        stats=stats,
        warnings=warnings,
        leaked_lines=list(leaked),
        formats=dict(run.formats),
        train_lines=train_lines,
    )

