"""Generation settings shared by every model in one evaluation: identical for challenger, champion and base."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GenerationSettings:
    """How every model of one evaluation generates its answers (the same for challenger, champion and base).

    :param temperature: sampling temperature (default 0.0: the most deterministic answers).
    :param max_output_tokens: the longest answer, in tokens (default 256).
    :param system_instruction: the system instruction sent with every prompt; None (or ""): none.
    :param top_p: nucleus sampling's probability mass; None: not sent (the service's default).
    :param seed: the generation seed, for repeatable answers; None: not sent.
    """

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


class Generated(str):
    """A generated text that also carries the call's token use (``usageMetadata``): ``{"prompt", "output"}``.
    It is the text everywhere a ``str`` is expected; the evaluation engine keeps ``usage`` on the Answer.

    :param text: the generated text (the string's value).
    :param usage: the call's token counts, ``{"prompt": n, "output": n}``, copied; None: empty.
    """

    usage: dict

    def __new__(cls, text: str, usage: dict | None = None):
        obj = super().__new__(cls, text)
        obj.usage = dict(usage or {})
        return obj


def usage_of(prompt_tokens, output_tokens) -> dict:
    return {"prompt": int(prompt_tokens or 0), "output": int(output_tokens or 0)}


def response_text(body: dict) -> Generated:
    """Text of the first candidate of a GenerateContentResponse (REST JSON); '' when the model returned none.
    Carries the response's ``usageMetadata`` (prompt and candidates token counts)."""
    meta = body.get("usageMetadata") or {}
    usage = usage_of(meta.get("promptTokenCount"), meta.get("candidatesTokenCount"))
    candidates = body.get("candidates") or []
    if not candidates:
        return Generated("", usage)
    parts = (candidates[0].get("content") or {}).get("parts") or []
    return Generated("".join(p.get("text", "") for p in parts if isinstance(p, dict)), usage)
