"""The ``policy:`` section of a pipeline file (:mod:`.spec`): the promotion gate's thresholds, the budget, approval,
and the allowed storage roots, projects, locations and base models.

Pure: pydantic, the standard library and ``gemini_tuning.core`` only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from ..core.gcs_uri import split_gs_uri
from ..core.vocabulary import GATE_METRIC_NAMES
from .spec_base import Location, NonEmpty, Project, _has_dot_segment, _Model, _resolve

__all__ = ["BudgetSpec", "GateSpec", "PolicySpec"]



def _is_gcs_prefix(root: str) -> bool:
    """``gs://bucket[/path]`` by the one parser (``core.gcs_uri.split_gs_uri``: the bucket rule, no ``..``)."""
    try:
        split_gs_uri(root)
    except ValueError:
        return False
    return True

class GateSpec(_Model):
    """The promotion gate's thresholds (``core.gate``).

    :param min_prompts: the fewest scored prompts for a decision (≥ 1).
    :param max_error_rate: 0-1.
    :param primary_metric: one of ``core.vocabulary.GATE_METRIC_NAMES``.
    :param min_score: the primary metric's absolute threshold (0-1).
    :param min_margin: challenger − champion margin on the primary metric (-1 to 1).
    :param confidence: of the paired test against the champion (0.5 < c < 1).
    :param pairwise_min_decisive: the fewest non-tied judged pairs (≥ 1).
    :param pairwise_margin: the win rate must beat 0.5 + this (0-0.49).
    :param max_dropped_fraction: the most of the training examples the tuning service may drop (0-1), or None
        (no rule); above it the gate fails the candidate (the tuning itself succeeded).
    """

    min_prompts: Annotated[int, Field(ge=1)] = 20
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    primary_metric: Literal[GATE_METRIC_NAMES] = "normalized_match"  # type: ignore[valid-type]
    min_score: Annotated[float, Field(ge=0, le=1)] = 0.6
    min_margin: Annotated[float, Field(ge=-1, le=1)] = 0.0
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    pairwise_min_decisive: Annotated[int, Field(ge=1)] = 10
    pairwise_margin: Annotated[float, Field(ge=0, le=0.49)] = 0.0
    max_dropped_fraction: Annotated[float, Field(ge=0, le=1)] | None = None


class BudgetSpec(_Model):
    """Spending limits checked before the tuning job is created (None: no limit).

    :param max_training_tokens: ≥ 1 or None.
    :param max_cost: ≥ 0 or None (needs ``price_per_million_training_tokens``).
    :param price_per_million_training_tokens: > 0 or None.
    """

    max_training_tokens: Annotated[int, Field(ge=1)] | None = None
    max_cost: Annotated[float, Field(ge=0)] | None = None
    price_per_million_training_tokens: Annotated[float, Field(gt=0)] | None = None


class PolicySpec(_Model):
    """What the pipeline's runs are held to: a run may tighten it, never loosen it (``pipelines.policy``).

    :param gate: :class:`GateSpec`.
    :param require_approval: a human must approve a promotion.
    :param approval_timeout_hours: > 0, or None (wait forever).
    :param budget: :class:`BudgetSpec`.
    :param allowed_storage_roots: ``gs://`` prefixes and local folders (relative: to the YAML file) that
        ``gcs_prefix`` and every input must be under; empty: the pipeline's ``gcs_prefix`` only.
    :param allowed_projects: projects a run may pick besides ``google.project`` (empty: only that one).
    :param allowed_locations: the locations allowed (empty: the file's location is not restricted, a run may not
        change it).
    :param allowed_base_models: the base models allowed (empty: likewise).
    :param on_base_retirement: ``rebase`` (default) or ``fail``: what a ``continue_from: champion`` run does when
        the champion's base model nears its tuning block or retirement (``tuning.retirement_warn_days``): tune
        ``google.base_model`` afresh, judged against the still-serving champion, or stop with a clear message.
    """

    gate: GateSpec = Field(default_factory=GateSpec)
    require_approval: bool = False
    approval_timeout_hours: Annotated[float, Field(gt=0)] | None = 72.0
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    allowed_storage_roots: list[NonEmpty] = Field(default_factory=list)
    allowed_projects: list[Project] = Field(default_factory=list)
    allowed_locations: list[Location] = Field(default_factory=list)
    allowed_base_models: list[NonEmpty] = Field(default_factory=list)
    on_base_retirement: Literal["rebase", "fail"] = "rebase"

    @field_validator("allowed_storage_roots")
    @classmethod
    def _roots(cls, value: list[str], info: ValidationInfo) -> list[str]:
        out = []
        for root in value:
            if root.startswith("gs://") and (not _is_gcs_prefix(root.rstrip("/")) or _has_dot_segment(root)):
                raise ValueError(f"{root!r} is not a gs://bucket[/path] prefix")
            out.append(_resolve(root, info))
        return out
