"""The promotion gate's values (:mod:`gemini_tuning.core.gate`): its configuration (:class:`GateConfig`, validated
on construction), one rule's result (:class:`RuleResult`) and the gate's decision (:class:`GateDecision`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from gemini_tuning.core.vocabulary import (
    GATE_METRIC_NAMES,
    JUDGED_METRICS,
    SUMMARY_METRIC_NAMES,
)

__all__ = ["DECISIONS", "GateConfig", "GateDecision", "RuleResult", "Verdict"]

Verdict = Literal["pass", "fail", "skipped"]
DECISIONS = ("promote", "delete", "no_decision")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class GateConfig:
    """The promotion gate's rules and thresholds (:mod:`gemini_tuning.core.gate`); validated on construction.

    :param min_prompts: the fewest challenger prompts evaluated without error, and the fewest pairs answered by both
        models (``champion_min_pairs``).
    :param max_error_rate: the highest share of failed calls, in [0, 1], for the challenger, the champion and the
        judge (an evidence rule: failing it is "no_decision", not "delete").
    :param thresholds: metric -> the challenger's minimum mean, in [0, 1]; one ``threshold:<metric>`` rule each.
    :param primary_metric: the per-example metric the champion comparison (margin, paired test) is made on.
    :param min_margin: the least mean (challenger - champion) on the primary metric, in [-1, 1]; negative:
        non-inferiority.
    :param confidence: 1 - alpha of the one-sided paired test and the pairwise sign test, in (0, 1).
    :param test: the paired test: ``mcnemar``, ``bootstrap``, or ``auto`` (McNemar when every paired value is 0 or 1).
    :param bootstrap_resamples: resamples of the paired bootstrap.
    :param seed: the bootstrap's random seed (the gate is deterministic).
    :param require_significance: False: the significance rule is skipped (only the margin is checked).
    :param pairwise_min_decisive: the fewest non-tied judged pairs before the pairwise win rate counts.
    :param pairwise_margin: the win rate over non-tied pairs must beat 0.5 + this, in [0, 0.5).
    :param max_dropped_fraction: the largest share of the training examples the tuning service may have dropped,
        in [0, 1]; None: no such rule.
    """

    min_prompts: int = 20
    max_error_rate: float = 0.05
    thresholds: Mapping[str, float] = field(default_factory=dict)  # metric -> minimum
    primary_metric: str = "normalized_match"
    min_margin: float = 0.0  # challenger - champion on the primary metric must be >= this
    confidence: float = 0.95  # alpha = 1 - confidence, for the one-sided paired test
    test: Literal["auto", "mcnemar", "bootstrap"] = "auto"
    bootstrap_resamples: int = 2000
    seed: int = 0
    require_significance: bool = True
    pairwise_min_decisive: int = 10   # non-tied judged pairs needed before the win rate means anything
    pairwise_margin: float = 0.0      # the win rate over non-tied pairs must beat 0.5 + this
    # the most of the training examples the tuning service may have dropped (too many tokens, …); None: no rule
    max_dropped_fraction: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not _is_int(self.min_prompts) or self.min_prompts < 1:
            problems.append(f"min_prompts must be an integer >= 1, got {self.min_prompts!r}")
        if not _is_real(self.max_error_rate) or not 0 <= self.max_error_rate <= 1:
            problems.append(f"max_error_rate must be in [0, 1], got {self.max_error_rate!r}")
        if not isinstance(self.thresholds, Mapping):
            problems.append(f"thresholds must be a mapping metric -> minimum, got {type(self.thresholds).__name__}")
        else:
            for m, v in self.thresholds.items():
                if m not in SUMMARY_METRIC_NAMES + JUDGED_METRICS:
                    problems.append(f"thresholds: unknown metric {m!r}; expected one of: "
                                    f"{', '.join(SUMMARY_METRIC_NAMES + JUDGED_METRICS)}")
                if not _is_real(v) or not 0 <= v <= 1:
                    problems.append(f"thresholds[{m!r}] must be in [0, 1], got {v!r}")
            # A private plain-dict copy: later changes to the caller's mapping do not leak in, and it pickles.
            object.__setattr__(self, "thresholds", dict(self.thresholds))
        if self.primary_metric not in GATE_METRIC_NAMES:
            problems.append(f"primary_metric must be a per-example metric ({', '.join(GATE_METRIC_NAMES)}), "
                            f"got {self.primary_metric!r}")
        if not _is_real(self.min_margin) or not -1 <= self.min_margin <= 1:
            problems.append(f"min_margin must be in [-1, 1], got {self.min_margin!r}")
        if not _is_real(self.confidence) or not 0 < self.confidence < 1:
            problems.append(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.test not in ("auto", "mcnemar", "bootstrap"):
            problems.append(f"test must be 'auto', 'mcnemar' or 'bootstrap', got {self.test!r}")
        if not _is_int(self.bootstrap_resamples) or self.bootstrap_resamples < 1:
            problems.append(f"bootstrap_resamples must be an integer >= 1, got {self.bootstrap_resamples!r}")
        if not _is_int(self.seed) or self.seed < 0:
            problems.append(f"seed must be an integer >= 0, got {self.seed!r}")
        if not _is_int(self.pairwise_min_decisive) or self.pairwise_min_decisive < 1:
            problems.append(f"pairwise_min_decisive must be an integer >= 1, got {self.pairwise_min_decisive!r}")
        if not _is_real(self.pairwise_margin) or not 0 <= self.pairwise_margin < 0.5:
            problems.append(f"pairwise_margin must be in [0, 0.5), got {self.pairwise_margin!r}")
        if self.max_dropped_fraction is not None and (not _is_real(self.max_dropped_fraction)
                                                      or not 0 <= self.max_dropped_fraction <= 1):
            problems.append(f"max_dropped_fraction must be in [0, 1] or None, got {self.max_dropped_fraction!r}")
        if not isinstance(self.require_significance, bool):
            problems.append(f"require_significance must be a boolean, got {self.require_significance!r}")
        if problems:
            raise ValueError("invalid GateConfig: " + "; ".join(problems))

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateConfig:
        """Build from plain JSON-like data (e.g. DAG params); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"invalid GateConfig: unknown key(s) {', '.join(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["thresholds"] = dict(self.thresholds)
        return out


@dataclass(frozen=True)
class RuleResult:
    """One gate rule's outcome.

    :param name: the rule (``min_prompts``, ``threshold:<metric>``, ``champion_margin``, …).
    :param verdict: ``pass``, ``fail`` or ``skipped`` (not applied: no champion, significance off, …).
    :param observed: the value measured (a count, rate, mean or p-value); None when there was none.
    :param threshold: the value it was compared with.
    :param reason: one human-readable sentence: the observed value against the threshold, or why skipped.
    :param details: extra numbers, e.g. the paired test's statistics; None when there are none.
    """

    name: str
    verdict: Verdict
    observed: Any
    threshold: Any
    reason: str
    details: Mapping[str, Any] | None = None  # e.g. the paired test's statistics

    def to_dict(self) -> dict:
        d = asdict(self)
        d["details"] = None if self.details is None else dict(self.details)
        return d


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, and why.

    :param decision: ``promote`` (no rule failed), ``delete`` (a quality rule failed) or ``no_decision`` (an
        evidence rule failed: too few scored prompts or too many errors; the candidate is kept for a rerun).
    :param rules: every rule's result, in the gate's order.
    :param summary: one human-readable line: the decision and the failed rules.
    """

    decision: Literal["promote", "delete", "no_decision"]
    rules: tuple[RuleResult, ...]
    summary: str

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    def rule(self, name: str) -> RuleResult:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"decision": self.decision, "summary": self.summary, "rules": [r.to_dict() for r in self.rules]}
