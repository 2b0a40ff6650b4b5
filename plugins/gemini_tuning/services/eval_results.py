"""What one evaluation reads and writes, free of Airflow: the plan (prompts, models, settings, champion), the
results (one row per prompt, a summary, a manifest whose counts add up), and the views the gate and the report
take of those rows.

Bounds on what is read (each refused before it is downloaded, ``backends.gcs.ObjectTooLarge``): a prompt set
:data:`MAX_PROMPT_SET_BYTES` (256 MiB, lines up to 1 MiB), a system instruction file
:data:`MAX_SYSTEM_INSTRUCTION_BYTES` (64 KiB: it is sent with every prompt and kept in the manifest, i.e. XCom),
the results rows :data:`MAX_RESULTS_BYTES` (512 MiB, lines up to 16 MiB). Where the prompt set and the system
instruction may come from is the caller's :class:`~gemini_tuning.core.inputs.InputPolicy` (``inputs``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..backends import gcs
from ..core.dataset import iter_lines
from ..core.generation import GenerationSettings
from ..core.inputs import InputPolicy
from ..core.metrics import Answer, ExampleScores, score_all, summarize
from ..core.promptset import Prompt, parse_prompt_set
from ..core.vocabulary import DEFAULT_ITEM_METRIC
from .champion import read_champion
from .eval_engine import Target, result_rows

MAX_RESULTS_BYTES = 512 * 1024 * 1024
MAX_RESULT_LINE_BYTES = 16 * 1024 * 1024  # one prompt's row: every model's answer, the judge's explanations
MAX_PROMPT_SET_BYTES = 256 * 1024 * 1024
MAX_SYSTEM_INSTRUCTION_BYTES = 64 * 1024
CHECKPOINT_LABEL = "checkpoint-{}"
STATUSES = ("answered", "error", "missing")


class EvaluationInputError(ValueError):
    """The evaluation cannot start: nothing to evaluate, or an inconsistent result."""


@dataclass(frozen=True)
class ModelTarget:
    """One model to evaluate.

    :param target: what online calls use (a Vertex endpoint, a tuned model, a base model id).
    :param batch_model: what batch prediction uses (the Model Registry name).
    """

    target: Target
    batch_model: str


@dataclass(frozen=True)
class EvaluationPlan:
    """What one evaluation does (:func:`plan_evaluation`).

    :param prompts: the prompt set.
    :param models: every model to evaluate, the challenger (or its checkpoints) first.
    :param settings: the generation settings, the same for every model.
    :param champion: the champion pointer's record (None: no champion).
    :param champion_generation: the pointer's generation compared against (0: no pointer).
    :param checkpoints: target label -> the challenger checkpoint it serves (empty: the challenger as one model).
    :param pointer_uri: the champion pointer compared against.
    """

    prompts: list[Prompt]
    models: list[ModelTarget]
    settings: GenerationSettings
    champion: dict | None
    champion_generation: int
    checkpoints: dict = field(default_factory=dict)
    pointer_uri: str | None = None

    @property
    def targets(self) -> list[Target]:
        return [m.target for m in self.models]


def read_text_or_file(value: str | None, storage, *, policy: InputPolicy | None = None,
                      max_bytes: int = MAX_SYSTEM_INSTRUCTION_BYTES, field: str = "system_instruction") -> str | None:
    """A system instruction given inline, or as a path / gs:// URI of a text file.

    A file is read only where ``policy`` allows (``core.inputs``; None: the caller checked) and only up to
    ``max_bytes`` (``backends.gcs.ObjectTooLarge`` above it, before reading)."""
    if not value:
        return None
    if value.startswith("gs://") or (len(value) < 4096 and "\n" not in value and value.endswith(".txt")):
        location = policy.check(value, field) if policy is not None else value
        return gcs.read_bytes(location, storage, max_bytes=max_bytes, what="a system instruction") \
            .decode("utf-8").strip()
    return value


def plan_evaluation(storage, *, prompt_set: str, challenger: dict | None, champion_pointer_uri: str | None,
                    base_model: str | None, settings: GenerationSettings,
                    evaluate_checkpoints: bool = False, inputs: InputPolicy | None = None,
                    max_prompt_set_bytes: int = MAX_PROMPT_SET_BYTES) -> EvaluationPlan:
    """Read the prompt set and the champion pointer; the challenger, the champion (unless it is the challenger)
    and optionally the base model, all under the same ``settings``.

    ``evaluate_checkpoints``: every checkpoint of the challenger that has an endpoint is a target of its own
    (``checkpoint-<id>``); :func:`choose_checkpoint` then makes the best one the challenger. With one checkpoint
    (``exportLastCheckpointOnly``, the Gemini API) the challenger is evaluated as usual.

    ``inputs``: where the prompt set may come from (``core.inputs``; None: the caller checked); it is read only
    up to ``max_prompt_set_bytes`` (stored size, and decompressed size if gzip)."""
    location = inputs.check(prompt_set, "prompt_set") if inputs is not None else prompt_set
    with gcs.open_source(location, storage, max_bytes=max_prompt_set_bytes, what="a prompt set") as f:
        prompts = parse_prompt_set(iter_lines(f, max_decompressed_bytes=max_prompt_set_bytes), source_name=prompt_set)
    ch = challenger or {}
    if not ch.get("tuned_model"):
        raise EvaluationInputError(f"no tuned model to evaluate (challenger={ch!r})")
    ckpts = [c for c in ch.get("checkpoints") or () if c.get("endpoint")]
    checkpoints = {}
    if evaluate_checkpoints and len(ckpts) > 1:
        checkpoints = {CHECKPOINT_LABEL.format(c["checkpoint_id"]): c for c in ckpts}
        models = [ModelTarget(Target(label, ch["backend"], c["endpoint"], quota=ch["tuned_model"]), ch["tuned_model"])
                  for label, c in checkpoints.items()]
    else:
        models = [ModelTarget(Target("challenger", ch["backend"], ch.get("endpoint") or ch["tuned_model"]),
                              ch["tuned_model"])]
    champion, generation = read_champion(storage, champion_pointer_uri) if champion_pointer_uri else (None, 0)
    if champion and champion.get("tuned_model") != ch["tuned_model"]:
        models.append(ModelTarget(Target("champion", champion["backend"],
                                         champion.get("endpoint") or champion["tuned_model"]),
                                  champion["tuned_model"]))
    if base_model:
        models.append(ModelTarget(Target("base", ch["backend"], base_model), base_model))
    return EvaluationPlan(prompts, models, settings, champion, generation, checkpoints, champion_pointer_uri)


def choose_checkpoint(plan: EvaluationPlan, answers: dict[str, dict[str, Answer]], metric: str) -> dict | None:
    """The best checkpoint by ``metric`` (the gate's primary metric; ties go to the earlier, smaller checkpoint):
    its answers become the ``challenger``'s in ``answers`` (in place). Returns ``{"checkpoint_id", "epoch",
    "step", "endpoint", "label", "metric", "score", "scores": [per checkpoint, in epoch order]}``, or None when the
    plan has no checkpoint targets."""
    if not plan.checkpoints:
        return None
    scores = []
    for label, c in plan.checkpoints.items():
        value = summarize(plan.prompts, answers[label])["metrics"].get(metric)
        scores.append({"label": label, "checkpoint_id": str(c["checkpoint_id"]), "epoch": c.get("epoch"),
                       "step": c.get("step"), "endpoint": c["endpoint"], "score": value})
    scores.sort(key=lambda r: (r["epoch"] is None, r["epoch"] or 0, r["step"] or 0))
    best = max(scores, key=lambda r: r["score"] if r["score"] is not None else float("-inf"))  # first max wins
    answers["challenger"] = answers[best["label"]]
    return {**best, "metric": metric, "scores": scores}


JUDGED_EXAMPLES = 5


def _merge_judgements(judged, scores: dict, summary: dict, rows: list[dict]) -> dict | None:
    """The autorater's results into the scores (``judge_score``), the summaries and the rows; returns the
    manifest's ``judge`` block (counts, means, a few judged examples with the judge's explanations)."""
    if judged is None:
        return None
    for label, by_id in judged.results.pointwise.items():
        for pid, rec in by_id.items():
            s = scores.get(label, {}).get(pid)
            if s is not None and s.scores is not None and rec.get("judge_score") is not None:
                s.scores["judge_score"] = rec["judge_score"]
        if label in summary:
            summary[label]["metrics"]["judge_score"] = judged.results.mean(label)
    counts = judged.results.counts() if judged.results.pairwise else None
    if counts:
        from ..core.gate import sign_test

        counts["p_value"] = sign_test(counts["wins"], counts["losses"])    # against 0.5; the gate adds its margin
    if counts and "challenger" in summary:
        summary["challenger"]["pairwise"] = counts
    examples = []
    for row in rows:
        pw = judged.results.pairwise.get(row["prompt_id"])
        pt = {label: by_id[row["prompt_id"]] for label, by_id in judged.results.pointwise.items()
              if row["prompt_id"] in by_id}
        for label, rec in pt.items():
            row["models"][label]["judge"] = rec
        if pw is not None:
            row["pairwise"] = pw
        if len(examples) < JUDGED_EXAMPLES and (pw or pt):
            examples.append({"prompt_id": row["prompt_id"], "prompt": row["prompt"], "reference": row["reference"],
                             "challenger": row["models"].get("challenger", {}).get("answer"),
                             "champion": (row["models"].get("champion") or {}).get("answer"),
                             "pairwise": pw, "pointwise": pt})
    cfg = judged.config
    return {"mode": cfg.mode, "model": cfg.model, "pairwise": counts,
            "pointwise": {label: judged.results.mean(label) for label in judged.results.pointwise},
            "examples": examples}


def write_results(storage, plan: EvaluationPlan, answers: dict[str, dict[str, Answer]], results_prefix: str,
                  mode: str, checkpoint: dict | None = None, judged=None) -> dict:
    """Score every answer, write ``results.jsonl`` (one row per prompt) and ``summary.json``, return the
    manifest. Raises :class:`EvaluationInputError` if the counts of a model do not add up to the prompts.
    ``checkpoint``: what :func:`choose_checkpoint` chose (kept in the manifest as ``best_checkpoint``);
    ``judged``: the ``services.eval_judge.Judge`` that judged the answers (manifest key ``judge``)."""
    prompts = plan.prompts
    scores = {label: {s.prompt_id: s for s in score_all(prompts, by_id)} for label, by_id in answers.items()}
    summary = {label: summarize(prompts, by_id) for label, by_id in answers.items()}
    rows = list(result_rows(prompts, answers, scores))
    judge = _merge_judgements(judged, scores, summary, rows)
    # the chosen checkpoint's answers are also the challenger's: count them once
    tokens = token_use({k: v for k, v in answers.items() if not (checkpoint and k == "challenger")})
    for label, use in tokens.items():
        summary[label]["tokens"] = use
    prefix = results_prefix.rstrip("/")
    gcs.write_bytes(storage, f"{prefix}/results.jsonl",
                    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(), "application/jsonl")
    gcs.write_bytes(storage, f"{prefix}/summary.json", json.dumps(summary, indent=1).encode(), "application/json")
    counts = {}
    for label in answers:
        statuses = [r["models"][label]["status"] for r in rows]
        counts[label] = {s: statuses.count(s) for s in STATUSES}
        if sum(counts[label].values()) != len(prompts):
            raise EvaluationInputError(f"{label}: {counts[label]} does not add up to {len(prompts)} prompts")
    models = {t.label: t.model for t in plan.targets}
    if checkpoint is not None:
        models["challenger"] = checkpoint["endpoint"]
    return {"results_uri": f"{prefix}/results.jsonl", "n_prompts": len(prompts), "rows": len(rows),
            "counts": counts, "summary": summary, "models": models,
            "champion": plan.champion, "champion_generation": plan.champion_generation,
            "champion_pointer_uri": plan.pointer_uri, "settings": plan.settings.to_dict(), "mode": mode,
            "best_checkpoint": checkpoint, "judge": judge, "tokens": tokens}


def token_use(answers: dict[str, dict[str, Answer]]) -> dict:
    """Tokens the evaluation's generation calls used, per model (from each response's ``usageMetadata``;
    ``calls_with_usage`` < answered means some responses carried none, e.g. batch predictions)."""
    out = {}
    for label, by_id in answers.items():
        known = [a.usage for a in by_id.values() if a.usage]
        prompt, output = sum(u.get("prompt", 0) for u in known), sum(u.get("output", 0) for u in known)
        out[label] = {"prompt": prompt, "output": output, "total": prompt + output, "calls_with_usage": len(known)}
    return out


def read_rows(storage, results_uri: str, *, max_bytes: int = MAX_RESULTS_BYTES) -> list[dict]:
    """The result rows of an evaluation (streamed; above ``max_bytes`` refused before downloading)."""
    return gcs.read_jsonl(storage, results_uri, max_bytes=max_bytes, what="evaluation results",
                          max_line_bytes=MAX_RESULT_LINE_BYTES)


def example_scores(rows: list[dict], label: str) -> list[ExampleScores]:
    """One model's scores from the result rows, as the gate takes them (errors carry no scores)."""
    out = []
    for r in rows:
        m = r["models"][label]
        out.append(ExampleScores(r["prompt_id"], m["scores"], m["error"] if m["status"] != "answered" else None))
    return out


def differing_examples(rows: list[dict]) -> list[dict]:
    """The prompts where challenger and champion answered differently (all of them without a champion), with
    each model's answer and its score on the prompt's own metric, for the report."""
    examples = []
    for r in rows:
        ch, cp = r["models"].get("challenger", {}), r["models"].get("champion")
        if cp is not None and ch.get("answer") == cp.get("answer"):
            continue
        metric = r.get("metric") or DEFAULT_ITEM_METRIC
        examples.append({"prompt_id": r["prompt_id"], "prompt": r["prompt"], "reference": r["reference"],
                         "tags": r["tags"], "challenger": ch.get("answer"), "champion": (cp or {}).get("answer"),
                         "challenger_score": (ch.get("scores") or {}).get(metric),
                         "champion_score": ((cp or {}).get("scores") or {}).get(metric),
                         "challenger_error": ch.get("error"), "champion_error": (cp or {}).get("error")})
    return examples
