"""Model-based evaluation: the pairwise gate rule (sign test), the order-swapped pairwise judging, the pointwise
score, and the judge's calls through the evaluation engine (limiter, retries, errors never losses)."""

from __future__ import annotations

import asyncio
from math import comb

import pytest

from gemini_tuning.backends.errors import TuningApiError
from gemini_tuning.backends.vertex_evaluation import (
    Judgement,
    pairwise_request,
    parse_pairwise,
    parse_pointwise,
    pointwise_request,
)
from gemini_tuning.core.gate import GateConfig, decide, sign_test
from gemini_tuning.core.metrics import Answer, ExampleScores
from gemini_tuning.core.promptset import Prompt
from gemini_tuning.services.eval_engine import EngineConfig, Target, run_online
from gemini_tuning.services.eval_judge import Judge, JudgeConfig, outcome

pytestmark = pytest.mark.fast


def binomial_tail(k: int, n: int, p: float) -> float:
    """P[X >= k], X ~ Bin(n, p), computed here from the definition (independent of scipy)."""
    return sum(comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))


def scores(n: int, ok: bool = True) -> list[ExampleScores]:
    return [ExampleScores(f"p{i}", {"normalized_match": 1.0, "item_metric": 1.0, "exact_match": 1.0,
                                     "contains": 1.0, "rouge_l_f1": 1.0} if ok else None, None) for i in range(n)]


def rule(decision, name):
    return next(r for r in decision.rules if r.name == name)


@pytest.mark.parametrize("wins, losses, ties, errors, margin, promote", [
    (18, 6, 4, 2, 0.0, True),      # 18 of 24 decisive
    (13, 11, 6, 0, 0.0, False),    # about even
    (18, 6, 4, 2, 0.3, False),     # 0.75 does not beat 0.8 significantly
    (6, 1, 30, 0, 0.0, False),     # too few decisive pairs (min 10)
])
def test_the_pairwise_rule_on_a_known_win_loss_tie_table(wins, losses, ties, errors, margin, promote):
    table = ["win"] * wins + ["loss"] * losses + ["tie"] * ties + ["error"] * errors
    outcomes = {f"p{i}": o for i, o in enumerate(table)}
    n = len(table)
    # 2 judge errors in 30 are within the error budget (above it the gate says no decision: test_gate)
    cfg = GateConfig(min_prompts=5, max_error_rate=0.1, pairwise_min_decisive=10, pairwise_margin=margin,
                     require_significance=False)
    d = decide(scores(n), scores(n), cfg, pairwise=outcomes)
    wr = rule(d, "pairwise_win_rate")
    expected_p = binomial_tail(wins, wins + losses, 0.5 + margin)
    assert wr.details["p_value"] == pytest.approx(expected_p, rel=1e-9)
    assert (wr.details["wins"], wr.details["losses"], wr.details["ties"], wr.details["errors"]) == \
        (wins, losses, ties, errors)
    assert wr.observed == pytest.approx(wins / (wins + losses))
    assert (d.decision == "promote") is promote


def test_judge_errors_are_never_losses():
    base = {f"w{i}": "win" for i in range(15)} | {f"l{i}": "loss" for i in range(5)}
    cfg = GateConfig(min_prompts=5, pairwise_min_decisive=10)
    with_errors = base | {f"e{i}": "error" for i in range(40)}
    r1 = rule(decide(scores(20), scores(20), cfg, pairwise=base), "pairwise_win_rate")
    r2 = rule(decide(scores(20), scores(20), cfg, pairwise=with_errors), "pairwise_win_rate")
    assert r1.details["p_value"] == r2.details["p_value"] and r2.details["errors"] == 40
    assert r1.verdict == r2.verdict == "pass"


def test_no_champion_skips_the_pairwise_rules_and_bad_outcomes_are_refused():
    d = decide(scores(20), None, GateConfig(), pairwise={})
    assert rule(d, "pairwise_win_rate").verdict == "skipped"
    with pytest.raises(ValueError, match="unknown pairwise outcome"):
        decide(scores(20), scores(20), GateConfig(), pairwise={"p1": "draw"})
    assert sign_test(0, 0) == 1.0


def test_the_two_orders_make_the_outcome_an_inconsistent_pair_is_a_tie():
    assert outcome("CANDIDATE", "BASELINE") == "win"
    assert outcome("BASELINE", "CANDIDATE") == "loss"
    assert outcome("TIE", "TIE") == "tie"
    assert outcome("CANDIDATE", "CANDIDATE") == "tie"       # position bias: always the second-shown one
    assert outcome("BASELINE", "BASELINE") == "tie"
    assert outcome(None, "BASELINE") == "error"


def test_request_and_parse_definitions():
    req = pairwise_request("projects/p/locations/l", "{prompt} {response} {baseline_model_response}",
                           {"prompt": "q", "response": "a", "baseline_model_response": "b"}, "gemini-2.5-flash")
    assert req.method == "POST" and req.path == "/v1beta1/projects/p/locations/l:evaluateInstances"
    assert req.json["autoraterConfig"] == {"autoraterModel": "projects/p/locations/l/publishers/google/models/"
                                           "gemini-2.5-flash", "samplingCount": 1, "flipEnabled": False}
    assert '"baseline_model_response": "b"' in req.json["pairwiseMetricInput"]["instance"]["jsonInstance"]
    assert "pointwiseMetricInput" in pointwise_request("projects/p/locations/l", "t", {}, "m").json
    assert parse_pairwise({"pairwiseMetricResult": {"pairwiseChoice": 2}}).choice == "CANDIDATE"
    assert parse_pointwise({"pointwiseMetricResult": {"score": 4, "explanation": "ok"}}) == Judgement(4.0, None, "ok")
    with pytest.raises(ValueError):
        parse_pairwise({"pairwiseMetricResult": {}})


class FakeJudge:
    """Prefers the answer equal to the reference; on a tie it picks the one shown first (position bias).
    ``fail`` prompts fail every time, ``flaky`` ones answer 503 once."""

    def __init__(self, fail=(), flaky=()):
        self.fail, self.flaky, self.calls, self.seen = set(fail), set(flaky), 0, set()

    async def apairwise(self, template, inst, model):
        self.calls += 1
        key = (inst["prompt"], inst["response"])
        if inst["prompt"] in self.fail:
            raise TuningApiError(400, "bad template")
        if inst["prompt"] in self.flaky and key not in self.seen:
            self.seen.add(key)
            raise TuningApiError(503, "unavailable", retry_after=0.0)
        cand, base = inst["response"] == inst["reference"], inst["baseline_model_response"] == inst["reference"]
        choice = "CANDIDATE" if cand and not base else "BASELINE" if base and not cand else "BASELINE"
        return Judgement(choice=choice, explanation=f"compared with {inst['reference']!r}")

    async def apointwise(self, template, inst, model):
        self.calls += 1
        return Judgement(score=5.0 if inst["response"] == inst["reference"] else 1.0, explanation="<b>x</b>")

    async def aclose(self):
        pass


def test_judging_is_pipelined_through_the_engine_with_retries_and_errors_kept_apart():
    prompts = [Prompt(f"p{i}", f"q{i}", "yes") for i in range(8)]
    answers = {"challenger": ["yes", "yes", "yes", "no", "no", "yes", "yes", "yes"],
               "champion": ["no", "no", "yes", "yes", "no", "no", "no", "no"]}
    targets = [Target("challenger", "vertex", "e1"), Target("champion", "vertex", "e0")]

    async def generate(target, prompt):
        return answers[target.label][int(prompt.id[1:])]

    fake = FakeJudge(fail={"q7"}, flaky={"q0"})
    judge = Judge(fake, JudgeConfig(mode="both", model="judge-model"))
    cfg = EngineConfig(rpm=60_000, attempts=3, initial_backoff=0.01, max_backoff=0.02)
    asyncio.run(run_online(generate, prompts, targets, cfg, after_prompt=judge))
    got = judge.results.outcomes()
    assert got == {"p0": "win", "p1": "win", "p2": "tie", "p3": "loss", "p4": "tie", "p5": "win", "p6": "win",
                   "p7": "error"}
    assert judge.results.counts()["errors"] == 1 and judge.results.counts()["losses"] == 1
    assert judge.results.pointwise["challenger"]["p0"]["judge_score"] == 1.0
    assert judge.results.pointwise["champion"]["p0"]["judge_score"] == 0.0
    assert judge.results.mean("challenger") == pytest.approx(6 / 8)


def test_an_unanswered_prompt_is_not_judged():
    judge = Judge(FakeJudge(), JudgeConfig(mode="pairwise"))
    from gemini_tuning.services.eval_engine import Engine

    p = Prompt("p", "q", "yes")
    asyncio.run(judge.on_prompt(Engine(EngineConfig()), p, {"challenger": Answer("p", None, "503", None),
                                                            "champion": Answer("p", "yes", None, 0.1)}))
    assert judge.results.pairwise == {} and judge.backend.calls == 0


def test_token_use_from_usage_metadata_is_summed_per_model():
    from gemini_tuning.core.generation import Generated, response_text
    from gemini_tuning.services.eval_results import token_use

    text = response_text({"candidates": [{"content": {"parts": [{"text": "hi"}]}}],
                          "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2}})
    assert text == "hi" and isinstance(text, Generated) and text.usage == {"prompt": 7, "output": 2}
    answers = {"challenger": {"a": Answer("a", "x", None, 0.1, {"prompt": 7, "output": 2}),
                              "b": Answer("b", None, "503", None)},
               "champion": {"a": Answer("a", "y", None, 0.1, {"prompt": 7, "output": 5})}}
    assert token_use(answers) == {"challenger": {"prompt": 7, "output": 2, "total": 9, "calls_with_usage": 1},
                                  "champion": {"prompt": 7, "output": 5, "total": 12, "calls_with_usage": 1}}
