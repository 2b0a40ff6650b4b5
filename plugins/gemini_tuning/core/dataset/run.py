"""The state of one run over a file: options, issue collection (bounded by ``max_errors``), the leakage set.

:class:`_Run` gathers the per-line work of :mod:`.formats`, :mod:`.turns` and :mod:`.targets` (mixins, so the hot
path's method calls cost what they did in one class); :mod:`.prepare` drives it line by line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ..issues import Issue
from .formats import _FormatReader
from .leakage import _first_word_key, normalize_prompt
from .options import DatasetOptions
from .targets import _TargetRules
from .turns import _TurnChecks


class _Stop(Exception):
    """Raised internally when max_errors errors have been collected."""


class _Run(_FormatReader, _TurnChecks, _TargetRules):
    """State of one run over a file (prepare_dataset or prepare_validation_dataset) and its issue collection;
    the per-line work comes from the mixins."""

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
