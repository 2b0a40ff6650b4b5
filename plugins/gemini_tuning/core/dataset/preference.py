"""Preference tuning (DPO) data: validate the Vertex preference JSONL, and convert ``{prompt, chosen, rejected}``.

Pure code, the preference twin of :func:`~gemini_tuning.core.dataset.prepare_dataset`: the same input (raw JSONL
lines, 1-based, e.g. from ``iter_lines``), findings (``Issue``: ``file:line: [rule] message``) and failure
(``DataValidationError`` after the whole file or ``max_errors`` errors).

The format (``/work/shared/reference/vertex-2026-12.md`` §1b, from the docs page gemini-preference-tuning-prepare)
-------------------------------------------------------------------------------------------------------------------
One example per line: ``{"system_instruction"?: {"parts"}, "contents": [{"role", "parts"}], "completions":
[{"score": 1, "completion": {"role": "model", "parts"}}, {"score": 0, "completion": {...}}]}``.

* "The input includes ``contents`` and an optional ``system_instruction``" (``systemInstruction`` is accepted as an
  alias); ``contents`` "supports multi-turn text data that needs to end with a user turn. It doesn't support
  multi-modal data" (turns alternate user/model, starting with user; text parts only);
* "The pair must have one preferred completion and one dispreferred completion": exactly two ``completions``,
  scores "zero or one" (``1.0`` / ``0.0`` as the tutorial writes them are fine), one of each;
* a completion is "a single model turn": one Content object (not a list) with role ``model``;
* "The sum of maximum input and maximum completion token counts must be <= 128K" (§1c: 131,072): with the dataset
  core's estimate, ceil((input chars + longest completion chars) / 4), input = system instruction + contents;
* §1c: training file at most 1 GB, at most 10M examples.

Conversion (:func:`convert_preference_lines`)
---------------------------------------------
``{"prompt", "chosen", "rejected", "system"?}`` (the common DPO shape, e.g. TRL's): ``prompt`` a string, or a list
of chat messages ``{"role": "user"|"assistant"|"system", "content": "..."}`` (a leading system message becomes the
system instruction); ``chosen`` / ``rejected`` a string, or a list of exactly one assistant message. ``chosen``
becomes the completion scored 1, ``rejected`` the one scored 0. Lines already in the Vertex format pass through.
The output is canonical (keys in a fixed order, compact, UTF-8) and then held to the same rules as a native line.
Not done here: wiring into the operator, duplicates, leakage, the validation split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from ..issues import DataValidationError, Issue, json_type
from .limits import CHARS_PER_TOKEN, VERTEX_MAX_FILE_BYTES, VERTEX_MAX_TOKENS_PER_EXAMPLE
from .lines import LongLine

__all__ = ["PREFERENCE_MAX_EXAMPLES", "PREFERENCE_RULES", "PreferenceResult", "convert_preference_example",
           "convert_preference_lines", "preference_issues", "validate_preference_lines"]

PREFERENCE_MAX_EXAMPLES = 10_000_000   # §1c "10M text-only training examples"

#: The rules of this module (``Issue.rule``); the shared line rules keep the meaning of ``limits.RULES``.
PREFERENCE_RULES: dict[str, str] = {
    "invalid-json": "the line is not one valid JSON value",
    "not-utf8": "the line holds bytes that are not UTF-8",
    "line-too-long": "a line longer than max_line_bytes of iter_lines",
    "empty-line": "a blank line is followed by more data (trailing blank lines are fine)",
    "empty-file": "the source has no non-blank line",
    "unknown-format": "not a JSON object, neither the preference format nor {prompt, chosen, rejected}, or both",
    "bad-structure": "a field has the wrong type or is missing",
    "unknown-field": "a field the preference format does not define (warning; dropped by the conversion)",
    "invalid-role": "a contents role outside user/model, or a completion whose role is not model",
    "role-order": "contents turns do not alternate starting with user",
    "last-turn-not-user": "contents do not end with a user turn",
    "empty-text": "a turn, completion or system instruction has no non-blank text",
    "non-text-part": "a part other than text (preference tuning is text only)",
    "completion-count": "completions is not exactly two completions",
    "completion-score": "a score other than 0 or 1, or not one preferred (1) and one dispreferred (0) completion",
    "completion-not-single-turn": "a completion is not a single model turn (a list of turns, several messages)",
    "too-many-tokens": "estimated input + longest completion tokens above 131,072",
    "file-too-large": "the written JSONL above 1 GB",
    "too-many-examples": "more than 10M examples",
}

_NATIVE = {"contents", "completions", "system_instruction", "systemInstruction"}
_PAIR = {"prompt", "chosen", "rejected", "system"}


class _Stop(Exception):
    """Raised internally when max_errors errors have been collected."""


@dataclass(frozen=True)
class PreferenceResult:
    """What one run found (the file was valid: an invalid one raises instead).

    :param count: examples (written to the sink, when there is one).
    :param sha256: SHA-256 of the bytes written (of no bytes without a sink).
    :param bytes: bytes written (or that would be, without a sink).
    :param stats: ``max_input_tokens``, ``max_completion_tokens``, ``max_example_tokens`` (input + longest
        completion, the limit's measure), ``train_tokens`` (sum of that measure) and ``billable_tokens`` (§1c:
        prompt tokens x 2 + completion tokens, summed), all with the core's estimate ceil(chars / 4).
    :param warnings: warning-severity issues.
    :param formats: ``preference`` / ``prompt_chosen_rejected`` -> number of lines.
    """

    count: int
    sha256: str
    bytes: int
    stats: dict
    warnings: list[Issue] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


# ------------------------------------------------------------------------------------------------ one example
def preference_issues(obj: Any, add: Callable[[str, str, str], None]) -> tuple[int, list[int]] | None:
    """Check one decoded example against the preference rules; ``add(rule, message, severity)`` for each finding.

    :returns: (input chars, [chars of each completion]) when no error was found in the structure, else None.
    """
    errors = 0

    def err(rule: str, message: str) -> None:
        nonlocal errors
        errors += 1
        add(rule, message, "error")

    if not isinstance(obj, dict):
        err("unknown-format", f"the line is {json_type(obj, article=True)}, not a JSON object")
        return None
    for key in sorted(set(obj) - _NATIVE):
        add("unknown-field", f"field {key!r} is not part of the preference format", "warning")
    if "system_instruction" in obj and "systemInstruction" in obj:
        err("bad-structure", "both system_instruction and systemInstruction")
    input_chars = 0
    si = obj.get("system_instruction", obj.get("systemInstruction"))
    if si is not None:
        chars = _parts(si, "system_instruction", err)
        if chars == 0:
            err("empty-text", "system_instruction has no non-blank text")
        input_chars += chars or 0
    contents = obj.get("contents")
    if not isinstance(contents, list) or not contents:
        err("bad-structure", "contents is missing" if contents is None else "contents must be a non-empty array")
    else:
        expected = "user"
        for i, turn in enumerate(contents):
            where = f"contents[{i}]"
            if not isinstance(turn, dict):
                err("bad-structure", f"{where} must be an object, not {json_type(turn)}")
                continue
            role = turn.get("role")
            if role not in ("user", "model"):
                err("invalid-role", f"{where}.role is {role!r}; contents roles are 'user' and 'model'")
            elif role != expected:
                err("role-order", f"{where} is a {role} turn; turns alternate user/model starting with user")
            expected = "model" if role == "user" else "user"
            chars = _parts(turn, where, err)
            if chars == 0:
                err("empty-text", f"{where} has no non-blank text")
            input_chars += chars or 0
        last = contents[-1]
        if isinstance(last, dict) and last.get("role") != "user":
            err("last-turn-not-user", f"contents end with a {last.get('role')!r} turn; they must end with a user "
                                      "turn (the completions answer it)")
    completions = obj.get("completions")
    sizes: list[int] = []
    if not isinstance(completions, list):
        err("bad-structure", "completions is missing" if completions is None
            else f"completions must be an array, not {json_type(completions)}")
    else:
        if len(completions) != 2:
            err("completion-count", f"{len(completions)} completion(s); a pair is needed: one preferred (score 1) "
                                    "and one dispreferred (score 0)")
        scores = []
        for i, c in enumerate(completions):
            where = f"completions[{i}]"
            if not isinstance(c, dict):
                err("bad-structure", f"{where} must be an object {{score, completion}}, not {json_type(c)}")
                continue
            for key in sorted(set(c) - {"score", "completion"}):
                add("unknown-field", f"field {where}.{key} is not part of the preference format", "warning")
            score = c.get("score")
            if isinstance(score, bool) or not isinstance(score, (int, float)) or score not in (0, 1):
                err("completion-score", f"{where}.score is {json.dumps(score)}; the only possible values are 0 "
                                        "(dispreferred) and 1 (preferred)")
            else:
                scores.append(int(score))
            turn = c.get("completion")
            if isinstance(turn, list):
                err("completion-not-single-turn", f"{where}.completion is an array of {len(turn)} turn(s); a "
                                                  "completion is a single model turn (one Content object)")
                continue
            if not isinstance(turn, dict):
                err("bad-structure", f"{where}.completion is missing" if turn is None
                    else f"{where}.completion must be an object, not {json_type(turn)}")
                continue
            if turn.get("role") != "model":
                err("invalid-role", f"{where}.completion.role is {turn.get('role')!r}; a completion is a model "
                                    "turn")
            chars = _parts(turn, f"{where}.completion", err)
            if chars == 0:
                err("empty-text", f"{where}.completion has no non-blank text")
            sizes.append(chars or 0)
        if len(completions) == 2 and len(scores) == 2 and sorted(scores) != [0, 1]:
            err("completion-score", f"both completions are scored {scores[0]}; the pair needs one preferred "
                                    "(score 1) and one dispreferred (score 0)")
    if errors:
        return None
    tokens = _tokens(input_chars + max(sizes))
    if tokens > VERTEX_MAX_TOKENS_PER_EXAMPLE:
        err("too-many-tokens", f"about {tokens:,} tokens (ceil(({input_chars:,} input + {max(sizes):,} longest "
                               f"completion chars) / {CHARS_PER_TOKEN})); the limit is "
                               f"{VERTEX_MAX_TOKENS_PER_EXAMPLE:,} for the input plus the longest completion")
        return None
    return input_chars, sizes


def _parts(content: Any, where: str, err: Callable[[str, str], None]) -> int | None:
    """Text characters of a Content's ``parts`` (None when malformed); non-text parts are errors."""
    if not isinstance(content, dict):
        err("bad-structure", f"{where} must be an object with parts, not {json_type(content)}")
        return None
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        err("bad-structure", f"{where}.parts must be a non-empty array" if parts is not None
            else f"{where}.parts is missing")
        return None
    chars, blank = 0, True
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            err("bad-structure", f"{where}.parts[{j}] must be an object, not {json_type(part)}")
            return None
        other, text = sorted(set(part) - {"text"}), part.get("text")
        if other or not isinstance(text, str):
            err("non-text-part" if other else "bad-structure",
                f"{where}.parts[{j}] has {', '.join(other)}; preference tuning takes text only" if other
                else f"{where}.parts[{j}].text must be a string, not {json_type(text)}")
            return None
        chars += len(text)
        blank = blank and not text.strip()
    return 0 if blank else chars


# ------------------------------------------------------------------------------------------------ conversion
def _text(text: str) -> dict:
    return {"parts": [{"text": text}]}


def _pair_side(value: Any, name: str) -> str:
    """``chosen`` / ``rejected``: a string, or a list of exactly one assistant message."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if len(value) != 1:
            raise _ConvertError("completion-not-single-turn", f"{name} holds {len(value)} messages; a completion is "
                                                              "a single model turn")
        msg = value[0]
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), str):
            raise _ConvertError("bad-structure", f"{name}[0] must be a message {{role, content: string}}")
        if msg.get("role", "assistant") not in ("assistant", "model"):
            raise _ConvertError("invalid-role", f"{name}[0].role is {msg.get('role')!r}; a completion is an "
                                                "assistant (model) turn")
        return msg["content"]
    raise _ConvertError("bad-structure", f"{name} must be a string or a list of one message, not {json_type(value)}")


class _ConvertError(ValueError):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def convert_preference_example(obj: dict) -> dict:
    """``{prompt, chosen, rejected, system?}`` -> one example in the Vertex preference format (not yet validated:
    :func:`preference_issues` does that). :raises ValueError: (with ``rule``) when a field cannot be converted.
    """
    for key in ("prompt", "chosen", "rejected"):
        if key not in obj:
            raise _ConvertError("bad-structure", f"{key} is missing ({{prompt, chosen, rejected}} shape)")
    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        raise _ConvertError("bad-structure", f"system must be a string, not {json_type(system)}")
    prompt = obj["prompt"]
    contents: list[dict] = []
    if isinstance(prompt, str):
        contents.append({"role": "user", **_text(prompt)})
    elif isinstance(prompt, list):
        for i, msg in enumerate(prompt):
            if not isinstance(msg, dict) or not isinstance(msg.get("content"), str):
                raise _ConvertError("bad-structure", f"prompt[{i}] must be a message {{role, content: string}}")
            role = msg.get("role")
            if role == "system" and i == 0 and system is None:
                system = msg["content"]
            elif role in ("user", "assistant", "model"):
                contents.append({"role": "user" if role == "user" else "model", **_text(msg["content"])})
            else:
                raise _ConvertError("invalid-role", f"prompt[{i}].role is {role!r}; messages are user or "
                                                    "assistant (and one leading system message)")
    else:
        raise _ConvertError("bad-structure", f"prompt must be a string or a list of messages, not "
                                             f"{json_type(prompt)}")
    out: dict = {}
    if system is not None:
        out["system_instruction"] = _text(system)
    out["contents"] = contents
    out["completions"] = [{"score": 1, "completion": {"role": "model", **_text(_pair_side(obj["chosen"], "chosen"))}},
                          {"score": 0, "completion": {"role": "model",
                                                      **_text(_pair_side(obj["rejected"], "rejected"))}}]
    return out


def _canonical(obj: dict) -> dict:
    """A native example in a fixed key order, unknown fields dropped (``system_instruction`` spelled as the docs)."""
    out: dict = {}
    si = obj.get("system_instruction", obj.get("systemInstruction"))
    if si is not None:
        out["system_instruction"] = {"parts": si["parts"]}
    out["contents"] = [{"role": t["role"], "parts": t["parts"]} for t in obj["contents"]]
    out["completions"] = [{"score": int(c["score"]), "completion": {"role": "model", "parts": c["completion"]["parts"]}}
                          for c in obj["completions"]]
    return out


# ------------------------------------------------------------------------------------------------ the file
def validate_preference_lines(lines: Iterable[bytes], *, source_name: str, max_errors: int = 50,
                              sink: BinaryIO | None = None) -> PreferenceResult:
    """Validate a preference JSONL file's ``lines`` (the Vertex format only). With ``sink``, the canonical lines are
    written to it (partial output when it raises: the caller discards it).

    :param lines: raw JSONL lines without their newline, 1-based by position (e.g. from ``iter_lines``).
    :param source_name: how the issues name the file.
    :param max_errors: stop reading after this many errors.
    :param sink: receives the canonical JSONL (optional).
    :raises DataValidationError: when any error-severity rule fired.
    """
    return _run(lines, source_name, int(max_errors), sink, convert=False)


def convert_preference_lines(lines: Iterable[bytes], *, source_name: str, sink: BinaryIO,
                             max_errors: int = 50) -> PreferenceResult:
    """Convert ``{prompt, chosen, rejected, system?}`` lines (and pass Vertex preference lines through) into
    ``sink`` as Vertex preference JSONL, validated like :func:`validate_preference_lines` (line numbers are the
    input's).

    :raises DataValidationError: as :func:`validate_preference_lines`.
    """
    return _run(lines, source_name, int(max_errors), sink, convert=True)


def _run(lines: Iterable[bytes], source_name: str, max_errors: int, sink: BinaryIO | None,
         *, convert: bool) -> PreferenceResult:
    if max_errors < 1:
        raise ValueError(f"max_errors must be >= 1, got {max_errors!r}")
    issues: list[Issue] = []
    errors = 0
    ln = 0

    def add(line: int | None, rule: str, message: str, severity: str = "error") -> None:
        nonlocal errors
        issues.append(Issue(source_name, line, rule, message, severity))  # type: ignore[arg-type]
        if severity == "error":
            errors += 1
            if errors >= max_errors:
                raise _Stop

    hasher = hashlib.sha256()
    count = written = nonblank = blank_start = 0
    formats: dict[str, int] = {}
    stats = {"max_input_tokens": 0, "max_completion_tokens": 0, "max_example_tokens": 0, "train_tokens": 0,
             "billable_tokens": 0, "token_estimate": f"ceil(chars / {CHARS_PER_TOKEN})"}
    size_reported = count_reported = truncated = False
    try:
        for ln, raw in enumerate(lines, 1):
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogatepass")
            if ln == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.__class__ is not LongLine and not raw.strip():
                blank_start = blank_start or ln
                continue
            if blank_start:        # blank lines followed by more data
                n, blank_start = ln - blank_start, 0
                add(ln - n, "empty-line", "empty line" if n == 1 else f"{n} empty lines (to {ln - 1})")
            nonblank += 1
            if raw.__class__ is LongLine:      # never held: iter_lines skipped it
                add(ln, "line-too-long", str(raw))
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                add(ln, "not-utf8", f"byte {exc.start}: {exc.reason}")
                continue
            except ValueError as exc:
                add(ln, "invalid-json", str(exc))
                continue
            kind = "preference"
            if isinstance(obj, dict) and _PAIR & set(obj) and {"prompt", "chosen", "rejected"} & set(obj):
                if _NATIVE & set(obj):
                    add(ln, "unknown-format", "fields of both the preference format (contents/completions) and "
                                              "the {prompt, chosen, rejected} shape")
                    continue
                if not convert:
                    add(ln, "unknown-format", "a {prompt, chosen, rejected} line; the Vertex preference format is "
                                              "{contents, completions} (convert it with convert_preference_lines)")
                    continue
                kind = "prompt_chosen_rejected"
                for key in sorted(set(obj) - _PAIR):
                    add(ln, "unknown-field", f"field {key!r} is not part of the {{prompt, chosen, rejected, "
                                             "system}} shape (dropped)", "warning")
                try:
                    obj = convert_preference_example(obj)
                except _ConvertError as exc:
                    add(ln, exc.rule, str(exc))
                    continue
            elif isinstance(obj, dict) and not _NATIVE & set(obj):
                add(ln, "unknown-format", "neither the preference format {contents, completions} nor "
                                          "{prompt, chosen, rejected}" + ("" if obj else " (empty object)"))
                continue
            found = preference_issues(obj, lambda rule, message, severity, ln=ln: add(ln, rule, message, severity))
            if found is None:
                continue
            try:
                out = json.dumps(_canonical(obj), ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
            except UnicodeEncodeError as exc:       # a lone surrogate escape such as "\ud800"
                add(ln, "not-utf8", f"text holds a lone surrogate escape that cannot be encoded as UTF-8: {exc}")
                continue
            input_chars, sizes = found
            formats[kind] = formats.get(kind, 0) + 1
            count += 1
            input_t, example_t = _tokens(input_chars), _tokens(input_chars + max(sizes))
            for key, value in (("max_input_tokens", input_t), ("max_completion_tokens", _tokens(max(sizes))),
                               ("max_example_tokens", example_t)):
                stats[key] = max(stats[key], value)
            stats["train_tokens"] += example_t
            stats["billable_tokens"] += 2 * input_t + sum(_tokens(s) for s in sizes)
            written += len(out)
            if sink is not None and not errors:
                hasher.update(out)
                sink.write(out)
            if written > VERTEX_MAX_FILE_BYTES and not size_reported:
                size_reported = True
                add(ln, "file-too-large", f"the preference file exceeds {VERTEX_MAX_FILE_BYTES:,} bytes here")
            if count > PREFERENCE_MAX_EXAMPLES and not count_reported:
                count_reported = True
                add(ln, "too-many-examples", f"more than {PREFERENCE_MAX_EXAMPLES:,} examples (the limit of "
                                             "preference tuning)")
        if not nonblank:
            add(None, "empty-file", "the source has no example")
    except _Stop:
        truncated = True
    if errors:
        raise DataValidationError(issues, truncated=truncated)
    return PreferenceResult(count=count, sha256=hasher.hexdigest(), bytes=written, stats=stats,
                            warnings=[i for i in issues if i.severity == "warning"], formats=formats)
