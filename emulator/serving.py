"""generateContent for every model the emulator knows: tuned (a trained learner artifact) or base (untuned)."""

from __future__ import annotations

import hashlib
import math
import time
from datetime import datetime, timezone

from . import learner
from .errors import ApiError


def rfc3339(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _texts(parts) -> list[str]:
    return [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]


def prompt_from_request(body: dict) -> str:
    """The learner's prompt for a GenerateContentRequest: built exactly as for a training example, so a tuned model
    sees at serving time what it saw in training (system instruction + the conversation so far)."""
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise ApiError(400, "* GenerateContentRequest.contents: contents is not specified")
    for c in contents:
        if not _texts(c.get("parts") if isinstance(c, dict) else None):
            raise ApiError(400, "Unable to submit request because it has an empty text parameter. "
                                "Add a value to the parameter and try again.")
    try:
        return learner.prompt_from_contents(contents, body.get("systemInstruction"))
    except ValueError as exc:
        raise ApiError(400, f"Invalid GenerateContentRequest: {exc}") from None


def _generation_config(body: dict) -> dict:
    cfg = body.get("generationConfig") or {}
    temperature = float(cfg.get("temperature", 1.0) if cfg.get("temperature") is not None else 1.0)
    if not 0.0 <= temperature <= 2.0:
        raise ApiError(400, f"Unable to submit request because temperature {temperature} is out of range [0, 2].")
    max_tokens = cfg.get("maxOutputTokens")
    seed = cfg.get("seed")
    return {"temperature": temperature, "max_tokens": int(max_tokens) if max_tokens else None,
            "seed": int(seed) if seed is not None else None}


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def generate(model: learner.TunedModel | None, base_model_id: str, body: dict, *, vertex: bool,
             model_version: str) -> dict:
    """Answers one GenerateContentRequest (camelCase field names: see ``emulator.wire.camel_keys``).
    ``model`` None means the untuned base model."""
    prompt = prompt_from_request(body)
    cfg = _generation_config(body)
    if model is None:
        text, logprob = learner.base_model_answer(prompt, base_model_id), -1.5
    else:
        seed = cfg["seed"]
        if seed is None and cfg["temperature"] > 0:
            seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
        pred = model.predict(prompt, temperature=cfg["temperature"], seed=seed)
        text, logprob = pred.text, pred.logprob
    finish = "STOP"
    if cfg["max_tokens"] is not None and estimate_tokens(text) > cfg["max_tokens"]:
        text, finish = text[: cfg["max_tokens"] * 4], "MAX_TOKENS"
    prompt_tokens, out_tokens = estimate_tokens(prompt), estimate_tokens(text)
    candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish,
                 "avgLogprobs": float(logprob) / max(1, out_tokens), "index": 0}
    usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": out_tokens,
             "totalTokenCount": prompt_tokens + out_tokens}
    response = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model_version,
                "responseId": hashlib.sha1(f"{time.time_ns()}{prompt}".encode()).hexdigest()[:20]}
    if vertex:
        usage["trafficType"] = "ON_DEMAND"
        response["createTime"] = rfc3339()
    return response
