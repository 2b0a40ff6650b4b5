"""Model-based evaluation: an autorater (Vertex's evaluation service) judges the answers, prompt by prompt.

- **pointwise**: a rubric score (1-5) with the judge's explanation, for the challenger and the champion; kept
  per example as ``judge_score`` (the score mapped to [0, 1]: (score - 1) / 4), a metric the gate can threshold
  and compare with its paired test like any other.
- **pairwise**: challenger vs champion on the same prompt, judged **twice with the order swapped** (first the
  challenger as candidate, then as baseline). Both say the challenger -> ``win``; both the champion -> ``loss``;
  a tie, or the two orders disagreeing (position bias) -> ``tie``; a failed judge call -> ``error``, never a loss.
  The gate's pairwise rule takes these (``core.gate.pairwise_rules``).

Templates: a prompt's own ``judge_template`` / ``pairwise_template`` (prompt-set fields), else the operator's,
else the defaults of ``backends.vertex_evaluation``. Calls go through the evaluation engine (``Engine.call``) under
the judge model's own quota, with its retries; on Google the judge is a model (the emulator's is a deterministic
stand-in that scores closeness to the reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..backends.vertex_evaluation import DEFAULT_PAIRWISE_TEMPLATE, DEFAULT_POINTWISE_TEMPLATE
from ..core.metrics import Answer
from ..core.promptset import Prompt
from .eval_engine import Engine, PromptHook

MODES = ("none", "pointwise", "pairwise", "both")
JUDGE_SCORE = "judge_score"
MAX_EXPLANATION = 2000


@dataclass(frozen=True)
class JudgeConfig:
    """What to judge, and how.

    :param mode: ``none``, ``pointwise``, ``pairwise`` or ``both``.
    :param model: the autorater model.
    :param pointwise_template: the pointwise metric prompt template (None: the default).
    :param pairwise_template: the pairwise metric prompt template (None: the default).
    :param rpm: the judge model's requests per minute (None: the engine's).
    """

    mode: str = "none"
    model: str = "gemini-2.5-flash"
    pointwise_template: str | None = None
    pairwise_template: str | None = None
    rpm: float | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"judge mode must be one of {MODES}, got {self.mode!r}")

    @property
    def pointwise(self) -> bool:
        return self.mode in ("pointwise", "both")

    @property
    def pairwise(self) -> bool:
        return self.mode in ("pairwise", "both")


def outcome(first: str | None, second: str | None) -> str:
    """The challenger's outcome from the two pairwise choices: ``first`` with the challenger as CANDIDATE,
    ``second`` with it as BASELINE (None: that call failed)."""
    if first is None or second is None:
        return "error"
    if first == "CANDIDATE" and second == "BASELINE":
        return "win"
    if first == "BASELINE" and second == "CANDIDATE":
        return "loss"
    return "tie"      # a tie from the judge, or the two orders disagree (position bias)


@dataclass
class JudgeResults:
    """What the judge said.

    :param pointwise: label -> prompt id -> ``{"score", "judge_score", "explanation", "error"}``.
    :param pairwise: prompt id -> ``{"outcome", "choices", "explanations", "error"}``.
    """

    pointwise: dict = field(default_factory=dict)
    pairwise: dict = field(default_factory=dict)

    def outcomes(self) -> dict[str, str]:
        return {pid: r["outcome"] for pid, r in self.pairwise.items()}

    def counts(self) -> dict:
        out = {o: 0 for o in ("win", "loss", "tie", "error")}
        for r in self.pairwise.values():
            out[r["outcome"]] += 1
        decisive = out["win"] + out["loss"]
        return {"wins": out["win"], "losses": out["loss"], "ties": out["tie"], "errors": out["error"],
                "win_rate": out["win"] / decisive if decisive else None}

    def mean(self, label: str) -> float | None:
        vals = [r["judge_score"] for r in self.pointwise.get(label, {}).values() if r.get("judge_score") is not None]
        return sum(vals) / len(vals) if vals else None


class Judge(PromptHook):
    """Judges each prompt once its answers are in (``run_online(..., after_prompt=judge)``), or afterwards
    (:meth:`judge_all`, for answers from batch prediction).

    :param backend: a ``VertexEvaluationBackend`` (``apointwise`` / ``apairwise``).
    :param config: what to judge and with which model and templates.
    """

    def __init__(self, backend, config: JudgeConfig):
        self.backend = backend
        self.config = config
        self.results = JudgeResults()
        self.quota = f"judge:{config.model}"

    def _instance(self, prompt: Prompt, response: str, baseline: str | None = None) -> dict:
        inst = {"prompt": prompt.prompt, "response": response, "reference": prompt.reference}
        if baseline is not None:
            inst["baseline_model_response"] = baseline
        return inst

    async def _call(self, engine: Engine, fn):
        return await engine.call(self.quota, fn, rpm=self.config.rpm)

    async def on_prompt(self, engine: Engine, prompt: Prompt, answers: Mapping[str, Answer]) -> None:
        import asyncio

        cfg = self.config
        jobs = []
        if cfg.pointwise:
            template = prompt.extra.get("judge_template") or cfg.pointwise_template or DEFAULT_POINTWISE_TEMPLATE
            for label in ("challenger", "champion"):
                a = answers.get(label)
                if a is not None and a.error is None:
                    jobs.append(self._pointwise(engine, prompt, label, a.text or "", template))
        ch, cp = answers.get("challenger"), answers.get("champion")
        if cfg.pairwise and ch is not None and cp is not None and ch.error is None and cp.error is None:
            template = prompt.extra.get("pairwise_template") or cfg.pairwise_template or DEFAULT_PAIRWISE_TEMPLATE
            jobs.append(self._pairwise(engine, prompt, ch.text or "", cp.text or "", template))
        await asyncio.gather(*jobs)

    async def _pointwise(self, engine, prompt, label, text, template) -> None:
        j, err, _ = await self._call(engine, lambda: self.backend.apointwise(
            template, self._instance(prompt, text), self.config.model))
        score = j.score if j is not None else None
        self.results.pointwise.setdefault(label, {})[prompt.id] = {
            "score": score, "judge_score": None if score is None else max(0.0, min(1.0, (score - 1.0) / 4.0)),
            "explanation": (j.explanation if j else "")[:MAX_EXPLANATION], "error": err}

    async def _pairwise(self, engine, prompt, challenger: str, champion: str, template) -> None:
        import asyncio

        (a, err_a, _), (b, err_b, _) = await asyncio.gather(
            self._call(engine, lambda: self.backend.apairwise(
                template, self._instance(prompt, challenger, baseline=champion), self.config.model)),
            self._call(engine, lambda: self.backend.apairwise(
                template, self._instance(prompt, champion, baseline=challenger), self.config.model)))
        first, second = (a.choice if a else None), (b.choice if b else None)
        self.results.pairwise[prompt.id] = {
            "outcome": outcome(first, second), "choices": [first, second],
            "explanations": [(a.explanation if a else "")[:MAX_EXPLANATION],
                             (b.explanation if b else "")[:MAX_EXPLANATION]],
            "error": err_a or err_b}

    async def judge_all(self, engine: Engine, prompts: Sequence[Prompt], answers: Mapping[str, Mapping[str, Answer]]):
        """Judge answers that came from elsewhere (batch prediction)."""
        import asyncio

        await asyncio.gather(*(self.on_prompt(engine, p, {label: by_id[p.id] for label, by_id in answers.items()
                                                          if p.id in by_id}) for p in prompts))
