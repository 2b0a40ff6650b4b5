import json
import random

import pytest

from gemini_tuning.core.gate import (
    GateConfig,
    GateDecision,
    RuleResult,
    decide,
    mcnemar_exact,
    paired_bootstrap,
)
from gemini_tuning.core.metrics import ExampleScores, summarize

pytestmark = pytest.mark.fast

CHAMPION_RULES = ("champion_min_pairs", "champion_margin", "champion_significance")


def run(values, *, metric="normalized_match", errors=(), prefix="q"):
    """ExampleScores for prompts q0..q{n-1}; values[i] None or i in errors -> failed call."""
    out = []
    for i, v in enumerate(values):
        pid = f"{prefix}{i}"
        if v is None or i in errors:
            out.append(ExampleScores(pid, None, "timeout"))
        else:
            out.append(ExampleScores(pid, {metric: float(v), "exact_match": float(v == 1)}, None))
    return out


def cfg(**kw):
    kw.setdefault("min_prompts", 1)
    kw.setdefault("max_error_rate", 1.0)
    return GateConfig(**kw)


def verdicts(d: GateDecision):
    return {r.name: r.verdict for r in d.rules}


# ----------------------------------------------------------------------------------------- McNemar

@pytest.mark.parametrize("b, c, alternative, expected", [
    (0, 0, "two-sided", 1.0),
    (0, 0, "greater", 1.0),
    (5, 0, "greater", 0.5 ** 5),  # 0.03125
    (4, 0, "greater", 0.5 ** 4),
    (5, 0, "two-sided", 2 * 0.5 ** 5),
    (1, 0, "greater", 0.5),
    (0, 5, "greater", 1.0),
    (3, 1, "greater", 5 / 16),  # P[X >= 3 | Bin(4, .5)] = (4 + 1) / 16
    (1, 3, "less", 5 / 16),
    (3, 3, "two-sided", 1.0),
])
def test_mcnemar_exact_hand_checked(b, c, alternative, expected):
    assert mcnemar_exact(b, c, alternative=alternative) == pytest.approx(expected)


@pytest.mark.parametrize("b, c", [(-1, 0), (1.5, 0), (True, 0)])
def test_mcnemar_rejects_bad_counts(b, c):
    with pytest.raises(ValueError):
        mcnemar_exact(b, c)


# --------------------------------------------------------------------------------------- bootstrap

A = [0.9, 0.8, 0.75, 0.6, 0.95, 0.7, 0.85, 0.5, 0.9, 0.65, 0.8, 0.7]
B = [0.7, 0.8, 0.6, 0.65, 0.8, 0.6, 0.7, 0.55, 0.75, 0.6, 0.7, 0.72]


def test_bootstrap_deterministic_for_a_seed():
    r1 = paired_bootstrap(A, B, resamples=500, seed=7)
    r2 = paired_bootstrap(A, B, resamples=500, seed=7)
    assert r1 == r2
    r3 = paired_bootstrap(A, B, resamples=500, seed=8)
    assert (r3["ci_low"], r3["ci_high"]) != (r1["ci_low"], r1["ci_high"])


def test_bootstrap_values():
    r = paired_bootstrap(A, B, resamples=2000, seed=0)
    diff = sum(a - b for a, b in zip(A, B)) / len(A)
    assert r["mean_diff"] == pytest.approx(diff)
    assert r["mean_a"] == pytest.approx(sum(A) / len(A))
    assert r["ci_low"] < diff < r["ci_high"]
    assert r["ci_low"] > 0  # 10 of 12 differences positive, 1 tie, 1 small negative
    assert r["p_value"] < 0.05
    assert r["n"] == 12 and r["n_nonzero"] == 11 and r["alternative"] == "greater"
    json.dumps(r, allow_nan=False)


def test_bootstrap_ties_never_significant():
    r = paired_bootstrap([0.5] * 30, [0.5] * 30, resamples=1000, seed=0)
    assert r["mean_diff"] == 0.0
    assert r["p_value"] == 1.0
    assert (r["ci_low"], r["ci_high"]) == (0.0, 0.0)


def test_bootstrap_float_noise_counts_as_tie():
    # differences 0.30000000000000004 and -0.29999999999999993: resamples with one of each are ties,
    # not tiny wins
    r = paired_bootstrap([0.9, 0.3], [0.6, 0.6], resamples=2000, seed=0)
    assert r["p_value_bootstrap"] > 0.6


def test_bootstrap_single_pair_is_not_significant():
    r = paired_bootstrap([1.0], [0.2], resamples=1000, seed=0)
    assert r["p_value_bootstrap"] == pytest.approx(1 / 1001)  # degenerate: every resample is the same pair
    assert r["p_value"] == 0.5  # floored at 0.5 ** 1


def test_bootstrap_floor_on_few_pairs():
    r = paired_bootstrap([0.9] * 4, [0.5] * 4, resamples=1000, seed=0)
    assert r["p_value"] == pytest.approx(0.5 ** 4)  # 0.0625 > 0.05


def test_bootstrap_worse_is_not_significant():
    r = paired_bootstrap(B, A, resamples=1000, seed=0)
    assert r["mean_diff"] < 0 and r["p_value"] > 0.9


@pytest.mark.parametrize("a, b, kw", [
    ([1.0], [1.0, 0.0], {}),
    ([], [], {}),
    ([1.0], [0.0], {"resamples": 0}),
    ([float("nan")], [0.0], {}),
])
def test_bootstrap_rejects_bad_input(a, b, kw):
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, **{"resamples": 10, "seed": 0, **kw})


# ------------------------------------------------------------------------------------------ config

@pytest.mark.parametrize("kw", [
    {"min_prompts": 0},
    {"max_error_rate": 1.5},
    {"thresholds": {"bleu": 0.5}},
    {"thresholds": {"normalized_match": 1.2}},
    {"primary_metric": "macro_f1"},  # aggregate-only: cannot be paired
    {"min_margin": 2},
    {"confidence": 1.0},
    {"confidence": 0},
    {"test": "t-test"},
    {"bootstrap_resamples": 0},
    {"seed": -1},
    {"require_significance": "yes"},
])
def test_config_validation(kw):
    with pytest.raises(ValueError):
        GateConfig(**kw)


def test_config_from_dict_roundtrip_and_unknown_keys():
    c = GateConfig(min_prompts=30, thresholds={"macro_f1": 0.6}, test="bootstrap")
    assert GateConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="min_promts"):
        GateConfig.from_dict({"min_promts": 3})


def test_config_copies_thresholds():
    t = {"contains": 0.5}
    c = GateConfig(thresholds=t)
    t["contains"] = 0.9
    assert c.thresholds["contains"] == 0.5
    assert GateConfig().alpha == pytest.approx(0.05)


# ------------------------------------------------------------------------- rules without champion

def test_min_prompts_boundary_and_errors_do_not_count():
    ch = run([1] * 20 + [None] * 2)
    assert verdicts(decide(ch, None, cfg(min_prompts=20)))["min_prompts"] == "pass"
    d = decide(ch, None, cfg(min_prompts=21))
    r = d.rule("min_prompts")
    assert (r.verdict, r.observed, r.threshold) == ("fail", 20, 21)
    assert d.decision == "no_decision"       # too few scored prompts is not a verdict
    assert d.summary.startswith("no decision: not enough evidence (min_prompts (20 prompt(s)")


def test_max_error_rate_boundary():
    ch = run([1] * 20, errors={0})  # 1 of 20 failed = 0.05
    r = decide(ch, None, cfg(max_error_rate=0.05)).rule("max_error_rate")
    assert (r.verdict, r.observed) == ("pass", 0.05)
    r = decide(ch, None, cfg(max_error_rate=0.049)).rule("max_error_rate")
    assert r.verdict == "fail" and "1 of 20" in r.reason


def test_no_prompts_at_all():
    d = decide([], None, cfg())
    assert verdicts(d)["min_prompts"] == "fail"
    assert verdicts(d)["max_error_rate"] == "fail"
    assert d.decision == "no_decision"


def test_threshold_pass_fail_and_exact_boundary():
    ch = run([1] * 7 + [0] * 3)  # normalized_match 0.7
    assert verdicts(decide(ch, None, cfg(thresholds={"normalized_match": 0.7})))["threshold:normalized_match"] == "pass"
    d = decide(ch, None, cfg(thresholds={"normalized_match": 0.71}))
    r = d.rule("threshold:normalized_match")
    assert (r.verdict, r.observed, r.threshold) == ("fail", pytest.approx(0.7), 0.71)
    assert d.decision == "delete"


def test_threshold_equal_despite_float_rounding():
    ch = run([0.7, 0.6], metric="rouge_l_f1")  # (0.7 + 0.6) / 2 == 0.6499999999999999 in floats
    assert (0.7 + 0.6) / 2 < 0.65
    assert verdicts(decide(ch, None, cfg(thresholds={"rouge_l_f1": 0.65})))["threshold:rouge_l_f1"] == "pass"


def test_threshold_ignores_errors_in_denominator():
    ch = run([1, 1, 1, None])
    r = decide(ch, None, cfg(thresholds={"normalized_match": 1.0})).rule("threshold:normalized_match")
    assert (r.verdict, r.observed) == ("pass", 1.0)


def test_threshold_all_errors_fails():
    r = decide(run([None, None]), None, cfg(thresholds={"normalized_match": 0.0})).rule("threshold:normalized_match")
    assert r.verdict == "fail" and r.observed is None


def test_label_threshold_reads_the_summary():
    summary = {"metrics": {"macro_f1": 0.6, "label_accuracy": 0.8}}
    ch = run([1] * 5)
    c = cfg(thresholds={"macro_f1": 0.6, "label_accuracy": 0.9})
    v = verdicts(decide(ch, None, c, challenger_summary=summary))
    assert v["threshold:macro_f1"] == "pass"
    assert v["threshold:label_accuracy"] == "fail"


def test_label_threshold_without_summary_or_labels_fails_with_reason():
    ch = run([1] * 5)
    c = cfg(thresholds={"macro_f1": 0.1})
    r = decide(ch, None, c).rule("threshold:macro_f1")
    assert r.verdict == "fail" and "challenger_summary" in r.reason
    r = decide(ch, None, c, challenger_summary={"metrics": {"normalized_match": 1.0}}).rule("threshold:macro_f1")
    assert r.verdict == "fail" and "not detected as labels" in r.reason


def test_label_threshold_with_real_summary():
    from gemini_tuning.core.metrics import Answer
    from gemini_tuning.core.promptset import Prompt

    prompts = [Prompt(str(i), "p", lab) for i, lab in enumerate(["yes", "no"] * 10)]
    answers = {p.id: Answer(p.id, "yes") for p in prompts}
    summary = summarize(prompts, answers)  # accuracy 0.5, macro F1 = (2/3 + 0) / 2
    c = cfg(thresholds={"label_accuracy": 0.5, "macro_f1": 0.34})
    v = verdicts(decide(run([1] * 20), None, c, challenger_summary=summary))
    assert v["threshold:label_accuracy"] == "pass"
    assert v["threshold:macro_f1"] == "fail"


def test_no_champion_rules_skipped_and_do_not_block():
    d = decide(run([1] * 20), None, GateConfig())
    for name in CHAMPION_RULES:
        r = d.rule(name)
        assert r.verdict == "skipped" and r.reason == "skipped (no champion)"
    assert d.decision == "promote"
    assert d.summary == "promote: all 2 rule(s) passed (3 skipped)"


# ---------------------------------------------------------------------------------- champion rules

def pair_runs(wins, losses, ties_right, ties_wrong, metric="normalized_match"):
    """Challenger/champion binary runs with the given discordant and concordant counts."""
    ch = [1] * wins + [0] * losses + [1] * ties_right + [0] * ties_wrong
    cp = [0] * wins + [1] * losses + [1] * ties_right + [0] * ties_wrong
    return run(ch, metric=metric), run(cp, metric=metric)


def test_significantly_better_with_mcnemar():
    ch, cp = pair_runs(wins=5, losses=0, ties_right=10, ties_wrong=5)  # 20 pairs
    d = decide(ch, cp, GateConfig())
    assert d.decision == "promote", d.summary
    r = d.rule("champion_significance")
    assert r.observed == pytest.approx(0.03125) and r.threshold == pytest.approx(0.05)
    assert r.details["test"] == "mcnemar"
    assert (r.details["challenger_only_correct"], r.details["champion_only_correct"]) == (5, 0)
    assert d.rule("champion_margin").observed == pytest.approx(5 / 20)


def test_four_wins_are_not_significant_at_95_but_are_at_90():
    ch, cp = pair_runs(wins=4, losses=0, ties_right=10, ties_wrong=6)
    d = decide(ch, cp, GateConfig())
    assert verdicts(d)["champion_significance"] == "fail" and d.decision == "delete"
    assert "not significantly better" in d.rule("champion_significance").reason
    d = decide(ch, cp, GateConfig(confidence=0.90))
    assert d.decision == "promote"


def test_ties_zero_discordant_pairs_not_significant():
    ch, cp = pair_runs(wins=0, losses=0, ties_right=15, ties_wrong=5)
    d = decide(ch, cp, GateConfig())
    v = verdicts(d)
    assert v["champion_margin"] == "pass"  # diff 0 >= margin 0
    assert v["champion_significance"] == "fail"
    assert d.rule("champion_significance").observed == 1.0
    assert d.decision == "delete"


def test_one_sided_worse_challenger_is_not_significant():
    ch, cp = pair_runs(wins=0, losses=10, ties_right=10, ties_wrong=0)
    d = decide(ch, cp, GateConfig())
    assert d.rule("champion_significance").observed == 1.0
    assert verdicts(d)["champion_margin"] == "fail"
    # ... while a two-sided test would call this difference significant
    assert mcnemar_exact(0, 10) < 0.01


def test_single_pair():
    ch, cp = pair_runs(wins=1, losses=0, ties_right=0, ties_wrong=0)
    d = decide(ch, cp, GateConfig(min_prompts=1, max_error_rate=0.0))
    v = verdicts(d)
    assert v["champion_min_pairs"] == "pass" and v["champion_margin"] == "pass"
    assert d.rule("champion_significance").observed == 0.5
    assert v["champion_significance"] == "fail" and d.decision == "delete"


def test_single_pair_bootstrap_not_significant():
    ch, cp = run([0.9], metric="rouge_l_f1"), run([0.1], metric="rouge_l_f1")
    d = decide(ch, cp, GateConfig(min_prompts=1, primary_metric="rouge_l_f1"))
    r = d.rule("champion_significance")
    assert r.details["test"] == "bootstrap" and r.observed == 0.5 and r.verdict == "fail"


def test_margin_boundary_exactly_equal_passes():
    ch, cp = pair_runs(wins=2, losses=0, ties_right=10, ties_wrong=8)  # diff 2/20 = 0.1
    c = GateConfig(min_margin=0.1, require_significance=False)
    assert verdicts(decide(ch, cp, c))["champion_margin"] == "pass"
    c = GateConfig(min_margin=0.11, require_significance=False)
    d = decide(ch, cp, c)
    assert verdicts(d)["champion_margin"] == "fail" and d.decision == "delete"


def test_margin_boundary_despite_float_rounding():
    ch, cp = run([0.7, 0.7], metric="rouge_l_f1"), run([0.6, 0.6], metric="rouge_l_f1")
    c = GateConfig(min_prompts=2, primary_metric="rouge_l_f1", min_margin=0.1, require_significance=False)
    r = decide(ch, cp, c).rule("champion_margin")
    assert r.observed < 0.1  # 0.09999999999999998 in binary floating point
    assert r.verdict == "pass"


def test_negative_margin_allows_non_inferiority():
    ch, cp = pair_runs(wins=0, losses=1, ties_right=15, ties_wrong=4)  # diff -0.05
    c = GateConfig(min_margin=-0.05, require_significance=False)
    d = decide(ch, cp, c)
    assert d.decision == "promote"
    assert verdicts(d)["champion_significance"] == "skipped"


def test_require_significance_off_is_skipped_not_blocking():
    ch, cp = pair_runs(wins=1, losses=0, ties_right=19, ties_wrong=0)
    d = decide(ch, cp, GateConfig(require_significance=False))
    r = d.rule("champion_significance")
    assert r.verdict == "skipped" and "require_significance" in r.reason
    assert d.decision == "promote"
    assert decide(ch, cp, GateConfig()).decision == "delete"


def test_only_prompts_answered_by_both_are_paired():
    ch = run([1] * 20 + [1] * 5)  # q20..q24: challenger right ...
    cp = run([1] * 20 + [0] * 5, errors={20, 21, 22, 23, 24})  # ... but champion failed there
    d = decide(ch, cp, GateConfig())
    assert d.rule("champion_min_pairs").observed == 20
    assert d.rule("champion_margin").observed == 0.0
    assert d.rule("champion_significance").details["challenger_only_correct"] == 0


def test_champion_min_pairs_fails_on_few_pairs():
    ch, cp = pair_runs(wins=10, losses=0, ties_right=10, ties_wrong=0)
    cp = [s if i < 5 else ExampleScores(s.prompt_id, None, "quota") for i, s in enumerate(cp)]
    d = decide(ch, cp, GateConfig(max_error_rate=0.0))
    r = d.rule("champion_min_pairs")
    assert (r.verdict, r.observed, r.threshold) == ("fail", 5, 20)
    # the champion's 15 failed calls are an outage on its side: no decision (not a loss for the challenger)
    assert verdicts(d)["champion_error_rate"] == "fail" and d.decision == "no_decision"
    d = decide(ch, cp[:5], GateConfig(max_error_rate=0.0))       # a champion asked about 5 prompts only
    assert verdicts(d)["champion_error_rate"] == "pass" and d.rule("champion_min_pairs").verdict == "fail"
    assert d.decision == "delete"


def test_all_challenger_errors():
    ch = run([None] * 20)
    cp = run([1] * 20)
    d = decide(ch, cp, GateConfig(thresholds={"normalized_match": 0.5}))
    assert all(r.verdict == "fail" for r in d.rules if r.name != "champion_error_rate"), verdicts(d)
    assert d.rule("max_error_rate").observed == 1.0
    assert "no prompt was answered by both" in d.rule("champion_margin").reason
    assert d.decision == "no_decision"       # the generation service was down: not a verdict on the model


@pytest.mark.parametrize("champion", [run([None] * 20), []])
def test_champion_without_answers_blocks(champion):
    d = decide(run([1] * 20), champion, GateConfig())
    v = verdicts(d)
    assert [v[n] for n in CHAMPION_RULES] == ["fail", "fail", "fail"]
    assert v["champion_error_rate"] == "fail" and d.decision == "no_decision"


def test_bootstrap_chosen_for_continuous_scores_and_deterministic():
    rng = random.Random(1)
    base = [rng.uniform(0.3, 0.7) for _ in range(40)]
    ch = run([min(1.0, x + 0.1 + rng.uniform(-0.05, 0.05)) for x in base], metric="rouge_l_f1")
    cp = run(base, metric="rouge_l_f1")
    c = GateConfig(primary_metric="rouge_l_f1", bootstrap_resamples=1000, seed=3)
    d1 = decide(ch, cp, c)
    r = d1.rule("champion_significance")
    assert r.details["test"] == "bootstrap" and r.verdict == "pass"
    assert r.details["ci_low"] > 0
    assert d1.decision == "promote"
    # same seed -> identical; input order does not matter (pairs are sorted by prompt id)
    assert decide(ch, cp, c).to_dict() == d1.to_dict()
    shuffled = ch[:]
    random.Random(5).shuffle(shuffled)
    assert decide(shuffled, cp[::-1], c).to_dict() == d1.to_dict()


def test_bootstrap_continuous_no_improvement_fails():
    rng = random.Random(2)
    vals = [rng.uniform(0.2, 0.8) for _ in range(40)]
    noisy = [v + (0.1 if i % 2 else -0.1) for i, v in enumerate(vals)]  # mean difference 0
    d = decide(run(noisy, metric="rouge_l_f1"), run(vals, metric="rouge_l_f1"),
               GateConfig(primary_metric="rouge_l_f1", min_margin=-1.0))
    r = d.rule("champion_significance")
    assert r.details["mean_diff"] == pytest.approx(0.0, abs=1e-12)
    assert r.verdict == "fail" and r.observed > 0.3


def test_forced_bootstrap_on_binary_scores():
    ch, cp = pair_runs(wins=8, losses=0, ties_right=12, ties_wrong=0)
    r = decide(ch, cp, GateConfig(test="bootstrap")).rule("champion_significance")
    assert r.details["test"] == "bootstrap" and r.verdict == "pass"


def test_forced_mcnemar_on_continuous_scores_fails_with_reason():
    ch, cp = run([0.9] * 20, metric="rouge_l_f1"), run([0.5] * 20, metric="rouge_l_f1")
    r = decide(ch, cp, GateConfig(primary_metric="rouge_l_f1", test="mcnemar")).rule("champion_significance")
    assert r.verdict == "fail" and "0/1 scores" in r.reason


def test_duplicate_prompt_ids_rejected():
    ch = run([1, 1])
    with pytest.raises(ValueError):
        decide(ch + ch[:1], None, cfg())
    with pytest.raises(ValueError):
        decide(ch, ch + ch[:1], cfg())


def test_missing_primary_metric_in_scores_rejected():
    ch, cp = run([1] * 3, metric="contains"), run([1] * 3, metric="contains")
    with pytest.raises(ValueError):
        decide(ch, cp, cfg(primary_metric="rouge_l_f1"))


# ----------------------------------------------------------------------------------------- output

def test_decision_lists_every_rule_and_is_json_serializable():
    ch, cp = pair_runs(wins=3, losses=1, ties_right=10, ties_wrong=6)
    c = GateConfig(thresholds={"normalized_match": 0.9, "exact_match": 0.1})
    d = decide(ch, cp, c)
    names = [r.name for r in d.rules]
    assert names == ["min_prompts", "max_error_rate", "champion_error_rate", "threshold:normalized_match",
                     "threshold:exact_match", *CHAMPION_RULES]
    out = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert out["decision"] == "delete"
    for r in out["rules"]:
        assert set(r) == {"name", "verdict", "observed", "threshold", "reason", "details"}
        assert r["verdict"] in ("pass", "fail", "skipped") and r["reason"]
    failed = [r["name"] for r in out["rules"] if r["verdict"] == "fail"]
    assert failed == ["threshold:normalized_match", "champion_significance"]
    assert out["summary"].startswith("delete: 2 of 8 rule(s) failed")


def test_promote_iff_no_rule_fails():
    ch, cp = pair_runs(wins=6, losses=0, ties_right=14, ties_wrong=0)
    d = decide(ch, cp, GateConfig(thresholds={"normalized_match": 1.0}))
    assert all(r.verdict == "pass" for r in d.rules)
    assert d.decision == "promote" and d.promote
    assert isinstance(d.rules[0], RuleResult)


def test_judge_outage_is_no_decision_not_delete():
    """Every autorater call failed (pairwise errors; no judge_score): no decision, whatever the other rules say."""
    ch, cp = pair_runs(wins=10, losses=0, ties_right=10, ties_wrong=0)
    everything_failed = {s.prompt_id: "error" for s in ch}
    d = decide(ch, cp, GateConfig(), pairwise=everything_failed)
    r = d.rule("judge_error_rate")
    assert (r.verdict, r.observed) == ("fail", 1.0) and "20 of 20 judge call(s) failed" in r.reason
    assert d.decision == "no_decision" and "judge_error_rate" in d.summary
    # a few judge errors within max_error_rate are not an outage
    some = {**{s.prompt_id: "win" for s in ch}, ch[0].prompt_id: "error"}
    d = decide(ch, cp, GateConfig(max_error_rate=0.05, pairwise_min_decisive=5), pairwise=some)
    assert d.rule("judge_error_rate").verdict == "pass" and d.decision == "promote"
    # a pointwise judge the gate thresholds on: answered prompts without judge_score are failed judge calls
    unjudged = run([1] * 20)
    d = decide(unjudged, None, GateConfig(thresholds={"judge_score": 0.5}))
    assert d.rule("judge_error_rate").verdict == "fail" and d.decision == "no_decision"
    # without a champion nothing is judged pairwise: no judge rule, no outage
    d = decide(run([1] * 20), None, GateConfig(), pairwise={})
    assert "judge_error_rate" not in verdicts(d) and d.decision == "promote"


# ------------------------------------------------------------------------- dropped examples (Vertex data stats)

def test_max_dropped_fraction_fails_the_gate_not_the_tuning():
    ch = run([1] * 20)
    assert "max_dropped_fraction" not in verdicts(decide(ch, None, cfg()))       # off by default
    d = decide(ch, None, cfg(max_dropped_fraction=0.04), data_stats={"dropped": 5, "examples": 100})
    r = d.rule("max_dropped_fraction")
    assert (r.verdict, r.observed, r.threshold) == ("fail", 0.05, 0.04)
    assert r.reason == "the service dropped 5 of 100 training example(s): 0.05 > maximum 0.04"
    assert d.decision == "delete"                 # a verdict: the data is the problem, not missing evidence
    ok = decide(ch, None, cfg(max_dropped_fraction=0.05), data_stats={"dropped": 5, "examples": 100})
    assert ok.rule("max_dropped_fraction").verdict == "pass" and ok.decision == "promote"


@pytest.mark.parametrize("stats", [None, {}, {"dropped": None, "examples": 100}, {"dropped": 3, "examples": 0}])
def test_max_dropped_fraction_without_the_services_counts_is_skipped(stats):
    d = decide(run([1] * 20), None, cfg(max_dropped_fraction=0.0), data_stats=stats)
    r = d.rule("max_dropped_fraction")
    assert r.verdict == "skipped" and "reported no dropped-example count" in r.reason
    assert d.decision == "promote"


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.1", True])
def test_max_dropped_fraction_is_validated(bad):
    with pytest.raises(ValueError, match="max_dropped_fraction must be in"):
        GateConfig(max_dropped_fraction=bad)
