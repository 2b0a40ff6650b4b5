"""The targets' documented limits and the rule table: every number a rule compares against, in one place.

Vertex: ``/work/shared/reference/gemini-tuning-api.md`` section B (limits table; ``vertex-2026-12.md`` 1c agrees).
Gemini API: the same file, section E.3 (40,000 / 5,000 characters, 4 MB inline, at least 20 examples) and E.2
(``tuningTask.trainingData`` is the only data a tuned model takes: no validation set).
"""

from __future__ import annotations

from typing import Literal

Target = Literal["vertex", "gemini_api"]

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
    "validation-unsupported": "a separate validation file for a target that takes no validation data (gemini_api)",
}

