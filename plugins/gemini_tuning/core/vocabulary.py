"""The metric vocabulary: every metric name the evaluation computes, the gate accepts, the report shows and the
pipeline's trigger form offers. One module so that the prompt-set parser, the metrics, the gate, the report and the
DAG cannot disagree (and so that ``promptset`` and ``metrics`` need not import each other).
"""

from __future__ import annotations

#: Metrics a prompt may name in its ``metric`` field.
METRIC_NAMES: tuple[str, ...] = ("exact_match", "normalized_match", "contains", "rouge_l_f1")
#: The per-item metric of a prompt that names none.
DEFAULT_ITEM_METRIC = "normalized_match"
#: Per-example metrics from the autorater (model-based evaluation): present only where the judge answered.
JUDGED_METRICS: tuple[str, ...] = ("judge_score",)
#: Keys of ``ExampleScores.scores`` every answered example has.
EXAMPLE_METRIC_NAMES: tuple[str, ...] = METRIC_NAMES + ("item_metric",)
#: What the gate's primary metric and the paired tests can use (the judged ones only when the judge ran).
GATE_METRIC_NAMES: tuple[str, ...] = EXAMPLE_METRIC_NAMES + JUDGED_METRICS
#: Aggregate-only metrics, present in a summary only when the references are labels.
LABEL_METRIC_NAMES: tuple[str, ...] = ("label_accuracy", "macro_f1")
#: Everything a summary may hold, in display order.
SUMMARY_METRIC_NAMES: tuple[str, ...] = EXAMPLE_METRIC_NAMES + LABEL_METRIC_NAMES
#: The gate's default primary metric (``GateConfig.primary_metric``).
DEFAULT_PRIMARY_METRIC = "normalized_match"

#: How people read the names (report, UI).
METRIC_TITLES: dict[str, str] = {
    "exact_match": "exact match",
    "normalized_match": "normalized match",
    "contains": "contains",
    "rouge_l_f1": "ROUGE-L F1",
    "item_metric": "item metric",
    "judge_score": "judge score",
    "label_accuracy": "label accuracy",
    "macro_f1": "macro F1",
}
