"""``tuningDataStats`` of a Vertex tuning job, computed from its real training file while the job's data is read.

Field names and types: reference §3 (``SupervisedTuningDataStats``, PROTO-v1 + DISC-v1) and §1a
(``PreferenceOptimizationDataStats``, DISC-v1). int64 fields are JSON strings, doubles numbers. Tokens are the
emulator's tokenizer, :func:`emulator.serving.estimate_tokens` (about 4 characters a token), the same count
``usageMetadata`` reports. An example whose input + output tokens exceed the base model's limit
(:attr:`emulator.models.BaseModel.max_example_tokens`) is dropped: it is not trained on, and its index (1-based,
"starting from 1" per the proto; counted over the file's non-blank lines) and a reason are reported.
"""

from __future__ import annotations

import math

from ..serving import estimate_tokens

# unverified: how many dropped indices Google samples ("A partial sample of the indices"); the emulator keeps 100.
MAX_REPORTED_DROPS = 100
# unverified: how many sample examples Google puts in userDatasetExamples; the emulator keeps 3 examples' turns.
SAMPLE_EXAMPLES = 3


def drop_reason(tokens: int, limit: int) -> str:
    # unverified: Google's user-facing reason text.
    return f"The example has {tokens} tokens, which exceeds the maximum of {limit} tokens per example."


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def _buckets(values: list[float], n_buckets: int = 10) -> list[tuple[int, float, float]]:
    # unverified: Google's bucketing; the emulator uses up to 10 equal-width buckets over [min, max].
    if not values:
        return []
    lo, hi = float(min(values)), float(max(values))
    if hi == lo:
        return [(len(values), lo, hi)]
    width = (hi - lo) / n_buckets
    counts = [0] * n_buckets
    for v in values:
        counts[min(n_buckets - 1, int((v - lo) / width))] += 1
    return [(c, lo + i * width, lo + (i + 1) * width) for i, c in enumerate(counts) if c]


def supervised_distribution(values: list[int]) -> dict:
    """``SupervisedTuningDatasetDistribution``: ``sum``/``billableSum`` int64 (strings), the rest doubles,
    ``buckets[].count`` a double (sic, per the proto)."""
    s = sorted(values)
    total = sum(s)
    return {"sum": str(total), "billableSum": str(total),   # unverified: billableSum == sum for text-only data
            "min": float(s[0]) if s else 0.0, "max": float(s[-1]) if s else 0.0,
            "mean": total / len(s) if s else 0.0, "median": _quantile(s, 0.5),
            "p5": _quantile(s, 0.05), "p95": _quantile(s, 0.95),
            "buckets": [{"count": float(c), "left": left, "right": right} for c, left, right in _buckets(s)]}


def dataset_distribution(values: list[int]) -> dict:
    """``DatasetDistribution`` (preference stats): every statistic a double, ``buckets[].count`` int64."""
    s = sorted(values)
    total = sum(s)
    return {"sum": float(total), "min": float(s[0]) if s else 0.0, "max": float(s[-1]) if s else 0.0,
            "mean": total / len(s) if s else 0.0, "median": _quantile(s, 0.5),
            "p5": _quantile(s, 0.05), "p95": _quantile(s, 0.95),
            "buckets": [{"count": str(c), "left": left, "right": right} for c, left, right in _buckets(s)]}


class SupervisedFacts:
    """Collects one training file's facts, example by example (in the order of the file)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.total = 0
        self.chars = 0
        self.input_tokens: list[int] = []
        self.output_tokens: list[int] = []
        self.messages: list[int] = []
        self.samples: list[dict] = []
        self.dropped: list[tuple[int, str]] = []

    def add(self, row: dict, prompt: str, output: str) -> bool:
        """Counts one example; False when it is dropped (too many tokens)."""
        self.total += 1
        tin, tout = estimate_tokens(prompt), estimate_tokens(output)
        if tin + tout > self.limit:
            self.dropped.append((self.total, drop_reason(tin + tout, self.limit)))
            return False
        self.chars += len(prompt) + len(output)   # unverified: what counts as a "tuning character"
        self.input_tokens.append(tin)
        self.output_tokens.append(tout)
        contents = row.get("contents") or []
        self.messages.append(len(contents))
        if len(self.samples) < SAMPLE_EXAMPLES:
            # unverified: which messages Google samples; the emulator: the example's user turns
            self.samples.extend(c for c in contents if isinstance(c, dict) and c.get("role") == "user")
        return True

    def to_dict(self) -> dict:
        """The persisted stats (``tuningStepCount`` is added when the job is viewed: it depends on the steps)."""
        shown = self.dropped[:MAX_REPORTED_DROPS]
        return {
            # unverified: whether the example count includes the dropped examples (the emulator: it does, it is
            # the number of examples in the file).
            "tuningDatasetExampleCount": str(self.total),
            "totalTuningCharacterCount": str(self.chars),
            # unverified: billable tokens = the kept examples' input + output tokens, once (not times epochs)
            "totalBillableTokenCount": str(sum(self.input_tokens) + sum(self.output_tokens)),
            "userInputTokenDistribution": supervised_distribution(self.input_tokens),
            "userOutputTokenDistribution": supervised_distribution(self.output_tokens),
            "userMessagePerExampleDistribution": supervised_distribution(self.messages),
            "userDatasetExamples": [_text_content(c) for c in self.samples[:SAMPLE_EXAMPLES * 4]],
            "totalTruncatedExampleCount": str(len(self.dropped)),
            "truncatedExampleIndices": [str(i) for i, _ in shown],
            "droppedExampleReasons": [r for _, r in shown],
        }


class PreferenceFacts:
    """The same for a preference-tuning file (``PreferenceOptimizationDataStats``)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.total = 0
        self.input_tokens: list[int] = []
        self.output_tokens: list[int] = []
        self.billable = 0
        self.samples: list[dict] = []
        self.dropped: list[tuple[int, str]] = []

    def add(self, row: dict, prompt: str, completions: list[str]) -> bool:
        self.total += 1
        tin = estimate_tokens(prompt)
        touts = [estimate_tokens(c) for c in completions]
        # "The sum of maximum input and maximum completion token counts must be <= 128K."
        if tin + max(touts) > self.limit:
            self.dropped.append((self.total, drop_reason(tin + max(touts), self.limit)))
            return False
        self.input_tokens.append(tin)
        self.output_tokens.extend(touts)
        # "tokens per example = prompt tokens x 2 + completion tokens" (GEAP zh-cn preference-tuning billing)
        self.billable += tin * 2 + sum(touts)
        if len(self.samples) < SAMPLE_EXAMPLES:
            self.samples.append({k: row[k] for k in ("contents", "completions") if k in row})
        return True

    def to_dict(self) -> dict:
        shown = self.dropped[:MAX_REPORTED_DROPS]
        return {"tuningDatasetExampleCount": str(self.total),
                "totalBillableTokenCount": str(self.billable),
                "userInputTokenDistribution": dataset_distribution(self.input_tokens),
                "userOutputTokenDistribution": dataset_distribution(self.output_tokens),
                "userDatasetExamples": self.samples,
                "droppedExampleIndices": [str(i) for i, _ in shown],
                "droppedExampleReasons": [r for _, r in shown]}


def _text_content(c: dict) -> dict:
    parts = [{"text": p["text"]} for p in c.get("parts") or []
             if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return {"role": c.get("role", "user"), "parts": parts}
