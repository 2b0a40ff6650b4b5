"""Evaluation prompt sets: JSONL parsing and validation with line-numbered errors.

One JSON object per line::

    {"prompt": str, "reference": str, "metric"?: str, "tags"?: [str], "id"?: str,
     "judge_template"?: str, "pairwise_template"?: str}

``judge_template`` / ``pairwise_template``: this item's metric prompt templates for the autorater (model-based
evaluation, ``services.eval_judge``); ``{prompt}``, ``{response}``, ``{reference}`` and (pairwise)
``{baseline_model_response}`` are filled in. ``bad-template`` when one is not a non-blank string.

Rules (``Issue.rule``; kebab-case like the training-data rules in dataset.py, which share ``not-utf8``,
``invalid-json``, ``unknown-field`` and ``empty-file``). Each violation is an
:class:`~gemini_tuning.core.issues.Issue` with the 1-based line number; all of them are collected, up to
``max_errors``, then a single :class:`~gemini_tuning.core.issues.DataValidationError` is raised:

* ``not-utf8``       - the line is not valid UTF-8 (a UTF-8 BOM on line 1 is accepted and dropped).
* ``invalid-json``   - the line is not one JSON value.
* ``not-an-object``  - the JSON value is not an object.
* ``unknown-field``  - a key other than the seven above (catches typos such as ``"tag"``/``"metrc"``
  that would otherwise be silently ignored).
* ``missing-prompt`` / ``bad-prompt`` / ``empty-prompt`` - ``prompt`` must be a string that is not blank.
* ``missing-reference`` / ``bad-reference`` / ``empty-reference`` - ``reference`` must be a string
  that is not blank (a blank reference makes every metric meaningless: "contains" would always hold).
* ``bad-metric`` / ``unknown-metric`` - ``metric``, when present and not null, must be one of
  :data:`gemini_tuning.core.vocabulary.METRIC_NAMES`.
* ``bad-tags`` / ``empty-tag`` - ``tags``, when present and not null, must be a list of non-blank
  strings (duplicates inside one list are dropped, order kept).
* ``bad-id`` / ``empty-id`` / ``duplicate-id`` - ``id``, when present and not null, must be a
  non-blank string, unique in the file (the duplicate's message names the first line).
* ``empty-file`` (line None) - no prompt at all. Blank lines are skipped silently.
* ``line-too-long`` / ``decompressed-too-large`` (line None) - the bounds of
  :func:`~gemini_tuning.core.dataset.iter_lines` (``max_line_bytes``, ``max_decompressed_bytes``), when the
  lines come from it.

Ids: a given ``id`` is kept verbatim. Otherwise the id is content-addressed,
``"p-" + sha256(prompt, reference)[:12]``, so it is stable across reruns, reordering and insertion of
other lines (a line-number based id would shift whenever a line is inserted above). The second, third...
occurrence of the same (prompt, reference) pair gets ``-2``, ``-3``... in file order; a generated id
that collides with a given id also gets the next free suffix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from gemini_tuning.core.dataset import DecompressedTooLarge, LongLine
from gemini_tuning.core.issues import DataValidationError, Issue, json_type
from gemini_tuning.core.vocabulary import METRIC_NAMES

__all__ = ["ALLOWED_FIELDS", "Prompt", "generated_id", "parse_prompt_set"]

ALLOWED_FIELDS: tuple[str, ...] = ("prompt", "reference", "metric", "tags", "id", "judge_template", "pairwise_template")
_BOM = b"\xef\xbb\xbf"
_decoder = msgspec.json.Decoder()


@dataclass(frozen=True)
class Prompt:
    """One evaluation item. ``metric`` None means "the default per-item metric" (see metrics.py).

    :param id: the item's id: as given, or content-addressed (``p-<sha256>``, see the module docstring).
    :param prompt: the text sent to each model.
    :param reference: the expected answer the metrics compare with.
    :param metric: the per-item metric (one of ``METRIC_NAMES``); None: the default one.
    :param tags: tags to aggregate metrics by (``per_tag``), duplicates dropped, order kept.
    :param judge_template: the autorater's pointwise metric prompt template for this item; None: the default.
    :param pairwise_template: the autorater's pairwise prompt template for this item; None: the default.
    """

    id: str
    prompt: str
    reference: str
    metric: str | None = None
    tags: tuple[str, ...] = ()
    judge_template: str | None = None        # the autorater's pointwise metric prompt template for this item
    pairwise_template: str | None = None     # ... and its pairwise one

    @property
    def extra(self) -> dict:
        """The item's autorater templates (only those it sets)."""
        return {k: v for k, v in (("judge_template", self.judge_template),
                                  ("pairwise_template", self.pairwise_template)) if v}


def generated_id(prompt: str, reference: str) -> str:
    """The content-addressed id used when a line has no ``id`` (before de-duplication suffixes)."""
    payload = json.dumps([prompt, reference], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return "p-" + hashlib.sha256(payload).hexdigest()[:12]


class _TooManyErrors(Exception):
    pass


def _check_required_text(obj: dict, name: str, lineno: int, err) -> bool:
    """A required non-empty string field; reports missing-/bad-/empty-<name>."""
    value = obj.get(name)
    if name not in obj:
        err(lineno, f"missing-{name}", f"missing required field '{name}'")
        return False
    if not isinstance(value, str):
        err(lineno, f"bad-{name}", f"'{name}' must be a string, got {json_type(value)}")
        return False
    if not value.strip():
        err(lineno, f"empty-{name}", f"'{name}' is empty")
        return False
    return True


def parse_prompt_set(lines: Iterable[bytes], *, source_name: str, max_errors: int = 50) -> list[Prompt]:
    """Parse and validate a JSONL prompt set; return the prompts in file order.

    ``lines`` yields raw lines (with or without their line terminator), e.g. an open binary file.
    Raises :class:`DataValidationError` carrying every issue found; ``truncated`` is set when
    collection stopped after ``max_errors`` errors.
    """

    if max_errors < 1:
        raise ValueError("max_errors must be >= 1")
    issues: list[Issue] = []

    def err(line: int | None, rule: str, message: str) -> None:
        issues.append(Issue(source_name, line, rule, message))
        if len(issues) >= max_errors:
            raise _TooManyErrors

    # (line, prompt, reference, metric, tags, given id or None)
    rows: list[tuple[int, str, str, str | None, tuple[str, ...], str | None]] = []
    id_lines: dict[str, int] = {}
    try:
        for lineno, raw in enumerate(lines, start=1):
            if raw.__class__ is LongLine:  # iter_lines skipped it without holding it
                err(lineno, "line-too-long", str(raw))
                continue
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                err(lineno, "not-utf8", f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})")
                continue
            if not text.strip():
                continue
            try:
                obj = _decoder.decode(raw)
            except msgspec.DecodeError as e:
                err(lineno, "invalid-json", f"invalid JSON: {e}")
                continue
            if not isinstance(obj, dict):
                err(lineno, "not-an-object", f"expected a JSON object, got {json_type(obj)}")
                continue
            ok = True
            unknown = sorted(k for k in obj if k not in ALLOWED_FIELDS)
            if unknown:
                err(lineno, "unknown-field",
                    f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ALLOWED_FIELDS)}")
                ok = False

            prompt = obj.get("prompt")
            reference = obj.get("reference")
            for name in ("prompt", "reference"):
                ok = _check_required_text(obj, name, lineno, err) and ok

            metric = obj.get("metric")
            if metric is not None:
                if not isinstance(metric, str):
                    err(lineno, "bad-metric", f"'metric' must be a string, got {json_type(metric)}")
                    ok = False
                elif metric not in METRIC_NAMES:
                    err(lineno, "unknown-metric",
                        f"unknown metric {metric!r}; expected one of: {', '.join(METRIC_NAMES)}")
                    ok = False

            templates = {}
            for name in ("judge_template", "pairwise_template"):
                value = obj.get(name)
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    err(lineno, "bad-template", f"{name!r} must be a non-blank string, got {json_type(value)}")
                    ok = False
                elif value is not None:
                    templates[name] = value

            tags_raw = obj.get("tags")
            tags: tuple[str, ...] = ()
            if tags_raw is not None:
                if not isinstance(tags_raw, list) or not all(isinstance(t, str) for t in tags_raw):
                    err(lineno, "bad-tags", "'tags' must be a list of strings")
                    ok = False
                elif any(not t.strip() for t in tags_raw):
                    err(lineno, "empty-tag", "'tags' contains an empty tag")
                    ok = False
                else:
                    tags = tuple(dict.fromkeys(tags_raw))

            given_id = obj.get("id")
            if given_id is not None:
                if not isinstance(given_id, str):
                    err(lineno, "bad-id", f"'id' must be a string, got {json_type(given_id)}")
                    ok = False
                    given_id = None
                elif not given_id.strip():
                    err(lineno, "empty-id", "'id' is empty")
                    ok = False
                    given_id = None
                elif given_id in id_lines:
                    err(lineno, "duplicate-id", f"duplicate id {given_id!r} (first used on line {id_lines[given_id]})")
                    ok = False
                else:
                    id_lines[given_id] = lineno

            if ok:
                rows.append((lineno, prompt, reference, metric, tags, given_id, templates))
        if not rows and not issues:
            err(None, "empty-file", "the prompt set contains no prompts")
    except _TooManyErrors:
        raise DataValidationError(issues, truncated=True) from None
    except DecompressedTooLarge as exc:
        issues.append(Issue(source_name, None, "decompressed-too-large", str(exc)))
        raise DataValidationError(issues) from None
    if issues:
        raise DataValidationError(issues)

    used: set[str] = set(id_lines)
    out: list[Prompt] = []
    for _lineno, prompt, reference, metric, tags, given_id, templates in rows:
        pid = given_id
        if pid is None:
            base = generated_id(prompt, reference)
            pid, k = base, 1
            while pid in used:
                k += 1
                pid = f"{base}-{k}"
        used.add(pid)
        out.append(Prompt(id=pid, prompt=prompt, reference=reference, metric=metric, tags=tags, **templates))
    return out
