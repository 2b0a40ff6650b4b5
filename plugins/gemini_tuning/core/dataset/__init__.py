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

A separate validation file (:func:`prepare_validation_dataset`) is held to the validation rules, not the
training ones: on Vertex ``validation-too-large`` against the size of its training set and ``file-too-large``,
never ``too-few-examples``. The Gemini API takes no validation file at all (``validation-unsupported``, raised
before the file is read: ``tunedModels.create`` carries training examples only).

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
                                               (the split, or a separate validation file vs its training set)
``input-too-long``                 gemini_api  input text > 40,000 characters
``output-too-long``                gemini_api  output text > 5,000 characters
``multi-turn-unsupported``         gemini_api  more than one user/model exchange
``system-instruction-unsupported`` gemini_api  a system instruction or system message
``non-text-part``                  gemini_api  a part other than text (fileData, inlineData, functionCall, ...)
``tools-unsupported``              gemini_api  a ``tools`` field
``payload-too-large``              gemini_api  training JSONL > 4 MB (4*10^6 bytes) -- the inline request limit
``validation-unsupported``         gemini_api  a separate validation file (the Gemini API takes no validation data)
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

Modules
-------
``limits`` the targets' numbers and the rule table; ``options`` :class:`DatasetOptions`; ``lines`` bounded
reading (:func:`iter_lines`); ``schema`` the msgspec structs, decoders and encoder; ``formats`` format detection,
the slow decode path and per-format conversion; ``turns`` the turn checks; ``targets`` the targets' per-example
and per-file rules; ``leakage`` :func:`normalize_prompt`; ``dedup`` the digest set; ``stats`` the length
distributions; ``run`` the state of one run and its issue collection; ``prepare`` the entry points.
"""

from __future__ import annotations

from .leakage import normalize_prompt
from .limits import (
    CHARS_PER_TOKEN,
    GEMINI_MAX_INPUT_CHARS,
    GEMINI_MAX_OUTPUT_CHARS,
    GEMINI_MAX_PAYLOAD_BYTES,
    GEMINI_MIN_EXAMPLES,
    MAX_DECOMPRESSED_BYTES,
    MAX_LINE_BYTES,
    RULES,
    VERTEX_MAX_FILE_BYTES,
    VERTEX_MAX_TOKENS_PER_EXAMPLE,
    VERTEX_MAX_VALIDATION_EXAMPLES,
    VERTEX_MAX_VALIDATION_RATIO,
    VERTEX_VALIDATION_RATIO_FROM,
    Target,
)
from .lines import DecompressedTooLarge, LongLine, iter_lines
from .options import DatasetOptions
from .prepare import PrepareResult, line_ranges, prepare_dataset, prepare_validation_dataset, source_lines
from .targets import check_validation_target

__all__ = [
    "CHARS_PER_TOKEN",
    "GEMINI_MAX_INPUT_CHARS",
    "GEMINI_MAX_OUTPUT_CHARS",
    "GEMINI_MAX_PAYLOAD_BYTES",
    "GEMINI_MIN_EXAMPLES",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_LINE_BYTES",
    "RULES",
    "VERTEX_MAX_FILE_BYTES",
    "VERTEX_MAX_TOKENS_PER_EXAMPLE",
    "VERTEX_MAX_VALIDATION_EXAMPLES",
    "VERTEX_MAX_VALIDATION_RATIO",
    "VERTEX_VALIDATION_RATIO_FROM",
    "DatasetOptions",
    "DecompressedTooLarge",
    "LongLine",
    "PrepareResult",
    "Target",
    "check_validation_target",
    "iter_lines",
    "normalize_prompt",
    "line_ranges",
    "prepare_dataset",
    "source_lines",
    "prepare_validation_dataset",
]
