"""Batch-mode results: predictions.jsonl rows map back to prompts by id; a missing or failed row is an error."""

from __future__ import annotations

import json

import pytest

from gemini_tuning.core.promptset import Prompt
from gemini_tuning.services.eval_batch import read_predictions
from harness.clients import BUCKET
from harness.data import unique

pytestmark = pytest.mark.fast


def test_rows_map_by_prompt_id_and_gaps_are_errors(gcs_client):
    prompts = [Prompt(f"p{i}", f"q{i}", "a", None, ()) for i in range(4)]
    out = unique("batch-out")
    rows = [{"request": {"labels": {"prompt_id": "p2"}}, "response": {"candidates": [
                {"content": {"parts": [{"text": "two"}]}}]}},
            {"request": {"labels": {"prompt_id": "p0"}}, "response": {"candidates": [
                {"content": {"parts": [{"text": "zero"}]}}]}},
            {"request": {"labels": {"prompt_id": "p1"}}, "status": "RESOURCE_EXHAUSTED"},
            {"request": {"contents": []}, "response": {}}]          # no prompt id: ignored
    gcs_client.bucket(BUCKET).blob(f"{out}/prediction-model-x/predictions.jsonl").upload_from_string(
        "".join(json.dumps(r) + "\n" for r in rows))
    answers = read_predictions(gcs_client, f"gs://{BUCKET}/{out}", prompts)
    assert [answers[f"p{i}"].text for i in range(4)] == ["zero", None, "two", None]
    assert "RESOURCE_EXHAUSTED" in answers["p1"].error
    assert answers["p3"].error == "no prediction returned for this prompt"
    assert len(answers) == len(prompts)
