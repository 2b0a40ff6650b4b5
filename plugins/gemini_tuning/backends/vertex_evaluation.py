"""Vertex AI's evaluation service: ``POST /v1beta1/projects/P/locations/L:evaluateInstances`` for model-based
(autorater) metrics — pointwise (a rubric score with the judge's explanation) and pairwise (which of two answers is
better). One request definition and one parse per metric, driven by ``backends.rest.RestClient`` (the same plan runs
sync or async), so the judge's calls go through the evaluation engine's limiter and retries like generation.

Shapes (EvaluationService, checked against the pinned ``aiplatform_v1beta1`` types — v1beta1 because the judge
model, ``autoraterConfig``, is a field of the v1beta1 request only):
``{"pointwiseMetricInput": {"metricSpec": {"metricPromptTemplate"}, "instance": {"jsonInstance": "<JSON>"}},
"autoraterConfig": {"autoraterModel"}}`` -> ``{"pointwiseMetricResult": {"score", "explanation"}}``;
``pairwiseMetricInput`` likewise -> ``{"pairwiseMetricResult": {"pairwiseChoice": BASELINE|CANDIDATE|TIE,
"explanation"}}``. ``jsonInstance`` fills the template's ``{placeholders}``: ``prompt``, ``response``,
``reference`` (pointwise) and ``baseline_model_response`` (pairwise; ``response`` is the candidate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..core.names import validate_resource_name
from .rest import Request, single
from .vertex import GenaiBackend

DEFAULT_POINTWISE_TEMPLATE = (
    "You are grading an assistant's answer.\n"
    "Rate how well the response answers the user's prompt, compared with the reference answer, on a scale of 1 "
    "(useless or wrong) to 5 (as good as the reference). Give a short explanation, then the score.\n\n"
    "## User prompt\n{prompt}\n\n## Reference answer\n{reference}\n\n## Response\n{response}\n")
DEFAULT_PAIRWISE_TEMPLATE = (
    "You are comparing two answers to the same prompt.\n"
    "Which response answers the user's prompt better, judged against the reference answer? Answer A (the "
    "baseline), B (the candidate) or SAME, with a short explanation.\n\n"
    "## User prompt\n{prompt}\n\n## Reference answer\n{reference}\n\n"
    "## Response A\n{baseline_model_response}\n\n## Response B\n{response}\n")
CHOICES = ("BASELINE", "CANDIDATE", "TIE")
#: ``autoraterConfig`` (the judge model) is a request field of v1beta1; the pinned v1 request has none
API_VERSION = "v1beta1"


@dataclass(frozen=True)
class Judgement:
    """One answer of the autorater.

    :param score: the pointwise rubric score (1-5), None for a pairwise judgement.
    :param choice: the pairwise choice: ``BASELINE``, ``CANDIDATE`` or ``TIE``; None for a pointwise one.
    :param explanation: the autorater's explanation.
    """

    score: float | None = None        # pointwise
    choice: str | None = None         # pairwise: BASELINE | CANDIDATE | TIE
    explanation: str = ""


def _autorater(parent: str, model: str) -> dict:
    """One sample, no flipping by the service: the judge service is asked exactly what the caller asks (the
    order-swapped second judgement is the caller's own, ``services.eval_judge``)."""
    name = model if "/" in model else f"{parent}/publishers/google/models/{model}"
    return {"autoraterModel": name, "samplingCount": 1, "flipEnabled": False}


def pointwise_request(parent: str, template: str, instance: dict, judge_model: str) -> Request:
    return Request("POST", f"/{API_VERSION}/{parent}:evaluateInstances", json={
        "pointwiseMetricInput": {"metricSpec": {"metricPromptTemplate": template},
                                 "instance": {"jsonInstance": json.dumps(instance, ensure_ascii=False)}},
        "autoraterConfig": _autorater(parent, judge_model)})


def pairwise_request(parent: str, template: str, instance: dict, judge_model: str) -> Request:
    return Request("POST", f"/{API_VERSION}/{parent}:evaluateInstances", json={
        "pairwiseMetricInput": {"metricSpec": {"metricPromptTemplate": template},
                                "instance": {"jsonInstance": json.dumps(instance, ensure_ascii=False)}},
        "autoraterConfig": _autorater(parent, judge_model)})


def parse_pointwise(body: dict) -> Judgement:
    result = body.get("pointwiseMetricResult") or {}
    if result.get("score") is None:
        raise ValueError(f"evaluateInstances answered no pointwiseMetricResult.score: {sorted(body)}")
    return Judgement(score=float(result["score"]), explanation=str(result.get("explanation") or ""))


def parse_pairwise(body: dict) -> Judgement:
    result = body.get("pairwiseMetricResult") or {}
    choice = result.get("pairwiseChoice")
    if isinstance(choice, int):                       # enum as a number (enum-encoding=int)
        choice = {1: "BASELINE", 2: "CANDIDATE", 3: "TIE"}.get(choice)
    if choice not in CHOICES:
        raise ValueError(f"evaluateInstances answered no usable pairwiseMetricResult.pairwiseChoice: {choice!r}")
    return Judgement(choice=choice, explanation=str(result.get("explanation") or ""))


class VertexEvaluationBackend(GenaiBackend):
    """The autorater, through ``:evaluateInstances`` of one project/location (takes :class:`GenaiBackend`'s
    connection arguments, checked there by ``core.names``; google-genai itself is never loaded for it)."""

    @property
    def parent(self) -> str:
        return validate_resource_name(f"projects/{self.project}/locations/{self.location}", "parent")

    async def apointwise(self, template: str, instance: dict, judge_model: str) -> Judgement:
        return await self.rest.arun(single(pointwise_request(self.parent, template, instance, judge_model),
                                           parse_pointwise))

    async def apairwise(self, template: str, instance: dict, judge_model: str) -> Judgement:
        return await self.rest.arun(single(pairwise_request(self.parent, template, instance, judge_model),
                                           parse_pairwise))
