"""The per-run HTML report: one self-contained page (inline CSS and SVG charts, no JS, nothing external).

Pure: no Airflow, no network. Split by responsibility: :mod:`.model` (what each section shows, as plain data),
:mod:`.examples` (the example and judge sections), :mod:`.format` (how values are written), :mod:`.charts` (the
SVG charts, shared with the UI page) and :mod:`.render` (Jinja2 over ``gemini_tuning/templates``, autoescape on).

Input (see :func:`render_report`), every key but ``title``/``run_id`` optional; a missing part is shown
as a short note, never an error::

    {"title", "dag_id", "run_id", "generated_at",
     "tuning": {"backend", "job_name", "base_model", "tuned_model", "endpoint",
                "loss_history": [[step, epoch, loss], ...], "validation_history": [...], "hyperparameters": {...},
                "example_count", "continued_from", "checkpoints": [{"checkpoint_id", "epoch", "step", "endpoint"}],
                "billable_tokens" (the service's count), "estimated_tokens" (the prepare step's chars / 4, one pass),
                "dropped_count", "dropped": [{"index", "line", "source", "reason"}, ...] (line: the source file's)},
     "evaluation": {"n_prompts", "results_uri", "models": {"challenger", "champion"}, "judge", "tokens",
                    "summary": {"challenger": summarize(), "champion": summarize() | None},
                    "primary_metric": str (optional; else read from the gate's champion_margin rule),
                    "best_checkpoint": {"checkpoint_id", "metric", "score", "scores": [{"checkpoint_id",
                                        "epoch", "step", "score"}, ...]} (when every checkpoint was evaluated)},
     "gate": GateDecision.to_dict(),
     "decision": "promote" | "delete" | "no_decision" | "no verdict", "action_taken": str,
     "examples": [{"prompt_id", "prompt", "reference", "tags", "challenger", "champion",
                   "challenger_score", "champion_score", "challenger_error", "champion_error"}, ...]}

Sections, top to bottom: header with the decision and the gate summary; key figures; the gate's rules;
the tuning loss curve (integer step ticks, epochs dotted, checkpoints dashed with their scores); the checkpoints;
challenger vs champion metrics (bars and table); the model-based evaluation; per-tag breakdown (bars and table);
the examples where the two models differ (with no champion: the examples the challenger got wrong); run details
(tuning job, models, hyperparameters, results location). Every string from the input is HTML-escaped by the
templates' autoescape (prompts and answers are untrusted), in the SVG charts too.
"""

from __future__ import annotations

from collections.abc import Mapping

from .charts import CHALLENGER_COLOR, CHAMPION_COLOR, DELETE_COLOR, LOSS_COLOR, NEUTRAL_COLOR, PROMOTE_COLOR
from .examples import MAX_EXAMPLE_ROWS, MAX_TEXT_CHARS
from .model import MAX_TAG_CHART
from .render import render_report

__all__ = ["CHALLENGER_COLOR", "CHAMPION_COLOR", "DELETE_COLOR", "LOSS_COLOR", "MAX_EXAMPLE_ROWS", "MAX_TAG_CHART",
           "MAX_TEXT_CHARS", "NEUTRAL_COLOR", "PROMOTE_COLOR", "render_report", "report_data"]


def _retirement(model: str | None) -> str | None:
    """``retires YYYY-MM-DD (N days left)`` of a base model, from the shipped lifecycle table; None when unknown."""
    if not model:
        return None
    from datetime import datetime, timezone

    from ...core import lifecycle

    try:
        status = lifecycle.base_status(model, datetime.now(timezone.utc).date())
    except (OSError, ValueError):
        return None
    if status.retirement is None:
        return None
    when = "retired" if status.state == "retired" else "retires"
    return f"{when} {status.retirement.isoformat()} ({status.days_left} days left)" if status.days_left > 0 \
        else f"{when} {status.retirement.isoformat()}"


def report_data(*, dag_id: str, run_id: str, generated_at: str | None, tuning: Mapping, evaluation: Mapping,
                gate: Mapping, action_taken: str | None, examples: list[dict], dataset: Mapping | None = None,
                dropped_lines: Mapping | None = None) -> dict:
    """The report's input from the pipeline's results (XCom of the tune, evaluate and gate tasks).

    :param dag_id: the run's DAG.
    :param run_id: the run.
    :param generated_at: when the report is written (the task's ``ts``).
    :param tuning: the tune task's result (``JobStatus.summary()``).
    :param evaluation: the evaluate task's manifest.
    :param gate: the gate's decision (``GateDecision.to_dict()``).
    :param action_taken: what the run did (promoted / deleted), if anything yet.
    :param examples: the examples where the models differ (``eval_results.differing_examples``).
    :param dataset: the prepare task's result (its token estimate), or None.
    :param dropped_lines: ``services.prepare.read_line_map`` of the dropped indices (``{"source", "lines"}``).
    """
    summary = evaluation.get("summary", {})
    mapped = dropped_lines or {}
    lines = mapped.get("lines") or {}
    dropped = [{"index": int(i), "line": lines.get(int(i)), "source": mapped.get("source"), "reason": reason}
               for i, reason in tuning.get("dropped") or ()]
    # the service counts the dataset's tokens once ("in the tuning dataset"), so compare the per-pass estimate
    estimate = ((dataset or {}).get("stats") or {}).get("train_tokens")
    return {"title": f"Gemini tuning report — {dag_id}", "dag_id": dag_id, "run_id": run_id,
            "generated_at": generated_at,
            "tuning": {"backend": tuning.get("backend"), "job_name": tuning.get("name"),
                       "base_model": tuning.get("base_model"), "base_retirement": _retirement(tuning.get("base_model")),
                       "tuned_model": tuning.get("tuned_model"), "endpoint": tuning.get("endpoint"),
                       "loss_history": tuning.get("loss_history") or [],
                       "validation_history": tuning.get("validation_history") or [],
                       "example_count": tuning.get("example_count"), "continued_from": tuning.get("continued_from"),
                       "checkpoints": tuning.get("checkpoints") or [],
                       "billable_tokens": tuning.get("billable_tokens"), "estimated_tokens": estimate,
                       "dropped_count": tuning.get("dropped_count"), "dropped": dropped},
            "evaluation": {"n_prompts": evaluation.get("n_prompts"), "results_uri": evaluation.get("results_uri"),
                           "models": evaluation.get("models", {}), "best_checkpoint": evaluation.get("best_checkpoint"),
                           "judge": evaluation.get("judge"), "tokens": evaluation.get("tokens"),
                           "summary": {"challenger": summary.get("challenger"), "champion": summary.get("champion")}},
            "gate": gate, "decision": gate.get("decision"), "action_taken": action_taken, "examples": examples}
