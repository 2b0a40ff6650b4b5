"""Generation settings shared by every model in one evaluation: identical for challenger, champion and base."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.0
    max_output_tokens: int = 256
    system_instruction: str | None = None
    top_p: float | None = None
    seed: int | None = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def generation_config(self) -> dict:
        """The REST ``generationConfig`` object (camelCase)."""
        cfg = {"temperature": self.temperature, "maxOutputTokens": self.max_output_tokens}
        if self.top_p is not None:
            cfg["topP"] = self.top_p
        if self.seed is not None:
            cfg["seed"] = self.seed
        return cfg

    def request_body(self, prompt: str) -> dict:
        """A GenerateContentRequest for one user prompt (REST and Vertex batch input lines)."""
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "generationConfig": self.generation_config()}
        if self.system_instruction:
            body["systemInstruction"] = {"parts": [{"text": self.system_instruction}]}
        return body


def response_text(body: dict) -> str:
    """Text of the first candidate of a GenerateContentResponse (REST JSON); '' when the model returned none."""
    candidates = body.get("candidates") or []
    if not candidates:
        return ""
    parts = (candidates[0].get("content") or {}).get("parts") or []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))
