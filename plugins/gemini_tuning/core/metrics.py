"""Per-example scores and their aggregates for one model answering one prompt set.

Per-example metrics (each in [0, 1]; the keys of :attr:`ExampleScores.scores`):

* ``exact_match``      - 1 iff ``answer.strip() == reference.strip()`` (only surrounding whitespace is
  forgiven: a trailing newline is not a different answer).
* ``normalized_match`` - 1 iff :func:`normalize_text` of both are equal.
* ``contains``         - 1 iff the normalized reference occurs in the normalized answer *at token
  boundaries* ("yes" is not found in "eyes", "no" not in "i don't know"). Boundaries are only
  required between two letters/digits of scripts written with spaces; in scripts written without
  spaces (CJK, Thai, Lao, Khmer, Myanmar) plain substring containment is used.
* ``rouge_l_f1``       - ROUGE-L F-measure as the ``rouge-score`` library computes it (``rougeL``, no stemming)
  with a Unicode-aware tokenizer (the library's default tokenizer drops every non-ASCII character, so
  a perfect Japanese answer would score 0). Words are runs of letters/digits/combining marks;
  characters of scripts written without spaces are one token each. If the reference has no token at
  all, the score is 1 iff the answer has none either.
* ``item_metric``      - the prompt's own ``metric`` field (one of :data:`METRIC_NAMES`), default
  :data:`DEFAULT_ITEM_METRIC`. This is how a prompt set mixes e.g. label prompts with free-text ones.

Errors: an answer with ``error`` set, or with ``text`` None, is a failed call. It has no scores, is
excluded from every quality metric's denominator and counts in ``error_rate``. A prompt with no answer
in the mapping is a failed call too ("no answer recorded").

Label metrics (``label_accuracy``, ``macro_f1``) are added when the references are class labels:
``summarize(labels=True/False)`` forces it; ``labels=None`` applies :func:`references_are_labels`
(every reference a non-blank single line of at most 40 characters and 4 words after normalization,
at least 2 prompts, at most 50 distinct normalized references, and on average at least 2 prompts per
distinct reference). The rule depends only on the prompt set, never on the answers, so challenger and
champion always get the same metrics. A prediction is the normalized answer if it is one of the labels
(the distinct normalized references of the whole prompt set), otherwise "other" (wrong for every
class, a false negative for the true class and a false positive for none). Macro F1 averages the F1 of
every class that is a reference or a prediction in the (sub)set; so label accuracy equals the
normalized-match mean, and macro F1 is what adds information (class balance).

Latency p50/p95: linear-interpolated percentiles (numpy default) of ``latency_s`` over successful calls
that reported one; None when there is none. Every undefined value (e.g. a mean over zero answered
prompts) is None, never NaN, so the summary is plain JSON.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gemini_tuning.core.promptset import Prompt
from gemini_tuning.core.vocabulary import (
    DEFAULT_ITEM_METRIC,
    EXAMPLE_METRIC_NAMES,
    LABEL_METRIC_NAMES,
    METRIC_NAMES,
    SUMMARY_METRIC_NAMES,
)

__all__ = [
    "DEFAULT_ITEM_METRIC",
    "EXAMPLE_METRIC_NAMES",
    "LABEL_METRIC_NAMES",
    "METRIC_NAMES",
    "SUMMARY_METRIC_NAMES",
    "Answer",
    "ExampleScores",
    "contains_at_boundary",
    "normalize_text",
    "references_are_labels",
    "rouge_l_f1",
    "rouge_tokenize",
    "score_all",
    "score_example",
    "summarize",
]


LABEL_MAX_CHARS = 40
LABEL_MAX_WORDS = 4
LABEL_MAX_DISTINCT = 50
LABEL_MIN_PER_CLASS = 2.0  # n_prompts / n_distinct must be at least this


@dataclass(frozen=True)
class Answer:
    """A model's answer to one prompt. ``text`` None and/or ``error`` set means the call failed.

    :param prompt_id: the prompt's id in the prompt set.
    :param text: the generated text; None when the call failed.
    :param error: why the call failed; None when it succeeded.
    :param latency_s: how long the call took, in seconds; None when not measured.
    :param usage: ``{"prompt", "output"}`` token counts of the call (``usageMetadata``); None when unknown.
    """

    prompt_id: str
    text: str | None
    error: str | None = None
    latency_s: float | None = None
    usage: dict | None = None        # {"prompt", "output"} tokens of the call (usageMetadata), when known

    @property
    def failed(self) -> bool:
        return self.error is not None or self.text is None


@dataclass(frozen=True)
class ExampleScores:
    """Scores for one prompt; ``scores`` is None (and ``error`` set) when the call failed.

    :param prompt_id: the prompt's id in the prompt set.
    :param scores: metric name -> score (in [0, 1]); None when the call failed.
    :param error: why the call failed; None when it succeeded.
    """

    prompt_id: str
    scores: dict[str, float] | None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"prompt_id": self.prompt_id, "scores": None if self.scores is None else dict(self.scores),
                "error": self.error}


# --------------------------------------------------------------------------------------------- text

def _no_space_script(ch: str) -> bool:
    """Characters of scripts written without spaces between words (each is its own ROUGE token)."""
    o = ord(ch)
    return (
        0x0E00 <= o <= 0x0EFF  # Thai, Lao
        or 0x1000 <= o <= 0x109F  # Myanmar
        or 0x1780 <= o <= 0x17FF  # Khmer
        or 0x3040 <= o <= 0x30FF  # Hiragana, Katakana
        or 0x31F0 <= o <= 0x31FF  # Katakana phonetic extensions
        or 0x3400 <= o <= 0x4DBF  # CJK extension A
        or 0x4E00 <= o <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= o <= 0xFAFF  # CJK compatibility ideographs
        or 0x20000 <= o <= 0x3FFFF  # CJK extensions B+
    )


def _strippable(ch: str) -> bool:
    # Unicode punctuation (P*) except '%' (it changes meaning), plus the markdown backtick.
    return ch.isspace() or ch == "`" or (ch != "%" and unicodedata.category(ch).startswith("P"))


def normalize_text(s: str) -> str:
    """NFKC, casefold, collapse whitespace, strip surrounding whitespace and punctuation.

    Inner punctuation is kept. A leading ``-`` or ``.`` directly before a digit is kept ("-5" is not "5",
    ".5" stays ".5"). ``%`` is never stripped. Examples: ``'  "Paris."\\n' -> 'paris'``,
    ``'**Yes**' -> 'yes'``, ``'(-5)' -> '-5'``.
    """
    s = " ".join(unicodedata.normalize("NFKC", s).casefold().split())
    end = len(s)
    while end > 0 and _strippable(s[end - 1]):
        end -= 1
    start = 0
    while start < end and _strippable(s[start]):
        if s[start] in "-." and start + 1 < end and s[start + 1].isdigit():
            break
        start += 1
    return s[start:end]


def _word_char(ch: str) -> bool:
    """A letter/digit of a script written with spaces: two of these side by side are one word."""
    return ch.isalnum() and not _no_space_script(ch)


def contains_at_boundary(haystack: str, needle: str) -> bool:
    """True iff ``needle`` occurs in ``haystack`` without cutting a word of a space-separated script."""
    if not needle:
        return not haystack
    start = haystack.find(needle)
    while start != -1:
        end = start + len(needle)
        left_ok = start == 0 or not (_word_char(haystack[start - 1]) and _word_char(needle[0]))
        right_ok = end == len(haystack) or not (_word_char(haystack[end]) and _word_char(needle[-1]))
        if left_ok and right_ok:
            return True
        start = haystack.find(needle, start + 1)
    return False


def rouge_tokenize(text: str) -> list[str]:
    """The tokenizer given to rouge-score: NFKC + casefold; words are runs of letters, digits and
    combining marks; each character of a script written without spaces is its own token."""
    tokens: list[str] = []
    cur: list[str] = []
    cur_ns = False
    for ch in unicodedata.normalize("NFKC", text).casefold():
        if unicodedata.category(ch).startswith("M"):
            if cur:
                cur.append(ch)
            continue
        if ch.isalnum():
            ns = _no_space_script(ch)
            if cur and (ns or cur_ns):
                tokens.append("".join(cur))
                cur = []
            cur.append(ch)
            cur_ns = ns
        elif cur:
            tokens.append("".join(cur))
            cur = []
    if cur:
        tokens.append("".join(cur))
    return tokens


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (one DP row: O(len(a)·len(b)) time,
    O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0                      # row[j - 1] of the previous row
        for j, y in enumerate(b, 1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else (above if above >= row[j - 1] else row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l_f1(reference: str, answer: str) -> float:
    """ROUGE-L F1 of ``answer`` against ``reference``: the ``rouge-score`` library's ``rougeL`` computation
    (LCS precision and recall, F = 2PR/(P+R); 0 when either side has no token) on :func:`rouge_tokenize` tokens.

    Computed here rather than through the library: ``rouge_score`` imports ``nltk``, which imports scikit-learn
    and scipy when they are installed (2+ s of CPU in every evaluate task). ``tests/unit/test_metrics.py`` checks
    the two agree, float for float. If the reference has no token, the score is 1 iff the answer has none either.
    """
    ref, ans = rouge_tokenize(reference), rouge_tokenize(answer)
    if not ref:
        return 1.0 if not ans else 0.0
    if not ans:
        return 0.0
    lcs = _lcs_length(ref, ans)
    precision, recall = lcs / len(ans), lcs / len(ref)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# ------------------------------------------------------------------------------------------ scoring

def score_example(prompt: Prompt, answer: Answer) -> ExampleScores:
    """Score one answer. A failed call gives ``ExampleScores(scores=None, error=...)``."""
    if answer.prompt_id != prompt.id:
        raise ValueError(f"answer for {answer.prompt_id!r} scored against prompt {prompt.id!r}")
    if answer.failed:
        return ExampleScores(prompt.id, None, answer.error or "no answer text")
    text = answer.text
    assert text is not None
    norm_ref = normalize_text(prompt.reference)
    norm_ans = normalize_text(text)
    scores = {
        "exact_match": float(text.strip() == prompt.reference.strip()),
        "normalized_match": float(norm_ans == norm_ref),
        "contains": float(contains_at_boundary(norm_ans, norm_ref)),
        "rouge_l_f1": rouge_l_f1(prompt.reference, text),
    }
    scores["item_metric"] = scores[prompt.metric or DEFAULT_ITEM_METRIC]
    return ExampleScores(prompt.id, scores, None)


def _check_ids(prompts: Sequence[Prompt], answers: Mapping[str, Answer]) -> None:
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise ValueError(f"duplicate prompt id {p.id!r}")
        seen.add(p.id)
    unknown = [k for k in answers if k not in seen]
    if unknown:
        raise ValueError(f"{len(unknown)} answer(s) for unknown prompt ids, e.g. {unknown[:3]!r}")
    wrong = [k for k, a in answers.items() if a.prompt_id != k]
    if wrong:
        raise ValueError(f"answers keyed under a different prompt_id, e.g. {wrong[:3]!r}")


def score_all(prompts: Sequence[Prompt], answers: Mapping[str, Answer]) -> list[ExampleScores]:
    """Score every prompt (in order); a prompt with no answer is a failed call ("no answer recorded")."""
    _check_ids(prompts, answers)
    return [score_example(p, answers[p.id]) if p.id in answers
            else ExampleScores(p.id, None, "no answer recorded") for p in prompts]


def references_are_labels(prompts: Sequence[Prompt]) -> bool:
    """The auto-detection rule for label metrics (see the module docstring)."""
    if len(prompts) < 2:
        return False
    refs = []
    for p in prompts:
        raw = p.reference.strip()
        norm = normalize_text(raw)
        if not norm or "\n" in raw or "\r" in raw or len(norm) > LABEL_MAX_CHARS or len(norm.split()) > LABEL_MAX_WORDS:
            return False
        refs.append(norm)
    distinct = len(set(refs))
    return distinct <= LABEL_MAX_DISTINCT and len(refs) >= LABEL_MIN_PER_CLASS * distinct


def _mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return float(sum(vals) / len(vals)) if vals else None


def _macro_f1(pairs: Sequence[tuple[str, str | None]]) -> float | None:
    """pairs of (true label, predicted label or None for 'other')."""
    if not pairs:
        return None
    classes = {t for t, _ in pairs} | {p for _, p in pairs if p is not None}
    f1s = []
    for c in sorted(classes):
        tp = sum(1 for t, p in pairs if t == c and p == c)
        fp = sum(1 for t, p in pairs if t != c and p == c)
        fn = sum(1 for t, p in pairs if t == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(sum(f1s) / len(f1s))


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def _block(items: list[tuple[Prompt, ExampleScores, Answer | None]], label_set: frozenset[str] | None) -> dict:
    n = len(items)
    ok = [(p, s, a) for p, s, a in items if s.scores is not None]
    n_err = n - len(ok)
    metrics: dict[str, Any] = {m: _mean(s.scores[m] for _, s, _ in ok) for m in EXAMPLE_METRIC_NAMES}
    if label_set is not None:
        pairs = []
        for p, _, a in ok:
            pred = normalize_text(a.text)
            pairs.append((normalize_text(p.reference), pred if pred in label_set else None))
        metrics["label_accuracy"] = _mean(float(t == pr) for t, pr in pairs)
        metrics["macro_f1"] = _macro_f1(pairs)
    lat = [float(a.latency_s) for _, _, a in ok if a is not None and a.latency_s is not None]
    return {
        "n": n,
        "n_answered": len(ok),
        "n_errors": n_err,
        "error_rate": (n_err / n) if n else None,
        "metrics": metrics,
        "latency_s": {"p50": _percentile(lat, 50), "p95": _percentile(lat, 95)},
    }


def summarize(prompts: Sequence[Prompt], answers: Mapping[str, Answer], *, labels: bool | None = None) -> dict:
    """Aggregate metrics overall and per tag (tags in order of first appearance).

    Shape: ``{"n", "n_answered", "n_errors", "error_rate", "labels", "metrics": {...},
    "latency_s": {"p50", "p95"}, "per_tag": {tag: {same keys minus labels/per_tag}}}``.
    ``labels``: True/False forces label metrics on/off; None auto-detects (:func:`references_are_labels`).
    """
    scored = score_all(prompts, answers)
    use_labels = references_are_labels(prompts) if labels is None else bool(labels)
    label_set = frozenset(normalize_text(p.reference) for p in prompts) if use_labels else None
    items = [(p, s, answers.get(p.id)) for p, s in zip(prompts, scored)]
    out = _block(items, label_set)
    out = {**{k: out[k] for k in ("n", "n_answered", "n_errors", "error_rate")}, "labels": use_labels,
           "metrics": out["metrics"], "latency_s": out["latency_s"]}
    tags: dict[str, list] = {}
    for it in items:
        for t in it[0].tags:
            tags.setdefault(t, []).append(it)
    out["per_tag"] = {t: _block(group, label_set) for t, group in tags.items()}
    return out
