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

from collections.abc import Mapping, Sequence
from typing import Any

from gemini_tuning.core.gate_types import DECISIONS, GateConfig, GateDecision, RuleResult
from gemini_tuning.core.metrics import ExampleScores
from gemini_tuning.core.significance import mcnemar_exact, paired_bootstrap, sign_test
from gemini_tuning.core.vocabulary import JUDGED_METRICS, LABEL_METRIC_NAMES

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
NO_CHAMPION = "skipped (no champion)"
#: rules whose failure means "not enough evidence" (an outage, too few scored prompts): no decision, not delete
EVIDENCE_RULES = ("min_prompts", "max_error_rate", "champion_error_rate", "judge_error_rate")


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


def dropped_rule(data_stats: Mapping[str, Any] | None, maximum: float) -> RuleResult:
    """``max_dropped_fraction``: the share of the training examples the tuning service dropped (Vertex
    ``totalTruncatedExampleCount`` / ``tuningDatasetExampleCount``) must not exceed ``maximum``. Skipped when the
    service reported no counts (the Gemini API reports none): the rule judges the service's word, not a guess."""
    stats = data_stats or {}
    dropped, examples = stats.get("dropped"), stats.get("examples")
    if dropped is None or not examples:
        return RuleResult("max_dropped_fraction", "skipped", None, maximum,
                          "the tuning service reported no dropped-example count (the Gemini API reports none)")
    frac = int(dropped) / int(examples)
    ok = frac <= maximum + EPS
    return _rule("max_dropped_fraction", ok, frac, maximum,
                 f"the service dropped {int(dropped)} of {int(examples)} training example(s): {_fmt(frac)} "
                 f"{'<=' if ok else '>'} maximum {_fmt(maximum)}")


def decide(challenger: Sequence[ExampleScores], champion: Sequence[ExampleScores] | None, config: GateConfig, *,
           challenger_summary: dict | None = None, pairwise: Mapping[str, str] | None = None,
           data_stats: Mapping[str, Any] | None = None) -> GateDecision:
    """Apply every rule of ``config`` and decide. Pure and deterministic (the bootstrap is seeded).

    ``challenger_summary`` (from :func:`metrics.summarize`) is needed only for thresholds on the label
    metrics. ``pairwise``: ``{prompt id: win|loss|tie|error}`` from the autorater (adds rule 7).
    ``data_stats``: ``{"dropped", "examples"}`` as the tuning service counted them, for ``max_dropped_fraction``.
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
    if config.max_dropped_fraction is not None:
        rules.append(dropped_rule(data_stats, float(config.max_dropped_fraction)))

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
