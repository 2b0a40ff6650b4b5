"""Issue 5 §3: with 10 % of generateContent calls answered 429/503 and some connection resets, the evaluation
completes with 0 prompts lost (real backends, real HTTP to the emulator, its fault injection)."""

from __future__ import annotations

import asyncio
import json

import google.oauth2.credentials
import pytest
import requests

from gemini_tuning.backends.gemini_api import GeminiApiTuningBackend
from gemini_tuning.backends.vertex import VertexTuningBackend
from gemini_tuning.core.generation import GenerationSettings
from gemini_tuning.core.metrics import summarize
from gemini_tuning.core.promptset import parse_prompt_set
from gemini_tuning.services.eval_engine import EngineConfig, Target, result_rows, run_online
from harness.clients import LOCATION, PROJECT
from harness.paths import DEMO

pytestmark = pytest.mark.fast

FAULTS = [{"kind": "status", "path": "generateContent", "status": 429, "retry_after": 0.2, "probability": 0.05},
          {"kind": "status", "path": "generateContent", "status": 503, "probability": 0.05},
          {"kind": "reset", "path": "generateContent", "count": 5}]


def prompts():
    return parse_prompt_set((DEMO / "eval_prompts.jsonl").read_bytes().splitlines(), source_name="eval_prompts.jsonl")


async def evaluate(backend, model, ps):
    settings = GenerationSettings(system_instruction=(DEMO / "system_instruction.txt").read_text().strip())

    async def generate(target, prompt):
        return await backend.agenerate(target.model, prompt.prompt, settings)

    try:
        return await run_online(generate, ps, [Target("challenger", backend.kind, model)],
                                EngineConfig(concurrency=16, rpm=60_000, initial_backoff=0.05, max_backoff=0.5))
    finally:
        await backend.aclose()


@pytest.mark.parametrize("kind", ["vertex", "gemini_api"])
def test_evaluation_under_429_503_and_resets_loses_nothing(emulator, kind):
    url = emulator.endpoints.url
    r = requests.post(f"{url}/_emulator/faults", json=FAULTS, timeout=10)
    assert r.status_code == 200
    requests.delete(f"{url}/_emulator/requests", timeout=10)
    if kind == "vertex":
        backend = VertexTuningBackend(project=PROJECT, location=LOCATION, base_url=url,
                                      credentials=google.oauth2.credentials.Credentials(token="t"))
        model = "gemini-2.5-flash"
    else:
        backend = GeminiApiTuningBackend(base_url=url, api_key="test-key")
        model = "models/gemini-2.5-flash"
    ps = prompts()
    answers = asyncio.run(evaluate(backend, model, ps))
    rules = requests.get(f"{url}/_emulator/faults", timeout=10).json()["rules"]
    assert sum(r["hits"] for r in rules if r["kind"] == "status") >= 5, rules    # faults really happened
    assert next(r for r in rules if r["kind"] == "reset")["hits"] == 5
    rows = list(result_rows(ps, answers, {}))
    assert len(rows) == len(ps)
    statuses = [row["models"]["challenger"]["status"] for row in rows]
    assert statuses.count("answered") == len(ps), [row["models"]["challenger"]["error"] for row in rows
                                                   if row["models"]["challenger"]["status"] != "answered"][:3]
    calls = requests.get(f"{url}/_emulator/requests", params={"path": "generateContent"}, timeout=10).json()["count"]
    assert calls > len(ps)            # the failures were retried, not recorded as answers
    assert summarize(ps, answers["challenger"])["n_errors"] == 0


def test_a_prompt_that_keeps_failing_is_an_error_not_a_wrong_answer(emulator):
    url = emulator.endpoints.url
    ps = prompts()[:5]
    requests.post(f"{url}/_emulator/faults", json={"kind": "status", "path": "generateContent", "status": 503},
                  timeout=10)
    backend = GeminiApiTuningBackend(base_url=url, api_key="k")

    async def go():
        try:
            return await run_online(lambda t, p: backend.agenerate(t.model, p.prompt, GenerationSettings()), ps,
                                    [Target("challenger", "gemini_api", "models/gemini-2.5-flash")],
                                    EngineConfig(attempts=3, initial_backoff=0.01, max_backoff=0.02, rpm=60_000))
        finally:
            await backend.aclose()

    answers = asyncio.run(go())["challenger"]
    assert all(a.text is None and "503" in a.error for a in answers.values())
    s = summarize(ps, answers)
    assert s["n_errors"] == 5 and s["error_rate"] == 1.0 and s["metrics"]["normalized_match"] is None
    assert json.dumps(s)   # JSON-able
