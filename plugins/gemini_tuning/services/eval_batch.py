"""Evaluation in batch mode, free of Airflow: one Vertex batch prediction job per model over the prompt set.

Inputs are written to GCS as GenerateContentRequest lines carrying the prompt id as a label; a retry reattaches to
a live job of the same task instance and model by display name (batch jobs carry no labels through google-genai);
predictions are mapped back to prompts by id, and a prompt with no row, or a failed row, is an error.
"""

from __future__ import annotations

import json
import logging

from ..backends import gcs
from ..core.generation import GenerationSettings, response_text
from ..core.metrics import Answer
from ..core.promptset import Prompt
from ..core.states import FAILURE_STATES
from .eval_results import EvaluationPlan, ModelTarget

log = logging.getLogger(__name__)
MAX_PREDICTIONS_BYTES = 1 << 30  # one predictions.jsonl, parsed in memory (streamed, lines up to 16 MiB)


def display_name(key: str, label: str) -> str:
    """The batch job's identity: the task instance's key and the model's label."""
    return f"gemini-tuning-eval-{key}-{label}"


def input_lines(prompts: list[Prompt], settings: GenerationSettings) -> bytes:
    return "".join(json.dumps({"request": {**settings.request_body(p.prompt), "labels": {"prompt_id": p.id}}})
                   + "\n" for p in prompts).encode()


def start_jobs(batch, storage, *, key: str, results_prefix: str, models: list[ModelTarget], prompts: list[Prompt],
               settings: GenerationSettings) -> dict[str, str]:
    """Create (or reattach to) one batch job per model. Returns ``{label: job name}``.

    :param batch: a :class:`~gemini_tuning.backends.contract.BatchJobBackend`.
    """
    prefix = results_prefix.rstrip("/")
    jobs = {}
    for m in models:
        label = m.target.label
        name = display_name(key, label)
        live = [j for j in batch.find(name) if j.state not in FAILURE_STATES]
        if live:                      # a retry: reattach instead of paying for the same batch twice
            jobs[label] = live[0].name
            log.info("reattaching to batch job %s for %s", live[0].name, label)
            continue
        src = f"{prefix}/batch/{label}/input.jsonl"
        gcs.write_bytes(storage, src, input_lines(prompts, settings), "application/jsonl")
        job = batch.create(m.batch_model, src, f"{prefix}/batch/{label}/output", name)
        log.info("created batch job %s for %s (%d prompts)", job.name, label, len(prompts))
        jobs[label] = job.name
    return jobs


def read_predictions(storage, output_dir: str, prompts: list[Prompt]) -> dict[str, Answer]:
    """A batch job's ``predictions.jsonl`` rows -> {prompt id: Answer}; every prompt gets one (missing = error)."""
    bucket, prefix = gcs.parse_gs_uri(output_dir)
    answers = {}
    for blob in storage.list_blobs(bucket, prefix=prefix.rstrip("/") + "/"):
        if not blob.name.endswith("predictions.jsonl"):
            continue
        for row in gcs.read_jsonl(storage, gcs.gs_uri(bucket, blob.name), max_bytes=MAX_PREDICTIONS_BYTES,
                                  what="batch predictions"):
            pid = ((row.get("request") or {}).get("labels") or {}).get("prompt_id")
            if pid is None:
                continue
            if row.get("response") is not None:
                text = response_text(row["response"])
                answers[pid] = Answer(pid, str(text), None, None, text.usage)
            else:
                answers[pid] = Answer(pid, None, f"batch prediction failed: {row.get('status')}", None)
    return {p.id: answers.get(p.id) or Answer(p.id, None, "no prediction returned for this prompt", None)
            for p in prompts}


def collect_answers(batch, storage, jobs: dict[str, str], plan: EvaluationPlan) -> dict[str, dict[str, Answer]]:
    """Every target's answers from its finished batch job (``jobs``: what :func:`start_jobs` returned):
    ``{label: {prompt id: Answer}}``, an Answer for every prompt."""
    return {t.label: read_predictions(storage, batch.get(jobs[t.label]).output_uri, plan.prompts)
            for t in plan.targets}
