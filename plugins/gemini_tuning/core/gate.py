"""The promotion gate: a pure function from per-example scores to "promote", "delete" or "no_decision".

Rules, always reported in this order (every rule has a name, verdict, observed value, threshold and a
human-readable reason). The decision is "promote" iff no rule has verdict "fail"; "no_decision" when an
*evidence* rule fails (1, 2, 2b, 2c: too few scored prompts, or the generation service or the judge failed too
often: an outage is not a verdict, the candidate is kept for a rerun); "delete" when only quality rules fail.

1. ``min_prompts``        - challenger prompts evaluated without error >= ``min_prompts``.
2. ``max_error_rate``     - challenger failed calls / all challenger prompts <= ``max_error_rate``
   (zero prompts: fail).
2b. ``champion_error_rate`` - (with a champion) the same for the champion's answers: a champion that could not
   be asked is no comparison.
2c. ``judge_error_rate``  - (when the gate uses the autorater: pairwise judgements, or a judged metric as a
   threshold or the primary metric) failed judge calls / judged prompts <= ``max_error_rate``.
3. ``threshold:<metric>`` - one per entry of ``thresholds``: the challenger's mean >= the minimum.
   Per-example metrics are averaged from the ExampleScores; the label metrics (label_accuracy,
   macro_f1) exist only in a summary, so they are read from ``challenger_summary`` and fail with a
   reason when it is missing or has no such metric (references not detected as labels).
4. ``champion_min_pairs`` - prompts answered by *both* models >= ``min_prompts`` (a comparison on a
   handful of pairs proves nothing).
5. ``champion_margin``    - mean over pairs of (challenger - champion) on ``primary_metric`` >= ``min_margin``.
   The margin is checked on this point estimate; a negative margin expresses non-inferiority.
6. ``champion_significance`` - the paired test's **one-sided** p-value for "challenger better than
   champion" (H0: challenger <= champion, H1: challenger > champion) <= alpha = 1 - confidence.
   One-sided on purpose: the question is directional ("is the challenger significantly better?"); a
   two-sided test would also reject when the challenger is significantly *worse* and, used with a
   direction check, is the same as a one-sided test at alpha/2 - needlessly conservative.
   The test is McNemar's exact test (``scipy.stats.binomtest`` on the discordant pairs, one-sided) when
   every paired value is 0 or 1 (``test="auto"``), otherwise a seeded paired bootstrap. Skipped (not
   blocking) when ``require_significance`` is False.

Pairs: only prompts answered by both models count (an error on either side drops the pair), keyed by
prompt id and sorted by it, so the bootstrap does not depend on the order answers arrived in.
No champion (``champion=None``): rules 4-6 are "skipped (no champion)" and do not block. A champion
given as an empty sequence, or one sharing no answered prompt with the challenger, is a champion we
cannot beat provably: rules 4-6 fail.

Ties and tiny samples: zero discordant pairs -> p = 1 -> not significant. McNemar's exact p-value
cannot go below 0.5**b, so it needs at least 5 discordant wins (and no loss) for alpha = 0.05. The
bootstrap p-value is floored the same way, at 0.5**(number of non-zero paired differences) - the
smallest p-value an exact sign-flip test on the same pairs could reach - because the bootstrap is
overconfident on a few pairs (with one pair, or all differences equal and positive, every resample
agrees and its raw p-value would be 1/(R+1)).

Comparisons of observed values against thresholds allow a 1e-9 tolerance so that a value exactly equal
to its threshold passes despite float rounding (0.7 - 0.6 < 0.1 in binary floating point).
A value exactly equal to alpha passes (p <= alpha).

7. ``pairwise_min_decisive`` / ``pairwise_win_rate`` (only when pairwise judgements are given): an autorater
   judged challenger vs champion on the same prompt twice, with the order swapped (``services.eval_judge``). Per
   prompt the outcome is ``win``, ``loss``, ``tie`` (the two orders disagree, or the judge said tie) or ``error``
   (a judge call failed: never a loss, left out). Promote only if there are at least ``pairwise_min_decisive``
   non-tied pairs and the challenger's win rate over them beats ``0.5 + pairwise_margin`` with a one-sided sign
   (binomial) test: p = P[Bin(wins + losses, 0.5 + pairwise_margin) >= wins] <= alpha. The verdict carries the
   wins, losses, ties, errors and the p-value. Skipped without a champion (nothing to compare with).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np

from gemini_tuning.core.metrics import ExampleScores
from gemini_tuning.core.vocabulary import (
    GATE_METRIC_NAMES,
    JUDGED_METRICS,
    LABEL_METRIC_NAMES,
    SUMMARY_METRIC_NAMES,
)

__all__ = [
    "GateConfig",
    "GateDecision",
    "RuleResult",
    "decide",
    "mcnemar_exact",
    "paired_bootstrap",
    "pairwise_rules",
    "sign_test",
    "DECISIONS",
    "EVIDENCE_RULES",
]

EPS = 1e-9
_ZERO = 1e-12  # |difference| below this is a tie
_CHUNK = 256  # bootstrap resamples drawn per block (bounded memory; fixed so results never depend on it)
Verdict = Literal["pass", "fail", "skipped"]
NO_CHAMPION = "skipped (no champion)"
#: rules whose failure means "not enough evidence" (an outage, too few scored prompts): no decision, not delete
EVIDENCE_RULES = ("min_prompts", "max_error_rate", "champion_error_rate", "judge_error_rate")
DECISIONS = ("promote", "delete", "no_decision")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class GateConfig:
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


# ------------------------------------------------------------------------------------------ tests

def mcnemar_exact(b: int, c: int, *, alternative: Literal["two-sided", "greater", "less"] = "two-sided") -> float:
    """Exact McNemar p-value: binomial test of ``b`` successes in ``b + c`` discordant pairs, p = 0.5.

    ``b`` = pairs the first model (challenger) got right and the second got wrong, ``c`` the reverse.
    ``alternative="greater"`` is the one-sided test of "first model better" (P[X >= b]); the gate uses it.
    No discordant pair -> 1.0 (no evidence either way).
    """
    if not (_is_int(b) and _is_int(c)) or b < 0 or c < 0:
        raise ValueError(f"b and c must be non-negative integers, got {b!r}, {c!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"unknown alternative {alternative!r}")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest  # lazy: scipy.stats is slow to import

    return float(min(1.0, binomtest(b, b + c, 0.5, alternative=alternative).pvalue))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int, seed: int,
                     confidence: float = 0.95) -> dict:
    """Paired bootstrap of mean(a - b): resample pairs with replacement, deterministic for a seed.

    Returns ``{"n", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "confidence", "p_value",
    "p_value_bootstrap", "p_floor", "n_nonzero", "resamples", "seed", "alternative"}`` where ``ci_*`` is the
    two-sided percentile interval at ``confidence`` and ``p_value`` is one-sided for H1: mean(a) > mean(b):
    ``p_value_bootstrap = (1 + #{resampled mean diff <= 0}) / (resamples + 1)``, floored at
    ``p_floor = 0.5 ** n_nonzero`` (the smallest p-value an exact sign-flip test on these pairs can reach).
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    if len(a) == 0:
        raise ValueError("paired_bootstrap needs at least one pair")
    if not _is_int(resamples) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if not (np.isfinite(xa).all() and np.isfinite(xb).all()):
        raise ValueError("paired_bootstrap: scores must be finite")
    d = xa - xb
    n = len(d)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=float)
    for start in range(0, resamples, _CHUNK):
        k = min(_CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        means[start:start + k] = d[idx].mean(axis=1)
    p_boot = (1 + int(np.count_nonzero(means <= _ZERO))) / (resamples + 1)
    n_nonzero = int(np.count_nonzero(np.abs(d) > _ZERO))
    p_floor = 0.5 ** n_nonzero
    alpha = 1.0 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {
        "n": n,
        "mean_a": float(xa.mean()),
        "mean_b": float(xb.mean()),
        "mean_diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "confidence": float(confidence),
        "p_value": float(min(1.0, max(p_boot, p_floor))),
        "p_value_bootstrap": float(p_boot),
        "p_floor": float(p_floor),
        "n_nonzero": n_nonzero,
        "resamples": resamples,
        "seed": seed,
        "alternative": "greater",
    }


# ------------------------------------------------------------------------------------------- gate

def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _index(scores: Sequence[ExampleScores], who: str) -> dict[str, ExampleScores]:
    out: dict[str, ExampleScores] = {}
    for s in scores:
        if s.prompt_id in out:
            raise ValueError(f"{who}: duplicate prompt id {s.prompt_id!r}")
        out[s.prompt_id] = s
    return out


def _rule(name: str, ok: bool, observed: Any, threshold: Any, reason: str,
          details: Mapping | None = None) -> RuleResult:
    return RuleResult(name, "pass" if ok else "fail", observed, threshold, reason, details)


def _error_rate_rule(name: str, who: str, scores: Mapping[str, ExampleScores], maximum: float) -> RuleResult:
    n = len(scores)
    if n == 0:
        return _rule(name, False, None, maximum, f"no {who} prompt was evaluated")
    failed = sum(1 for s in scores.values() if s.scores is None)
    rate = failed / n
    ok = rate <= maximum + EPS
    return _rule(name, ok, rate, maximum, f"{failed} of {n} {who} call(s) failed: error rate {_fmt(rate)} "
                                          f"{'<=' if ok else '>'} maximum {_fmt(maximum)}")


def _judge_error_rule(answered: list[ExampleScores], judged: Sequence[str], pairwise: Mapping[str, str] | None,
                      maximum: float) -> RuleResult:
    """Failed autorater calls over judged prompts: pairwise ``error`` outcomes, and answered prompts lacking a
    judged metric the gate uses (a failed pointwise call scores nothing)."""
    total = failed = 0
    if pairwise is not None:
        total += len(pairwise)
        failed += sum(1 for o in pairwise.values() if o == "error")
    for metric in judged:
        total += len(answered)
        failed += sum(1 for s in answered if metric not in (s.scores or {}))
    if total == 0:
        return _rule("judge_error_rate", False, None, maximum, "no prompt was judged")
    rate = failed / total
    ok = rate <= maximum + EPS
    return _rule("judge_error_rate", ok, rate, maximum,
                 f"{failed} of {total} judge call(s) failed: error rate {_fmt(rate)} "
                 f"{'<=' if ok else '>'} maximum {_fmt(maximum)}")


def _threshold_rule(metric: str, minimum: float, answered: list[ExampleScores],
                    summary: dict | None) -> RuleResult:
    name = f"threshold:{metric}"
    value: float | None
    if metric in LABEL_METRIC_NAMES:
        if summary is None:
            return _rule(name, False, None, minimum,
                         f"{metric} is an aggregate-only metric and no challenger_summary was given")
        value = (summary.get("metrics") or {}).get(metric)
        if value is None:
            why = ("the references were not detected as labels" if metric not in (summary.get("metrics") or {})
                   else "no prompt was answered")
            return _rule(name, False, None, minimum, f"{metric} is not available: {why}")
        value = float(value)
    else:
        if not answered:
            return _rule(name, False, None, minimum, f"{metric}: no prompt was answered without error")
        missing = [s.prompt_id for s in answered if metric not in s.scores]
        if missing and metric not in JUDGED_METRICS:
            raise ValueError(f"metric {metric!r} missing from the scores of {len(missing)} prompt(s), "
                             f"e.g. {missing[:3]!r}")
        scored = [s for s in answered if metric in s.scores]        # a failed judge call scores nothing
        if not scored:
            return _rule(name, False, None, minimum, f"{metric}: no prompt was judged without error")
        value = float(sum(s.scores[metric] for s in scored) / len(scored))
    ok = value >= minimum - EPS
    return _rule(name, ok, value, minimum,
                 f"{metric} = {_fmt(value)} {'>=' if ok else '<'} minimum {_fmt(minimum)}")


def _champion_rules(ch: dict[str, ExampleScores], cp: dict[str, ExampleScores], cfg: GateConfig) -> list[RuleResult]:
    pm = cfg.primary_metric
    ids = sorted(i for i in ch if i in cp and ch[i].scores is not None and cp[i].scores is not None)
    lacking = [i for i in ids if pm not in ch[i].scores or pm not in cp[i].scores]
    if lacking and pm in JUDGED_METRICS:          # a judge error drops the pair, like a generation error
        ids = [i for i in ids if i not in set(lacking)]
    elif lacking:
        raise ValueError(f"primary metric {pm!r} missing from the scores of {len(lacking)} paired prompt(s), "
                         f"e.g. {lacking[:3]!r}")
    xa = [float(ch[i].scores[pm]) for i in ids]
    xb = [float(cp[i].scores[pm]) for i in ids]
    n = len(ids)
    rules = [_rule("champion_min_pairs", n >= cfg.min_prompts, n, cfg.min_prompts,
                   f"{n} prompt(s) answered by both models {'>=' if n >= cfg.min_prompts else '<'} "
                   f"minimum {cfg.min_prompts}")]
    if n == 0:
        rules.append(_rule("champion_margin", False, None, cfg.min_margin,
                           "no prompt was answered by both models: cannot compare"))
        if cfg.require_significance:
            rules.append(_rule("champion_significance", False, None, cfg.alpha,
                               "no prompt was answered by both models: cannot test"))
        else:
            rules.append(RuleResult("champion_significance", "skipped", None, cfg.alpha,
                                    "skipped (require_significance is off)"))
        return rules

    mean_a, mean_b = sum(xa) / n, sum(xb) / n
    diff = sum(x - y for x, y in zip(xa, xb)) / n
    ok = diff >= cfg.min_margin - EPS
    rules.append(_rule(
        "champion_margin", ok, diff, cfg.min_margin,
        f"{pm}: challenger {_fmt(mean_a)} - champion {_fmt(mean_b)} = {_fmt(diff)} over {n} pair(s) "
        f"{'>=' if ok else '<'} margin {_fmt(cfg.min_margin)}",
        {"metric": pm, "n_pairs": n, "challenger_mean": mean_a, "champion_mean": mean_b, "mean_diff": diff}))

    if not cfg.require_significance:
        rules.append(RuleResult("champion_significance", "skipped", None, cfg.alpha,
                                "skipped (require_significance is off)"))
        return rules

    binary = all(v in (0.0, 1.0) for v in xa + xb)
    test = cfg.test if cfg.test != "auto" else ("mcnemar" if binary else "bootstrap")
    alpha = cfg.alpha
    if test == "mcnemar":
        if not binary:
            rules.append(_rule("champion_significance", False, None, alpha,
                               f"test='mcnemar' needs 0/1 scores but {pm} has other values; use 'bootstrap' or 'auto'",
                               {"test": "mcnemar", "metric": pm, "n_pairs": n}))
            return rules
        b = sum(1 for x, y in zip(xa, xb) if x == 1.0 and y == 0.0)
        c = sum(1 for x, y in zip(xa, xb) if x == 0.0 and y == 1.0)
        p = mcnemar_exact(b, c, alternative="greater")
        details = {"test": "mcnemar", "alternative": "greater", "metric": pm, "n_pairs": n,
                   "challenger_only_correct": b, "champion_only_correct": c, "p_value": p}
        what = f"McNemar exact one-sided on {pm}: {b} pair(s) only the challenger got right, {c} only the champion"
    else:
        boot = paired_bootstrap(xa, xb, resamples=cfg.bootstrap_resamples, seed=cfg.seed, confidence=cfg.confidence)
        p = boot["p_value"]
        details = {"test": "bootstrap", "metric": pm, "n_pairs": n, **boot}
        what = (f"paired bootstrap one-sided on {pm} ({cfg.bootstrap_resamples} resamples, seed {cfg.seed}): "
                f"mean diff {_fmt(boot['mean_diff'])}, {_fmt(cfg.confidence * 100)}% CI "
                f"[{_fmt(boot['ci_low'])}, {_fmt(boot['ci_high'])}]")
    ok = p <= alpha
    rules.append(_rule("champion_significance", ok, p, alpha,
                       f"{what}; p = {_fmt(p)} {'<=' if ok else '>'} alpha {_fmt(alpha)}"
                       + ("" if ok else ": not significantly better"), details))
    return rules


PAIRWISE_OUTCOMES = ("win", "loss", "tie", "error")


def sign_test(wins: int, losses: int, p0: float = 0.5) -> float:
    """One-sided exact sign (binomial) test: P[X >= wins] for X ~ Bin(wins + losses, p0). No pair -> 1.0."""
    if not (_is_int(wins) and _is_int(losses)) or wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be non-negative integers, got {wins!r}, {losses!r}")
    if not 0 < p0 < 1:
        raise ValueError(f"p0 must be in (0, 1), got {p0!r}")
    if wins + losses == 0:
        return 1.0
    from scipy.stats import binomtest  # lazy: scipy.stats is slow to import

    return float(min(1.0, binomtest(wins, wins + losses, p0, alternative="greater").pvalue))


def pairwise_rules(outcomes: Mapping[str, str], cfg: GateConfig) -> list[RuleResult]:
    """The pairwise rules from ``{prompt id: "win"|"loss"|"tie"|"error"}`` (see rule 7 of the module docstring)."""
    bad = sorted({o for o in outcomes.values() if o not in PAIRWISE_OUTCOMES})
    if bad:
        raise ValueError(f"unknown pairwise outcome(s) {bad}; expected {PAIRWISE_OUTCOMES}")
    counts = {o: sum(1 for v in outcomes.values() if v == o) for o in PAIRWISE_OUTCOMES}
    wins, losses, ties, errors = (counts[o] for o in PAIRWISE_OUTCOMES)
    decisive = wins + losses
    p0 = 0.5 + cfg.pairwise_margin
    base = {"wins": wins, "losses": losses, "ties": ties, "errors": errors, "decisive": decisive, "p0": p0}
    ok = decisive >= cfg.pairwise_min_decisive
    rules = [_rule("pairwise_min_decisive", ok, decisive, cfg.pairwise_min_decisive,
                   f"{decisive} decisive pair(s) ({wins} win(s), {losses} loss(es); {ties} tie(s) and {errors} "
                   f"judge error(s) left out) {'>=' if ok else '<'} minimum {cfg.pairwise_min_decisive}", base)]
    rate = wins / decisive if decisive else None
    p = sign_test(wins, losses, p0)
    ok = decisive > 0 and p <= cfg.alpha + EPS and rate > p0 - EPS
    rules.append(_rule("pairwise_win_rate", ok, rate, p0,
                       f"win rate {_fmt(rate)} over {decisive} non-tied pair(s); one-sided sign test against "
                       f"{_fmt(p0)}: p = {_fmt(p)} {'<=' if p <= cfg.alpha + EPS else '>'} alpha {_fmt(cfg.alpha)}",
                       {**base, "win_rate": rate, "p_value": p, "test": "sign", "alternative": "greater"}))
    return rules


def decide(challenger: Sequence[ExampleScores], champion: Sequence[ExampleScores] | None, config: GateConfig, *,
           challenger_summary: dict | None = None, pairwise: Mapping[str, str] | None = None) -> GateDecision:
    """Apply every rule of ``config`` and decide. Pure and deterministic (the bootstrap is seeded).

    ``challenger_summary`` (from :func:`metrics.summarize`) is needed only for thresholds on the label
    metrics. ``pairwise``: ``{prompt id: win|loss|tie|error}`` from the autorater (adds rule 7).
    Raises ValueError for inputs that are a programming error (duplicate prompt ids, missing primary
    metric in a score dict), never for data that merely fails a rule.
    """
    ch = _index(challenger, "challenger")
    answered = [s for s in ch.values() if s.scores is not None]
    n, n_ok = len(ch), len(answered)
    rules: list[RuleResult] = []

    ok = n_ok >= config.min_prompts
    rules.append(_rule("min_prompts", ok, n_ok, config.min_prompts,
                       f"{n_ok} prompt(s) evaluated without error {'>=' if ok else '<'} minimum {config.min_prompts}"))

    if n == 0:
        rules.append(_rule("max_error_rate", False, None, config.max_error_rate, "no prompt was evaluated"))
    else:
        rate = (n - n_ok) / n
        ok = rate <= config.max_error_rate + EPS
        rules.append(_rule("max_error_rate", ok, rate, config.max_error_rate,
                           f"{n - n_ok} of {n} call(s) failed: error rate {_fmt(rate)} "
                           f"{'<=' if ok else '>'} maximum {_fmt(config.max_error_rate)}"))

    if champion is not None:
        rules.append(_error_rate_rule("champion_error_rate", "champion", _index(champion, "champion"),
                                      config.max_error_rate))
    judged = [m for m in JUDGED_METRICS if m in config.thresholds or m == config.primary_metric]
    pairs = pairwise if champion is not None else None    # no champion: nothing was judged pairwise
    if pairs is not None or judged:
        rules.append(_judge_error_rule(answered, judged, pairs, config.max_error_rate))

    for metric, minimum in config.thresholds.items():
        rules.append(_threshold_rule(metric, float(minimum), answered, challenger_summary))

    if champion is None:
        for name, thr in (("champion_min_pairs", config.min_prompts), ("champion_margin", config.min_margin),
                          ("champion_significance", config.alpha)):
            rules.append(RuleResult(name, "skipped", None, thr, NO_CHAMPION))
    else:
        rules.extend(_champion_rules(ch, _index(champion, "champion"), config))
    if pairwise is not None:
        if champion is None:
            for name, thr in (("pairwise_min_decisive", config.pairwise_min_decisive),
                              ("pairwise_win_rate", 0.5 + config.pairwise_margin)):
                rules.append(RuleResult(name, "skipped", None, thr, NO_CHAMPION))
        else:
            rules.extend(pairwise_rules(pairwise, config))

    failed = [r for r in rules if r.verdict == "fail"]
    applied = [r for r in rules if r.verdict != "skipped"]
    skipped = len(rules) - len(applied)
    tail = f" ({skipped} skipped)" if skipped else ""
    short = [r for r in failed if r.name in EVIDENCE_RULES]
    if short:
        summary = (f"no decision: not enough evidence ({'; '.join(f'{r.name} ({r.reason})' for r in short)}). "
                   "An outage or too few scored prompts is not a verdict: the candidate is kept; rerun the "
                   "evaluation when the service is back")
        return GateDecision("no_decision", tuple(rules), summary)
    if failed:
        summary = (f"delete: {len(failed)} of {len(applied)} rule(s) failed{tail}: "
                   + "; ".join(f"{r.name} ({r.reason})" for r in failed))
        return GateDecision("delete", tuple(rules), summary)
    return GateDecision("promote", tuple(rules), f"promote: all {len(applied)} rule(s) passed{tail}")
