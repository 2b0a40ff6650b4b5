import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemini_tuning.core import metrics as M
from gemini_tuning.core.metrics import (
    EXAMPLE_METRIC_NAMES,
    METRIC_NAMES,
    Answer,
    ExampleScores,
    contains_at_boundary,
    normalize_text,
    references_are_labels,
    rouge_l_f1,
    rouge_tokenize,
    score_all,
    score_example,
    summarize,
)
from gemini_tuning.core.promptset import Prompt

pytestmark = pytest.mark.fast


def P(pid, reference, *, metric=None, tags=()):
    return Prompt(id=pid, prompt=f"prompt {pid}", reference=reference, metric=metric, tags=tuple(tags))


def ok(pid, text, latency=None):
    return Answer(pid, text, None, latency)


def fail(pid, error="timeout", latency=None):
    return Answer(pid, None, error, latency)


def scores(reference, text, metric=None):
    return score_example(P("x", reference, metric=metric), ok("x", text)).scores


# --------------------------------------------------------------------------------- normalization

@pytest.mark.parametrize("raw, expected", [
    ('  "Paris."\n', "paris"),
    ("**Yes**", "yes"),
    ("`True`", "true"),
    ("  Hello \t\n  World!! ", "hello world"),
    ("(-5)", "-5"),
    ("-5.", "-5"),
    ("...5", ".5"),
    ("- 5", "5"),
    ("50%.", "50%"),
    ("$5", "$5"),
    ("U.S.A.", "u.s.a"),
    ("ＡＢＣ", "abc"),  # NFKC: full-width letters
    ("Straße", "strasse"),  # casefold
    ("«Bonjour»", "bonjour"),
    ("!!!", ""),
])
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


# ------------------------------------------------------------------------------- per-example metrics

def test_exact_match_forgives_only_surrounding_whitespace():
    assert scores("Paris", "Paris\n")["exact_match"] == 1.0
    assert scores("Paris", "paris")["exact_match"] == 0.0
    assert scores("Paris", "Paris.")["exact_match"] == 0.0


def test_normalized_match():
    assert scores("Paris", ' "paris." ')["normalized_match"] == 1.0
    assert scores("New York", "new   york!")["normalized_match"] == 1.0
    assert scores("Paris", "Paris, France")["normalized_match"] == 0.0
    assert scores("5", "-5")["normalized_match"] == 0.0


@pytest.mark.parametrize("hay, needle, expected", [
    ("oh yes", "yes", True),
    ("yes, indeed", "yes", True),
    ("eyes", "yes", False),
    ("i don't know", "no", False),
    ("eyes yes", "yes", True),  # first occurrence cut a word, second does not
    ("首都は東京です", "東京", True),  # no word boundaries in Japanese
    ("i like c++ a lot", "c++", True),
    ("paris", "paris", True),
    ("", "", True),
    ("a", "", False),
])
def test_contains_at_boundary(hay, needle, expected):
    assert contains_at_boundary(hay, needle) is expected


def test_contains_metric_uses_normalized_texts():
    assert scores("Paris", "The answer is PARIS.")["contains"] == 1.0
    assert scores("Paris", "Parisian food")["contains"] == 0.0


def test_rouge_tokenizer_is_unicode_aware():
    assert rouge_tokenize("The CAT, sat!") == ["the", "cat", "sat"]
    assert rouge_tokenize("東京です") == ["東", "京", "で", "す"]
    assert rouge_tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # combining marks stay in the word
    assert rouge_tokenize("...") == []


@pytest.mark.parametrize("reference, answer, expected", [
    ("the cat sat on the mat", "the cat is on the mat", 5 / 6),  # LCS 5 of 6 both ways
    ("a b c d", "a c", 2 / 3),  # P = 1, R = 1/2
    ("Rome", "I think Rome", 0.5),  # P = 1/3, R = 1
    ("Paris", "paris.", 1.0),
    ("Paris", "", 0.0),
    ("東京都", "東京", 0.8),  # P = 1, R = 2/3 (the library's default tokenizer would give 0)
    ("नमस्ते दुनिया", "नमस्ते", 2 / 3),
    ("...", "!!", 1.0),  # no token on either side
    ("...", "a", 0.0),
])
def test_rouge_l_f1_hand_checked(reference, answer, expected):
    assert rouge_l_f1(reference, answer) == pytest.approx(expected)
    assert scores(reference, answer or " ")["rouge_l_f1"] == pytest.approx(expected)


WORDS = st.lists(st.sampled_from(["a", "b", "c", "the", "cat", "東", "京", "नमस्ते", "A", "b!"]), max_size=14)


@settings(max_examples=400, deadline=None)
@given(reference=WORDS, answer=WORDS)
def test_rouge_l_f1_is_the_rouge_score_librarys_float_for_float(reference, answer):
    """The oracle: the rouge-score library itself (a test dependency), with the same tokenizer."""
    from rouge_score import rouge_scorer

    class Tokenizer:
        def tokenize(self, text):
            return rouge_tokenize(text)

    ref, ans = " ".join(reference), " ".join(answer)
    expected = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=Tokenizer()).score(
        ref, ans)["rougeL"].fmeasure
    if not rouge_tokenize(ref):                       # ours: no token on either side is a match
        expected = 1.0 if not rouge_tokenize(ans) else 0.0
    assert rouge_l_f1(ref, ans) == expected


def test_scoring_imports_neither_nltk_nor_scipy():
    """Each evaluate task scores in a fresh process: rouge-score's nltk (and the scikit-learn and scipy nltk loads
    when installed) cost seconds of CPU per task."""
    code = ("import sys; from gemini_tuning.core.metrics import rouge_l_f1, score_all; rouge_l_f1('a b', 'b'); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'nltk', 'sklearn', 'scipy', 'rouge_score'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(M.__file__).parents[2])}).stdout
    assert out.strip() == "[]"


def test_score_keys_and_item_metric():
    s = scores("Rome", "I think Rome")
    assert set(s) == set(EXAMPLE_METRIC_NAMES)
    assert s["item_metric"] == s["normalized_match"] == 0.0  # default item metric
    s = scores("Rome", "I think Rome", metric="contains")
    assert s["item_metric"] == 1.0
    s = scores("Rome", "I think Rome", metric="rouge_l_f1")
    assert s["item_metric"] == pytest.approx(0.5)
    assert METRIC_NAMES == ("exact_match", "normalized_match", "contains", "rouge_l_f1")


def test_failed_call_has_no_scores():
    p = P("x", "Paris")
    assert score_example(p, fail("x", "HTTP 500")) == ExampleScores("x", None, "HTTP 500")
    assert score_example(p, Answer("x", None)) == ExampleScores("x", None, "no answer text")
    # error wins even if some text came back
    assert score_example(p, Answer("x", "Paris", "safety block")).scores is None


def test_empty_text_is_a_wrong_answer_not_an_error():
    s = score_example(P("x", "Paris"), ok("x", ""))
    assert s.error is None and s.scores["normalized_match"] == 0.0


def test_score_example_rejects_mismatched_ids():
    with pytest.raises(ValueError):
        score_example(P("x", "Paris"), ok("y", "Paris"))


def test_score_all_marks_missing_answers_as_errors():
    out = score_all([P("a", "1"), P("b", "2")], {"a": ok("a", "1")})
    assert out[0].scores["exact_match"] == 1.0
    assert out[1] == ExampleScores("b", None, "no answer recorded")


# --------------------------------------------------------------------------------------- summary

def _mixed():
    prompts = [
        P("a", "Paris", tags=["geo"]),
        P("b", "Paris", tags=["geo"]),
        P("c", "the cat sat on the mat", tags=["text"]),
        P("d", "Berlin", tags=["geo"]),
        P("e", "Rome", metric="contains"),
    ]
    answers = {
        "a": ok("a", "Paris", 1.0),
        "b": ok("b", "paris.", 2.0),
        "c": ok("c", "the cat is on the mat", 3.0),
        "d": fail("d", "timeout", 100.0),  # failed call: its latency is ignored
        "e": ok("e", "I think Rome", 4.0),
    }
    return prompts, answers


def test_summarize_overall_hand_checked():
    s = summarize(*_mixed())
    assert (s["n"], s["n_answered"], s["n_errors"]) == (5, 4, 1)
    assert s["error_rate"] == pytest.approx(0.2)
    assert s["labels"] is False  # a 6-word reference
    m = s["metrics"]
    assert set(m) == set(EXAMPLE_METRIC_NAMES)
    assert m["exact_match"] == pytest.approx(1 / 4)  # the error is not in the denominator
    assert m["normalized_match"] == pytest.approx(2 / 4)
    assert m["contains"] == pytest.approx(3 / 4)
    assert m["rouge_l_f1"] == pytest.approx((1 + 1 + 5 / 6 + 0.5) / 4)
    assert m["item_metric"] == pytest.approx(3 / 4)  # a, b normalized match; c no; e contains
    assert s["latency_s"] == {"p50": pytest.approx(2.5), "p95": pytest.approx(3.85)}


def test_summarize_per_tag_hand_checked():
    s = summarize(*_mixed())
    assert list(s["per_tag"]) == ["geo", "text"]
    geo = s["per_tag"]["geo"]
    assert (geo["n"], geo["n_answered"], geo["n_errors"]) == (3, 2, 1)
    assert geo["error_rate"] == pytest.approx(1 / 3)
    assert geo["metrics"]["exact_match"] == pytest.approx(0.5)
    assert geo["metrics"]["normalized_match"] == pytest.approx(1.0)
    assert geo["latency_s"] == {"p50": pytest.approx(1.5), "p95": pytest.approx(1.95)}
    text = s["per_tag"]["text"]
    assert (text["n"], text["n_errors"], text["error_rate"]) == (1, 0, 0.0)
    assert text["metrics"]["rouge_l_f1"] == pytest.approx(5 / 6)
    assert text["latency_s"] == {"p50": 3.0, "p95": 3.0}
    assert "per_tag" not in geo


def test_summarize_is_json_serializable():
    s = summarize(*_mixed())
    assert json.loads(json.dumps(s, allow_nan=False)) == s


def test_summarize_all_errors():
    prompts = [P("a", "x", tags=["t"]), P("b", "y")]
    s = summarize(prompts, {"a": fail("a"), "b": fail("b")})
    assert (s["n"], s["n_answered"], s["n_errors"], s["error_rate"]) == (2, 0, 2, 1.0)
    assert all(v is None for v in s["metrics"].values())
    assert s["latency_s"] == {"p50": None, "p95": None}
    assert s["per_tag"]["t"]["error_rate"] == 1.0
    json.dumps(s, allow_nan=False)


def test_summarize_missing_answer_counts_as_error():
    s = summarize([P("a", "x"), P("b", "y")], {"a": ok("a", "x")})
    assert (s["n_errors"], s["error_rate"], s["metrics"]["exact_match"]) == (1, 0.5, 1.0)


def test_summarize_without_latencies():
    s = summarize([P("a", "x")], {"a": ok("a", "x")})
    assert s["latency_s"] == {"p50": None, "p95": None}


def test_summarize_empty():
    s = summarize([], {})
    assert (s["n"], s["error_rate"], s["per_tag"]) == (0, None, {})


@pytest.mark.parametrize("prompts, answers", [
    ([P("a", "x")], {"a": ok("a", "x"), "zzz": ok("zzz", "x")}),  # answer for an unknown prompt
    ([P("a", "x")], {"a": ok("b", "x")}),  # keyed under the wrong id
    ([P("a", "x"), P("a", "y")], {}),  # duplicate prompt ids
])
def test_summarize_rejects_inconsistent_inputs(prompts, answers):
    with pytest.raises(ValueError):
        summarize(prompts, answers)


# ---------------------------------------------------------------------------------------- labels

def _sentiment():
    prompts = [P("1", "positive", tags=["t1"]), P("2", "positive", tags=["t1"]), P("3", "negative"), P("4", "negative")]
    answers = {"1": ok("1", "Positive"), "2": ok("2", "negative."), "3": ok("3", "Negative"), "4": ok("4", "maybe")}
    return prompts, answers


def test_label_metrics_hand_checked():
    s = summarize(*_sentiment())
    assert s["labels"] is True
    # predictions: positive, negative, negative, other
    # positive: tp 1, fp 0, fn 1 -> F1 2/3;  negative: tp 1, fp 1, fn 1 -> F1 1/2;  "other" is not a class
    assert s["metrics"]["label_accuracy"] == pytest.approx(0.5)
    assert s["metrics"]["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_label_metrics_per_tag_include_predicted_classes():
    s = summarize(*_sentiment())
    t1 = s["per_tag"]["t1"]["metrics"]
    # refs positive, positive; preds positive, negative -> positive F1 2/3, negative F1 0 (predicted, never true)
    assert t1["label_accuracy"] == pytest.approx(0.5)
    assert t1["macro_f1"] == pytest.approx(1 / 3)


def test_label_metrics_skip_errors():
    prompts, answers = _sentiment()
    answers["4"] = fail("4")
    m = summarize(prompts, answers)["metrics"]
    # preds positive, negative, negative: positive F1 2/3, negative tp1 fp1 fn0 -> 2/3
    assert m["label_accuracy"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(2 / 3)


def test_label_metrics_perfect():
    prompts, _ = _sentiment()
    m = summarize(prompts, {p.id: ok(p.id, p.reference.upper()) for p in prompts})["metrics"]
    assert m["label_accuracy"] == 1.0 and m["macro_f1"] == 1.0


def test_labels_override():
    prompts, answers = _mixed()
    assert "macro_f1" in summarize(prompts, answers, labels=True)["metrics"]
    prompts, answers = _sentiment()
    m = summarize(prompts, answers, labels=False)["metrics"]
    assert "macro_f1" not in m and "label_accuracy" not in m


def _labels(refs):
    return references_are_labels([P(str(i), r) for i, r in enumerate(refs)])


@pytest.mark.parametrize("refs, expected", [
    (["yes", "no", "yes", "no"], True),
    (["Yes.", "yes", "No", "no!"], True),  # judged after normalization
    (["a", "a"], True),
    (["a"], False),  # one prompt
    (["a", "b", "c"], False),  # fewer than 2 prompts per distinct reference
    (["a", "b", "c", "a", "b", "c"], True),
    (["one two three four five", "one two three four five"], False),  # more than 4 words
    (["x" * 41, "x" * 41], False),  # more than 40 characters
    (["a\nb", "a\nb", "c", "c"], False),  # multi-line
    ([f"l{i}" for i in range(50)] * 2, True),  # 50 distinct
    ([f"l{i}" for i in range(51)] * 2, False),  # 51 distinct
    (["!!!", "!!!"], False),  # blank after normalization
])
def test_labels_auto_detection_rule(refs, expected):
    assert _labels(refs) is expected
