"""The targets' rules: per example (tokens on Vertex; lengths, one text pair and no system instruction, tools or
non-text parts on the Gemini API) and per file, for a training file and for a separate validation file.

A training file is held to the training rules (``too-few-examples``, and on Vertex ``validation-too-large`` for
the split it makes); a separate validation file to the validation rules only: on Vertex at most 5,000 examples, or
at most 30 % of the training examples when there are more than 1,000 (``validation-too-large``), with no minimum;
the Gemini API takes no validation file (``validation-unsupported``). Limits: :mod:`.limits`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..issues import DataValidationError, Issue
from .limits import (
    CHARS_PER_TOKEN,
    GEMINI_MAX_INPUT_CHARS,
    GEMINI_MAX_OUTPUT_CHARS,
    GEMINI_MIN_EXAMPLES,
    VERTEX_MAX_TOKENS_PER_EXAMPLE,
    VERTEX_MAX_VALIDATION_EXAMPLES,
    VERTEX_MAX_VALIDATION_RATIO,
    VERTEX_VALIDATION_RATIO_FROM,
)
from .schema import _GeminiExample
from .turns import _turn_text

if TYPE_CHECKING:
    from .options import DatasetOptions
    from .run import _Run

__all__ = ["check_validation_target"]


class _TargetRules:
    """The per-example target rules, mixed into the run (which provides ``add``, ``vertex`` and ``eval_set``)."""

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


def check_validation_target(options: DatasetOptions, source_name: str) -> None:
    """Refuse a separate validation file for a target that takes no validation data, before anything is read.

    The Gemini API tunes on ``tuningTask.trainingData`` only (``tunedModels.create`` has no validation field, and
    google-genai refuses ``validation_dataset`` in Gemini API mode), so a validation file would be checked,
    uploaded and never used. ``validation_fraction`` still holds examples out of training for the caller's own use.

    :param options: the run's options; only ``target`` is read.
    :param source_name: the validation file, as the issue names it.
    :raises DataValidationError: one ``validation-unsupported`` issue for the whole file (``line`` None).
    """
    if options.target == "gemini_api":
        raise DataValidationError([Issue(
            source_name, None, "validation-unsupported",
            "the Gemini API takes no validation data (tunedModels.create sends training examples only), so this "
            "file would never be used; leave it out or use the vertex target (validation_fraction holds "
            "examples out of training locally, for your own evaluation)")])


def _file_rules(run: _Run, nonblank: int, train: int, val: int) -> None:
    """Whole-file rules of a training file (and the split it makes), checked after the last line."""
    if not nonblank:
        run.add(None, "empty-file", "the source holds no examples")
        return
    if run.vertex:
        if train < 1 and not run.errors:
            run.add(None, "too-few-examples", "no training examples (all went to validation)")
        _validation_size(run, val, train)
    elif train < GEMINI_MIN_EXAMPLES:
        run.add(None, "too-few-examples", f"{train} valid training example(s); the Gemini API needs at least "
                                          f"{GEMINI_MIN_EXAMPLES}")


def _validation_file_rules(run: _Run, nonblank: int, val: int, train: int) -> None:
    """Whole-file rules of a separate validation file that goes with ``train`` training examples: the validation
    size (Vertex), never the training minimum."""
    if not nonblank:
        run.add(None, "empty-file", "the source holds no examples")
        return
    if run.vertex:
        _validation_size(run, val, train)


def _validation_size(run: _Run, val: int, train: int) -> None:
    """Vertex: at most 5,000 validation examples, and at most 30 % of the training examples above 1,000."""
    if val > VERTEX_MAX_VALIDATION_EXAMPLES:
        run.add(None, "validation-too-large", f"{val:,} validation examples; Vertex allows at most "
                                              f"{VERTEX_MAX_VALIDATION_EXAMPLES:,}")
    elif val > VERTEX_VALIDATION_RATIO_FROM and val > VERTEX_MAX_VALIDATION_RATIO * train:
        run.add(None, "validation-too-large", f"{val:,} validation examples is more than 30% of {train:,} "
                                              "training examples (Vertex's limit above 1,000)")
