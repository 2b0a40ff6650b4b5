"""Training-data core: validate JSONL examples, convert them to the target backend's format, split, hash.

Pure code (no Airflow, no network). An operator streams a local or ``gs://`` source through
:func:`iter_lines` and :func:`prepare_dataset`, which writes normalized JSONL to caller-supplied sinks and
returns counts, SHA-256 digests of the bytes written, statistics and warnings. When any error-severity rule
fires, :func:`prepare_dataset` raises :class:`~gemini_tuning.core.issues.DataValidationError` after reading the
whole file (or after ``max_errors`` errors) and the caller discards the sinks.

Input formats (detected per line; ``formats`` in the result counts them)
-----------------------------------------------------------------------
============  ==========================================================================================
format        a line looks like
============  ==========================================================================================
contents      Vertex SFT: ``{"systemInstruction"?: {"parts": [...]}, "contents": [{"role", "parts"}], "tools"?}``
              (``system_instruction`` is accepted as an alias of ``systemInstruction``)
messages      OpenAI-style chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}``
text_input    Gemini API tutorial pairs: ``{"text_input" | "textInput": "...", "output": "..."}``
input_output  plain pairs: ``{"input": "...", "output": "..."}``
============  ==========================================================================================

Targets
-------
``vertex``: one Vertex SFT line per example, keys always in the order ``systemInstruction`` (role forced to
``"system"``), ``contents`` (``role`` then ``parts``), ``tools``; compact separators, UTF-8, keys of
pass-through dicts (non-text parts, ``tools``) sorted. The same example therefore always produces the same
bytes, whichever input format it came from. ``gemini_api``: ``{"text_input": "...", "output": "..."}`` per line.
The validation split works for both targets (the Gemini API takes no validation set, so there it is only a
held-out set for the caller); target limits that concern "the file" apply to training and validation output
separately (``file-too-large``) or to training only (``payload-too-large``, ``too-few-examples``).

Rules (``Issue.rule``)
----------------------
=================================  ==========  =====================================================================
rule                               target      fires when
=================================  ==========  =====================================================================
``invalid-json``                   all         the line is not one valid JSON value (syntax error, trailing data)
``not-utf8``                       all         the line holds bytes that are not UTF-8
``corrupt-gzip``                   all         the gzip stream is truncated or damaged
``line-too-long``                  all         a line (before decoding) > ``max_line_bytes`` of iter_lines (1 MiB)
``decompressed-too-large``         all         a gzip stream > ``max_decompressed_bytes`` of iter_lines (4 GiB),
                                               a whole-file rule: reading stops there
``empty-line``                     all         a blank line is followed by more data (trailing blank lines are fine)
``empty-file``                     all         the source has no non-blank line
``unknown-format``                 all         not a JSON object, no recognised format, or fields of several formats
``bad-structure``                  all         recognised format but a field has the wrong type or is missing
``unknown-field``                  all         a field the detected format does not define (dropped; warn|fail)
``invalid-role``                   all         a role outside user/model (contents) or system/user/assistant (messages)
``role-order``                     all         turns do not alternate starting with user; system message not first
``last-turn-not-model``            all         the last turn is not a model/assistant turn
``empty-text``                     all         a turn, system instruction, input or output has no non-blank text
``duplicate``                      all         same normalized example as an earlier line (warn|fail|drop)
``leakage``                        all         a training user prompt equals an evaluation prompt (off|warn|fail)
``too-few-examples``               all         fewer training examples than needed (gemini_api: 20; vertex: 1)
``too-many-tokens``                vertex      estimated tokens of one example > 131,072 (see token estimate)
``file-too-large``                 vertex      a written JSONL file (train or validation) > 1 GB (10^9 bytes)
``validation-too-large``           vertex      validation > 5,000 examples, or > 1,000 and > 30 % of training examples
``input-too-long``                 gemini_api  input text > 40,000 characters
``output-too-long``                gemini_api  output text > 5,000 characters
``multi-turn-unsupported``         gemini_api  more than one user/model exchange
``system-instruction-unsupported`` gemini_api  a system instruction or system message
``non-text-part``                  gemini_api  a part other than text (fileData, inlineData, functionCall, ...)
``tools-unsupported``              gemini_api  a ``tools`` field
``payload-too-large``              gemini_api  training JSONL > 4 MB (4*10^6 bytes) -- the inline request limit
=================================  ==========  =====================================================================

``duplicate``, ``unknown-field`` and ``leakage`` are warnings or errors depending on the options; all other
rules are errors. Warnings are listed at most ``max_errors`` times per rule; the rest are summarised in one
extra warning of the same rule (``line=None``).

Definitions
-----------
* Characters are Unicode code points of text parts only (non-text parts pass through uncounted apart from
  their ``text``, if any).
* Token estimate = ``ceil(chars / 4)``: per example over all texts including the system instruction, and per
  role over that role's texts. It is a heuristic for English-like text (real tokenizers vary; CJK text has
  more tokens per character), used for the 131,072 limit and the billable estimate.
* Duplicate = same normalized output bytes, compared by the first 8 bytes of their SHA-256 (collision chance
  for 10M examples ~3e-6). The first occurrence is kept. Exact duplicates always fall on the same side of
  the split, so they can never leak from training into validation.
* Split: ``int(sha256(normalized)[:8]) / 2**64 < validation_fraction`` -> validation; independent of line
  order and of the input format.
* Leakage: :func:`normalize_prompt` of every user turn of a training example vs. the normalized evaluation
  prompts (validation examples are not checked).
* Stats: distributions over kept examples (train + validation); percentiles are nearest-rank (the median of
  an even count is the lower middle value); billable tokens = sum of training examples' token estimates x
  epochs.
* Memory: per example 28..44 bytes: an 8-byte digest slot at load 1/4..1/2 (256 shards of open addressing over
  ``array('Q')``, each rehashed on its own) plus 12 bytes of digest/line arrays (to name the first line of a
  listed duplicate), and 16 bytes of length arrays (``array('I')``, turned into exact percentiles through a
  ``Counter`` of distinct lengths at the end). Buffers are 256 KiB for reading and writing. Nothing else
  grows with the file: ~800k examples (1 GB of 1.3 KB lines) measured 70 MB peak RSS for the whole process.
* Bounds on hostile input (:func:`iter_lines`): a line is held only up to ``max_line_bytes`` (default
  :data:`MAX_LINE_BYTES`, 1 MiB); a longer one is skipped to its newline without being kept and reported as
  ``line-too-long`` (the next lines are still read). A gzip stream is decompressed 256 KiB at a time and reading
  stops after ``max_decompressed_bytes`` (default :data:`MAX_DECOMPRESSED_BYTES`, 4 GiB; a Vertex training file
  is at most 1 GB) with ``decompressed-too-large``. So a 64 KB gzip bomb or a 300 MB line without a newline
  costs about 1 MiB of memory, not its size (``scripts/bench_hostile.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import string
import unicodedata
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Any, BinaryIO, Literal

import msgspec

from .issues import DataValidationError, Issue, json_type

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "MAX_LINE_BYTES",
    "RULES",
    "DatasetOptions",
    "DecompressedTooLarge",
    "LongLine",
    "PrepareResult",
    "Target",
    "iter_lines",
    "normalize_prompt",
    "prepare_dataset",
]

Target = Literal["vertex", "gemini_api"]

# ----------------------------------------------------------------------------------------------- limits
CHARS_PER_TOKEN = 4
VERTEX_MAX_TOKENS_PER_EXAMPLE = 131_072
_VERTEX_MAX_CHARS = VERTEX_MAX_TOKENS_PER_EXAMPLE * CHARS_PER_TOKEN  # ceil(c / 4) <= max  <=>  c <= 4 * max
VERTEX_MAX_FILE_BYTES = 1_000_000_000
VERTEX_MAX_VALIDATION_EXAMPLES = 5_000
VERTEX_VALIDATION_RATIO_FROM = 1_000  # above this many validation examples, also <= 30 % of training
VERTEX_MAX_VALIDATION_RATIO = 0.30
GEMINI_MAX_INPUT_CHARS = 40_000
GEMINI_MAX_OUTPUT_CHARS = 5_000
GEMINI_MAX_PAYLOAD_BYTES = 4_000_000
GEMINI_MIN_EXAMPLES = 20
MAX_LINE_BYTES = 1 << 20  # iter_lines: a longer line is reported (line-too-long), never held whole
MAX_DECOMPRESSED_BYTES = 4 << 30  # iter_lines: a gzip stream stops here (decompressed-too-large)

RULES: dict[str, str] = {
    "invalid-json": "the line is not one valid JSON value",
    "not-utf8": "the line holds bytes that are not UTF-8",
    "corrupt-gzip": "the gzip stream is truncated or damaged",
    "line-too-long": "a line longer than max_line_bytes (default 1 MiB)",
    "decompressed-too-large": "a gzip stream decompressing to more than max_decompressed_bytes (default 4 GiB)",
    "empty-line": "a blank line is followed by more data (trailing blank lines are fine)",
    "empty-file": "the source has no non-blank line",
    "unknown-format": "not a JSON object, no recognised format, or fields of several formats",
    "bad-structure": "recognised format but a field has the wrong type or is missing",
    "unknown-field": "a field the detected format does not define (dropped)",
    "invalid-role": "a role outside user/model (contents) or system/user/assistant (messages)",
    "role-order": "turns do not alternate starting with user, or a system message is not first",
    "last-turn-not-model": "the last turn is not a model/assistant turn",
    "empty-text": "a turn, system instruction, input or output has no non-blank text",
    "duplicate": "same normalized example as an earlier line",
    "leakage": "a training user prompt equals an evaluation prompt",
    "too-few-examples": "fewer training examples than the target needs",
    "too-many-tokens": "estimated tokens of one example above 131,072 (vertex)",
    "file-too-large": "a written JSONL file above 1 GB (vertex)",
    "validation-too-large": "validation above 5,000 examples, or above 1,000 and 30 % of training (vertex)",
    "input-too-long": "input above 40,000 characters (gemini_api)",
    "output-too-long": "output above 5,000 characters (gemini_api)",
    "multi-turn-unsupported": "more than one user/model exchange (gemini_api)",
    "system-instruction-unsupported": "a system instruction or system message (gemini_api)",
    "non-text-part": "a part other than text (gemini_api)",
    "tools-unsupported": "a tools field (gemini_api)",
    "payload-too-large": "training JSONL above 4 MB, the inline request limit (gemini_api)",
}


# ----------------------------------------------------------------------------------------------- public types
@dataclass(frozen=True)
class DatasetOptions:
    target: Target = "vertex"
    validation_fraction: float = 0.0
    duplicates: Literal["warn", "fail", "drop"] = "warn"
    unknown_fields: Literal["warn", "fail"] = "warn"
    leakage: Literal["off", "warn", "fail"] = "warn"
    max_errors: int = 50
    epochs: int = 1  # for the billable-token estimate only

    def __post_init__(self) -> None:
        def check(name: str, allowed: tuple) -> None:
            if getattr(self, name) not in allowed:
                raise ValueError(f"DatasetOptions.{name} must be one of {allowed}, got {getattr(self, name)!r}")

        check("target", ("vertex", "gemini_api"))
        check("duplicates", ("warn", "fail", "drop"))
        check("unknown_fields", ("warn", "fail"))
        check("leakage", ("off", "warn", "fail"))
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if int(self.max_errors) < 1:
            raise ValueError(f"max_errors must be >= 1, got {self.max_errors!r}")
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs!r}")


@dataclass(frozen=True)
class PrepareResult:
    train_count: int
    validation_count: int
    dropped_duplicates: int
    train_sha256: str  # sha256 of the exact bytes written to train_sink
    validation_sha256: str | None  # None when there is no validation sink
    train_bytes: int
    validation_bytes: int
    stats: dict
    warnings: list[Issue] = field(default_factory=list)
    leaked_lines: list[int] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)  # detected input format -> number of lines

    def to_dict(self) -> dict:
        """JSON-able form (for XCom or a report)."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------- msgspec schema
# Decoding tries, in order: _VertexLine (text-only Vertex lines, the common case), _Example (any format, one
# C call), then the slow path (generic decode, then a format-aware walk that reports unknown fields, keeps
# non-text parts as plain dicts and lets msgspec.convert name the JSON path of any type error). Unknown
# fields and non-text parts make the typed decodes fail, which is what routes a line to the slow path.
class _TextPart(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    text: str


def _count_parts(parts) -> tuple[int, bool, int]:
    """(characters of text, whether any part has content, number of non-text parts) for one turn's parts."""
    chars = raw = 0
    has = False
    for p in parts:
        if type(p) is _TextPart:
            t = p.text
        else:
            raw += 1
            has = True
            t = p.get("text") or ""
        chars += len(t)
        if not has and t and not t.isspace():
            has = True
    return chars, has, raw


class _Content(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: str
    parts: list[_TextPart]  # may hold plain dicts (non-text parts) after the slow path


class _SystemInstruction(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    role: str | None = None
    parts: list[_TextPart] | None = None


class _Message(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: str
    content: str


class _VertexLine(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """The common case, decoded first: a text-only Vertex line. Same key order as _Example."""

    systemInstruction: _SystemInstruction | None = None
    contents: list[_Content] | None = None
    tools: Any = None


class _Example(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    # Field order == Vertex output key order (None fields are omitted when encoding).
    systemInstruction: _SystemInstruction | None = None
    contents: list[_Content] | None = None
    tools: Any = None
    system_instruction: _SystemInstruction | None = None
    messages: list[_Message] | None = None
    text_input: str | None = None
    textInput: str | None = None
    input: str | None = None
    output: str | None = None


class _GeminiExample(msgspec.Struct, gc=False):
    text_input: str
    output: str


_NON_TEXT_PART_KEYS = frozenset(
    {
        "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult",
        "videoMetadata", "thought", "thoughtSignature", "partMetadata", "mediaResolution",
        "inline_data", "file_data", "function_call", "function_response", "executable_code",
        "code_execution_result", "video_metadata", "thought_signature", "part_metadata", "media_resolution",
    }
)
_PART_KEYS = _NON_TEXT_PART_KEYS | {"text"}
_FORMAT_FIELDS = {
    "contents": ("contents", "systemInstruction", "system_instruction", "tools"),
    "messages": ("messages",),
    "text_input": ("text_input", "textInput", "output"),
    "input_output": ("input", "output"),
}
_ALL_FIELDS = ("systemInstruction", "contents", "tools", "system_instruction", "messages", "text_input",
               "textInput", "input", "output")

_vertex_decode = msgspec.json.Decoder(_VertexLine).decode
_typed_decode = msgspec.json.Decoder(_Example).decode
_generic_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder(order="deterministic").encode
_BOM = b"\xef\xbb\xbf"
# 256 KiB for reads and writes: small enough to stay in the L2 cache while the lines are processed (1 MiB
# chunks measured ~10 % slower), big enough to make per-chunk overhead negligible.
_READ_CHUNK = 256 << 10
_BUFFER_BYTES = 256 << 10


class _Stop(Exception):
    """Raised internally when max_errors errors have been collected."""


# ----------------------------------------------------------------------------------------------- helpers
class LongLine(bytes):
    """What :func:`iter_lines` yields in place of a line longer than its ``max_line_bytes``: empty bytes (so a
    consumer that ignores it sees a blank line) carrying ``length`` (the line's bytes, without its newline) and
    ``limit``. The line itself was never held in memory. ``str()`` is the ``line-too-long`` message."""

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
    (reported by the parsers as the whole-file rule ``decompressed-too-large``)."""

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


_ASCII_STRIP = frozenset(string.punctuation + string.whitespace)
_ASCII_PUNCT = string.punctuation
_ASCII_LEAD = _ASCII_PUNCT + "".join(c for c in map(chr, range(128)) if c.isspace())  # includes \x1c-\x1f


def _strippable(ch: str) -> bool:
    if ch < "\x80":
        return ch in _ASCII_STRIP
    return ch.isspace() or unicodedata.category(ch)[0] == "P"


def normalize_prompt(text: str) -> str:
    """Canonical form of a prompt for the leakage check (training prompts vs evaluation prompts).

    NFKC (non-ASCII only), casefold, collapse runs of whitespace to one space, then strip punctuation
    (ASCII ``string.punctuation`` and Unicode category P*) and whitespace from both ends.

    Not :func:`gemini_tuning.core.metrics.normalize_text`, on purpose: a leaked prompt is the same question however
    it is punctuated, so this strips *every* punctuation mark at the ends ("-5%?" and "5" leak alike), while
    scoring an answer must keep what changes its meaning ("-5" is not "5", "50%" is not "50").
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.casefold().split())
    start, end = 0, len(text)
    while start < end and _strippable(text[start]):
        start += 1
    while end > start and _strippable(text[end - 1]):
        end -= 1
    return text[start:end]


def _first_word_key(normalized: str) -> str:
    """First word of an already normalized prompt, trailing punctuation stripped (see _ascii_leak_key)."""
    word = normalized.split(" ", 1)[0]
    end = len(word)
    while end and _strippable(word[end - 1]):
        end -= 1
    return word[:end]


def _ascii_leak_key(text: str) -> str:
    """``_first_word_key(normalize_prompt(text))`` for ASCII ``text`` without normalizing all of it.

    For ASCII, normalize_prompt is lower() + whitespace collapse + stripping punctuation/whitespace at both ends,
    so its first word is the first whitespace-delimited token after the leading punctuation/whitespace,
    lowercased. Used as an exact pre-filter: a prompt whose key is not the key of some evaluation prompt
    cannot equal it, and the full normalization is skipped.
    """
    if text and text[0] in _ASCII_LEAD:
        text = text.lstrip(_ASCII_LEAD)
    words = text.split(None, 1)
    return words[0].lower().rstrip(_ASCII_PUNCT) if words else ""


class _DigestSet:
    """Set of non-zero 64-bit digests: 256 open-addressing shards over ``array('Q')`` (8 bytes a slot, load
    1/4..1/2), no per-entry Python objects; each shard grows on its own, so a rehash is small. Insertion order
    and lines are kept in two flat arrays (12 bytes an entry, appended sequentially) only to name the first
    line of a reported duplicate, which costs a linear scan but happens at most ``max_errors`` times."""

    __slots__ = ("lines", "order", "shards")

    def __init__(self) -> None:
        self.shards = [[array("Q", bytes(8 * 64)), 63, 0] for _ in range(256)]
        self.order = array("Q")
        self.lines = array("I")

    def add(self, h: int, line: int) -> bool:
        """Insert ``h``; False if it was already there."""
        shard = self.shards[h >> 56]
        keys = shard[0]
        mask = shard[1]
        i = h & mask
        while True:
            k = keys[i]
            if k == h:
                return False
            if not k:
                break
            i = (i + 1) & mask
        keys[i] = h
        self.order.append(h)
        self.lines.append(line)
        shard[2] += 1
        if shard[2] * 2 > mask:
            size = 2 * len(keys)
            new = array("Q", bytes(8 * size))
            mask = size - 1
            for k in keys:
                if k:
                    i = k & mask
                    while new[i]:
                        i = (i + 1) & mask
                    new[i] = k
            shard[0], shard[1] = new, mask
        return True

    def first_line(self, h: int) -> int:
        return self.lines[self.order.index(h)]


def _distribution(values: array) -> dict:
    """count / total / min / median / p95 / max (nearest-rank) of chars and of ceil(chars/4) tokens."""
    n = len(values)
    if not n:
        empty = {"examples": 0, "total": 0, "min": None, "median": None, "p95": None, "max": None}
        return {"chars": empty, "tokens": dict(empty)}
    counts = sorted(Counter(values).items())  # memory ~ number of distinct lengths, not of examples
    ranks = {"median": (n + 1) // 2, "p95": -(-95 * n // 100)}  # nearest rank: ceil(p * n)
    picked: dict[str, int] = {}
    seen = 0
    total_chars = total_tokens = 0
    for value, count in counts:
        seen += count
        total_chars += value * count
        total_tokens += -(-value // CHARS_PER_TOKEN) * count
        for name, rank in ranks.items():
            if name not in picked and seen >= rank:
                picked[name] = value
    chars = {"examples": n, "total": total_chars, "min": counts[0][0], "median": picked["median"],
             "p95": picked["p95"], "max": counts[-1][0]}
    tokens = {k: (v if k == "examples" else (total_tokens if k == "total" else -(-v // CHARS_PER_TOKEN)))
              for k, v in chars.items()}
    return {"chars": chars, "tokens": tokens}


def _detect(c: bool, si: bool, m: bool, ti: bool, tI: bool, inp: bool, out: bool, tools: bool):
    """Return (format, None) or (None, (rule, message)) from which fields are present (not null)."""
    anchors = [name for name, on in (("contents", c), ("messages", m), ("text_input", ti or tI),
                                     ("input", inp)) if on]
    if len(anchors) == 1:
        a = anchors[0]
        if a == "text_input" and ti and tI:
            return None, ("bad-structure", "both text_input and textInput are present; use one")
        return ("input_output" if a == "input" else a), None
    if anchors:
        return None, ("unknown-format", f"fields of several formats: {', '.join(anchors)}")
    found = [n for n, on in (("systemInstruction", si), ("tools", tools), ("output", out)) if on]
    hint = f" (found only {', '.join(found)})" if found else ""
    expected = "contents, messages, text_input/textInput + output, or input + output"
    return None, ("unknown-format", f"no recognised format: expected {expected}{hint}")


def _turn_text(parts: list) -> str:
    if len(parts) == 1 and type(parts[0]) is _TextPart:
        return parts[0].text
    return "".join(p.text if type(p) is _TextPart else (p.get("text") or "") for p in parts)


# ----------------------------------------------------------------------------------------------- the run
class _Run:
    """State of one prepare_dataset call: issue collection, the slow decode path and per-format checks."""

    def __init__(self, source_name: str, options: DatasetOptions, eval_prompts: Iterable[str] | None):
        self.file = source_name
        self.vertex = options.target == "vertex"
        self.max_errors = int(options.max_errors)
        self.issues: list[Issue] = []
        self.errors = 0
        self.warn_counts: Counter = Counter()
        self.formats: Counter = Counter()
        self.unknown_severity = "error" if options.unknown_fields == "fail" else "warning"
        self.eval_set: set[str] | None = None
        if eval_prompts is not None and options.leakage != "off":
            self.eval_set = {p for p in map(normalize_prompt, eval_prompts) if p} or None
        self.eval_keys = {_first_word_key(p) for p in self.eval_set or ()}

    # -- issue collection
    def add(self, line: int | None, rule: str, message: str, severity: str = "error") -> None:
        if severity == "error":
            self.issues.append(Issue(self.file, line, rule, message, "error"))
            self.errors += 1
            if self.errors >= self.max_errors:
                raise _Stop
        else:
            n = self.warn_counts[rule]
            self.warn_counts[rule] = n + 1
            if n < self.max_errors:
                self.issues.append(Issue(self.file, line, rule, message, "warning"))

    # -- slow path: generic decode, unknown fields, non-text parts
    def slow(self, raw: bytes, ln: int) -> _Example | None:
        try:
            obj = _generic_decode(raw)
        except ValueError as exc:  # msgspec.DecodeError or UnicodeDecodeError
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as u:
                self.add(ln, "not-utf8", f"byte 0x{raw[u.start]:02x} at offset {u.start} is not valid UTF-8")
            else:
                self.add(ln, "invalid-json", f"invalid JSON: {exc}")
            return None
        if type(obj) is not dict:
            self.add(ln, "unknown-format", f"expected a JSON object, got {json_type(obj, article=True)}")
            return None
        g = obj.get
        fmt, problem = _detect(g("contents") is not None, g("systemInstruction") is not None
                               or g("system_instruction") is not None, g("messages") is not None,
                               g("text_input") is not None, g("textInput") is not None, g("input") is not None,
                               g("output") is not None, g("tools") is not None)
        if problem:
            self.add(ln, *problem)
            return None
        known = _FORMAT_FIELDS[fmt]
        unknown = [k for k in obj if k not in known]
        clean = {k: v for k, v in obj.items() if k in known}
        raw_parts: list[tuple[str, int, int, dict]] = []  # (where, turn, part index, dict)
        for key in ("systemInstruction", "system_instruction"):
            si = clean.get(key)
            if type(si) is dict:
                clean[key] = si = self._clean(si, ("role", "parts"), key, unknown)
                if type(si.get("parts")) is list:
                    si["parts"] = self._clean_parts(si["parts"], key, -1, f"{key}.parts", unknown, raw_parts)
        if fmt == "contents" and type(clean.get("contents")) is list:
            turns = []
            for i, turn in enumerate(clean["contents"]):
                if type(turn) is dict:
                    turn = self._clean(turn, ("role", "parts"), f"contents[{i}]", unknown)
                    if type(turn.get("parts")) is list:
                        turn["parts"] = self._clean_parts(turn["parts"], "contents", i, f"contents[{i}].parts",
                                                          unknown, raw_parts)
                turns.append(turn)
            clean["contents"] = turns
        elif fmt == "messages" and type(clean.get("messages")) is list:
            clean["messages"] = [self._clean(m, ("role", "content"), f"messages[{i}]", unknown)
                                 if type(m) is dict else m for i, m in enumerate(clean["messages"])]
        if unknown:
            names = ", ".join(unknown[:10]) + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else "")
            self.add(ln, "unknown-field", f"unknown field(s) for the {fmt} format, ignored: {names}",
                     self.unknown_severity)
            if self.unknown_severity == "error":
                return None
        try:
            ex = msgspec.convert(clean, _Example)
        except msgspec.ValidationError as exc:
            self.add(ln, "bad-structure", str(exc))
            return None
        for where, turn, j, part in raw_parts:
            text = part.get("text")
            if text is not None and type(text) is not str:
                path = f"{where}.parts[{j}]" if turn < 0 else f"contents[{turn}].parts[{j}]"
                got = json_type(text, article=True)
                self.add(ln, "bad-structure", f"Expected `str`, got {got} - at `$.{path}.text`")
                return None
            if turn < 0:
                getattr(ex, where).parts[j] = part
            else:
                ex.contents[turn].parts[j] = part
        return ex

    @staticmethod
    def _clean(obj: dict, known: tuple, path: str, unknown: list) -> dict:
        extra = [k for k in obj if k not in known]
        if not extra:
            return obj
        unknown.extend(f"{path}.{k}" for k in extra)
        return {k: v for k, v in obj.items() if k in known}

    @staticmethod
    def _clean_parts(parts: list, where: str, turn: int, path: str, unknown: list, raw_parts: list) -> list:
        out = []
        for j, part in enumerate(parts):
            if type(part) is dict:
                extra = [k for k in part if k not in _PART_KEYS]
                if extra:
                    unknown.extend(f"{path}[{j}].{k}" for k in extra)
                    part = {k: v for k, v in part.items() if k in _PART_KEYS}
                if any(k in _NON_TEXT_PART_KEYS for k in part):
                    raw_parts.append((where, turn, j, part))
                    part = {"text": ""}  # placeholder for the typed conversion; the dict is put back after
            out.append(part)
        return out

    # -- per-format conversion. Each returns (object to encode, system, user, model chars, user prompts)
    #    or None when the line has an error.
    def from_contents(self, ln: int, ex: _Example):
        if ex.system_instruction is not None:
            if ex.systemInstruction is not None:
                self.add(ln, "bad-structure", "both systemInstruction and system_instruction are present")
                return None
            ex.systemInstruction, ex.system_instruction = ex.system_instruction, None
        return self._turns(ln, ex, ex.systemInstruction, ex.contents, "contents", 0, "model")

    def from_messages(self, ln: int, ex: _Example):
        msgs = ex.messages
        system = None
        contents = []
        for i, m in enumerate(msgs):
            role = m.role
            if role == "user" or role == "assistant":
                contents.append(_Content("user" if role == "user" else "model", [_TextPart(m.content)]))
            elif role == "system":
                if i:
                    self.add(ln, "role-order", f"messages[{i}] is a system message; only the first may be")
                    return None
                system = _SystemInstruction("system", [_TextPart(m.content)])
            else:
                self.add(ln, "invalid-role", f"messages[{i}].role is {role!r}; expected system, user or assistant")
                return None
        out = _Example(systemInstruction=system, contents=contents)
        return self._turns(ln, out, system, contents, "messages", 1 if system else 0, "assistant")

    def from_pair(self, ln: int, inp: str | None, out: str | None, inp_name: str):
        if inp is None or out is None:
            self.add(ln, "bad-structure", f"Object missing required field `{inp_name if inp is None else 'output'}`")
            return None
        bad = [n for n, t in ((inp_name, inp), ("output", out)) if not t or t.isspace()]
        if bad:
            self.add(ln, "empty-text", " and ".join(bad) + " has no text")
            return None
        ui, mo = len(inp), len(out)
        if self.vertex:
            if not self._tokens_ok(ln, ui + mo):
                return None
            obj: Any = _Example(contents=[_Content("user", [_TextPart(inp)]), _Content("model", [_TextPart(out)])])
        else:
            if not self._gemini_ok(ln, ui, mo):
                return None
            obj = _GeminiExample(inp, out)
        return obj, 0, ui, mo, (inp,)

    def _turns(self, ln: int, ex: Any, si, contents: list, where: str, offset: int, model_name: str):
        """Fast path of :meth:`_turns_full` for the common case: text-only single-part turns alternating
        user/model and ending with model, non-blank texts. Anything else goes to the full version.

        The two share their checks: this one reports nothing itself, it only recognises the common valid shape
        without the full walk (the hot path of the dataset benchmark) and hands everything else, and every limit,
        to :meth:`_turns_full` and :meth:`_target`, where each rule is written once."""
        full = self._turns_full
        sys_c = 0
        if si is not None:
            parts = si.parts
            if not parts or len(parts) != 1 or type(parts[0]) is not _TextPart:
                return full(ln, ex, si, contents, where, offset, model_name)
            t = parts[0].text
            if not t or t.isspace():
                return full(ln, ex, si, contents, where, offset, model_name)
            sys_c = len(t)
            si.role = "system"
        if not contents:
            return full(ln, ex, si, contents, where, offset, model_name)
        user_c = model_c = 0
        it = iter(contents)
        for c in it:
            parts = c.parts
            if c.role != "user" or len(parts) != 1 or type(parts[0]) is not _TextPart:
                return full(ln, ex, si, contents, where, offset, model_name)
            t = parts[0].text
            if not t or t.isspace():
                return full(ln, ex, si, contents, where, offset, model_name)
            user_c += len(t)
            c = next(it, None)
            if c is None:
                return full(ln, ex, si, contents, where, offset, model_name)
            parts = c.parts
            if c.role != "model" or len(parts) != 1 or type(parts[0]) is not _TextPart:
                return full(ln, ex, si, contents, where, offset, model_name)
            t = parts[0].text
            if not t or t.isspace():
                return full(ln, ex, si, contents, where, offset, model_name)
            model_c += len(t)
        if self.vertex and sys_c + user_c + model_c <= _VERTEX_MAX_CHARS:
            if self.eval_set is None:
                return ex, sys_c, user_c, model_c, ()
            return ex, sys_c, user_c, model_c, [c.parts[0].text for c in contents[::2]]  # the user turns
        return self._target(ln, ex, si, contents, sys_c, user_c, model_c, 0)

    def _turns_full(self, ln: int, ex: Any, si, contents: list, where: str, offset: int, model_name: str):
        """Shared checks for contents / messages: system text, roles, alternation, empty turns, limits."""
        if not contents:
            self.add(ln, "bad-structure", f"{where} has no user/{model_name} turns")
            return None
        ok = True
        n_raw = 0
        sys_c = 0
        if si is not None:
            chars, has, raw = _count_parts(si.parts or ())
            sys_c += chars
            n_raw += raw
            if not has:
                self.add(ln, "empty-text", "system instruction has no text" if where == "contents"
                         else f"{where}[0] (system) has no text")
                ok = False
            si.role = "system"
        user_c = model_c = 0
        bad_role = order = None
        empty = []
        for i, c in enumerate(contents):
            chars, has, raw = _count_parts(c.parts)
            n_raw += raw
            if not has:
                empty.append(i)
            role = c.role
            if role == "user":
                user_c += chars
                if i & 1 and order is None:
                    order = i
            elif role == "model":
                model_c += chars
                if not i & 1 and order is None:
                    order = i
            elif bad_role is None:
                bad_role = i
        if bad_role is not None:
            self.add(ln, "invalid-role", f"contents[{bad_role}].role is {contents[bad_role].role!r}; expected "
                                         "'user' or 'model'")
            return None
        if order is not None:
            got = "user" if contents[order].role == "user" else model_name
            self.add(ln, "role-order", f"{where}[{order + offset}] is a {got} turn; turns must alternate "
                                       f"user/{model_name}, starting with user")
            ok = False
        elif contents[-1].role != "model":
            article = "an" if model_name == "assistant" else "a"
            self.add(ln, "last-turn-not-model", f"the last turn ({where}[{len(contents) - 1 + offset}]) is user;"
                                                f" an example must end with {article} {model_name} turn")
            ok = False
        if empty:
            self.add(ln, "empty-text", ", ".join(f"{where}[{i + offset}]" for i in empty) + " has no text")
            ok = False
        if not ok:
            return None
        return self._target(ln, ex, si, contents, sys_c, user_c, model_c, n_raw)

    def _target(self, ln: int, ex: Any, si, contents: list, sys_c: int, user_c: int, model_c: int, n_raw: int):
        """Target rules for a structurally valid contents/messages example; returns the convert() tuple."""
        ok = True
        prompts: Any = ()
        if self.eval_set is not None:
            prompts = [_turn_text(c.parts) for c in contents if c.role == "user"]
        if self.vertex:
            if not self._tokens_ok(ln, sys_c + user_c + model_c):
                return None
            return ex, sys_c, user_c, model_c, prompts
        # gemini_api: a single text-only user/model pair without system instruction or tools
        if si is not None:
            self.add(ln, "system-instruction-unsupported", "the Gemini API does not take system instructions")
            ok = False
        if len(contents) != 2:
            self.add(ln, "multi-turn-unsupported", f"{len(contents)} turns; the Gemini API takes one input and "
                                                   "one output per example")
            ok = False
        if n_raw:
            self.add(ln, "non-text-part", f"{n_raw} non-text part(s); the Gemini API takes text only")
            ok = False
        if ex.tools is not None:
            self.add(ln, "tools-unsupported", "the Gemini API does not take tools")
            ok = False
        if not ok or not self._gemini_ok(ln, user_c, model_c):
            return None
        texts = ["".join(p.text for p in c.parts) for c in contents]
        return _GeminiExample(texts[0], texts[1]), 0, user_c, model_c, prompts

    def _tokens_ok(self, ln: int, chars: int) -> bool:
        tokens = -(-chars // CHARS_PER_TOKEN)
        if tokens > VERTEX_MAX_TOKENS_PER_EXAMPLE:
            self.add(ln, "too-many-tokens", f"about {tokens:,} tokens (ceil({chars:,} chars / 4)); the limit is "
                                            f"{VERTEX_MAX_TOKENS_PER_EXAMPLE:,} per example")
            return False
        return True

    def _gemini_ok(self, ln: int, inp: int, out: int) -> bool:
        ok = True
        if inp > GEMINI_MAX_INPUT_CHARS:
            self.add(ln, "input-too-long", f"input has {inp:,} characters; the limit is {GEMINI_MAX_INPUT_CHARS:,}")
            ok = False
        if out > GEMINI_MAX_OUTPUT_CHARS:
            self.add(ln, "output-too-long", f"output has {out:,} characters; the limit is "
                                            f"{GEMINI_MAX_OUTPUT_CHARS:,}")
            ok = False
        return ok

    def convert(self, ln: int, ex: _Example):
        """Detect the format of a decoded line, drop foreign fields, dispatch."""
        fmt, problem = _detect(ex.contents is not None, ex.systemInstruction is not None
                               or ex.system_instruction is not None, ex.messages is not None,
                               ex.text_input is not None, ex.textInput is not None, ex.input is not None,
                               ex.output is not None, ex.tools is not None)
        if problem:
            self.add(ln, *problem)
            return None
        self.formats[fmt] += 1
        known = _FORMAT_FIELDS[fmt]
        foreign = [k for k in _ALL_FIELDS if k not in known and getattr(ex, k) is not None]
        if foreign:
            self.add(ln, "unknown-field", f"unknown field(s) for the {fmt} format, ignored: {', '.join(foreign)}",
                     self.unknown_severity)
            if self.unknown_severity == "error":
                return None
            for k in foreign:
                setattr(ex, k, None)
        if fmt == "contents":
            return self.from_contents(ln, ex)
        if fmt == "messages":
            return self.from_messages(ln, ex)
        if fmt == "text_input":
            name = "text_input" if ex.text_input is not None else "textInput"
            return self.from_pair(ln, ex.text_input if ex.text_input is not None else ex.textInput, ex.output, name)
        return self.from_pair(ln, ex.input, ex.output, "input")


# ----------------------------------------------------------------------------------------------- entry point
def prepare_dataset(
    lines: Iterable[bytes],
    *,
    source_name: str,
    options: DatasetOptions,
    train_sink: BinaryIO,
    validation_sink: BinaryIO | None = None,
    eval_prompts: Iterable[str] | None = None,
) -> PrepareResult:
    """Validate and convert ``lines`` (raw JSONL lines, 1-based by position) into ``train_sink`` and
    ``validation_sink``; see the module docstring for formats, rules and definitions.

    Sinks receive bytes-like chunks (``bytearray``) of about 256 KiB; each chunk is a fresh object.
    Raises :class:`DataValidationError` (after writing possibly partial output, which the caller discards)
    when any error-severity issue was found; stops reading once ``max_errors`` errors are collected
    (``truncated=True``). Raises ``ValueError`` for a split without a validation sink.
    """
    if options.validation_fraction > 0 and validation_sink is None:
        raise ValueError("validation_fraction > 0 needs a validation_sink")
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
                    val_buf += out
                    val_buf += b"\n"
                    if len(val_buf) >= buffer_bytes:
                        val_hash.update(val_buf)
                        validation_sink.write(val_buf)  # type: ignore[union-attr]
                        val_buf = bytearray()
                if vertex and val_bytes > VERTEX_MAX_FILE_BYTES and not size_reported:
                    size_reported = True
                    add(ln, "file-too-large", f"the validation file exceeds {VERTEX_MAX_FILE_BYTES:,} bytes here")
                continue
            train_count += 1
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
                train_buf += out
                train_buf += b"\n"
                if len(train_buf) >= buffer_bytes:
                    train_hash.update(train_buf)
                    train_sink.write(train_buf)
                    train_buf = bytearray()
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
            _file_rules(run, nonblank, train_count, val_count)
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
    )


def _file_rules(run: _Run, nonblank: int, train: int, val: int) -> None:
    """Whole-file rules, checked after the last line."""
    if not nonblank:
        run.add(None, "empty-file", "the source holds no examples")
        return
    if run.vertex:
        if train < 1 and not run.errors:
            run.add(None, "too-few-examples", "no training examples (all went to validation)")
        if val > VERTEX_MAX_VALIDATION_EXAMPLES:
            run.add(None, "validation-too-large", f"{val:,} validation examples; Vertex allows at most "
                                                  f"{VERTEX_MAX_VALIDATION_EXAMPLES:,}")
        elif val > VERTEX_VALIDATION_RATIO_FROM and val > VERTEX_MAX_VALIDATION_RATIO * train:
            run.add(None, "validation-too-large", f"{val:,} validation examples is more than 30% of {train:,} "
                                                  "training examples (Vertex's limit above 1,000)")
    elif train < GEMINI_MIN_EXAMPLES:
        run.add(None, "too-few-examples", f"{train} valid training example(s); the Gemini API needs at least "
                                          f"{GEMINI_MIN_EXAMPLES}")
