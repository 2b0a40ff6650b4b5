"""Online evaluation engine: every prompt × every model, async, rate-limited, retried; no Airflow.

- One token bucket per model (a quota is per model: each tuned endpoint, the champion, the base model and the
  judge) keeps its calls under ``rpm`` requests per minute (``judge_rpm`` for the judge); ``concurrency`` bounds
  all calls in flight.
- Judging (``services.eval_judge``) is pipelined: a prompt is judged as soon as its answers are in, through the
  same limiter, retries and error accounting as generation.
- Transient failures (429, 5xx, resets, timeouts) are retried with backoff, honouring Retry-After, by the
  package's one retry policy (``backends.retry``); each retry goes through the rate limiter again. A prompt that
  still fails is recorded as an *error* (Answer.error), never as a wrong answer, and the quality metrics leave it
  out (``core.metrics``).
- One result row per prompt, whatever happened to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from ..backends import retry
from ..backends.retry import RetryPolicy
from ..core.metrics import Answer, ExampleScores
from ..core.promptset import Prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One model the engine calls.

    :param label: ``challenger``, ``champion``, ``base`` or ``checkpoint-<id>``.
    :param backend: ``vertex`` or ``gemini_api``.
    :param model: what generateContent is called on: an endpoint, ``tunedModels/x``, a base model id.
    :param quota: whose rate limit the calls use (None: ``model``'s); a tuned model's checkpoints share one.
    """

    label: str
    backend: str
    model: str
    quota: str | None = None


@dataclass(frozen=True)
class EngineConfig:
    """:param concurrency: calls in flight at most, all models together.
    :param rpm: requests per minute at most, per quota (model); a quota given its own ``rpm`` (the judge) keeps it.
    :param attempts: / :param initial_backoff: / :param max_backoff: the retry policy of every call
        (``backends.retry.RetryPolicy``: attempts, first backoff cap, longest pause).
    :param progress_every_s: how often the progress is logged.
    """

    concurrency: int = 16
    rpm: float = 600.0
    attempts: int = 8
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    progress_every_s: float = 10.0

    def retry_policy(self) -> RetryPolicy:
        """The retries of every call: ``attempts`` at most, no total time bound (a prompt's calls wait behind the
        rate limiter, which is no failure)."""
        return RetryPolicy(attempts=self.attempts, initial_delay=self.initial_backoff, max_delay=self.max_backoff,
                           total_seconds=None)


class RateLimiter:
    """Token bucket: ``rpm / 60`` tokens per second, at most ``burst`` banked (default 1: requests are spaced
    evenly and no 60 s window ever holds more than ``rpm + 1``).

    :param rpm: requests per minute.
    :param burst: tokens banked at most.
    :param clock: the monotonic clock (tests).
    """

    def __init__(self, rpm: float, burst: float = 1.0, clock=time.monotonic):
        self.rate = rpm / 60.0
        self.capacity = max(1.0, burst)
        self.tokens = 1.0
        self.clock = clock
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


Generate = Callable[[Target, Prompt], Awaitable[str]]


class Engine:
    """Calls under a per-model rate limit, a shared concurrency bound and retries of transient errors (the
    package's one retry policy, ``backends.retry``; each attempt waits for the rate limiter and a concurrency
    slot again, the pauses between attempts hold neither).

    :param cfg: the concurrency, the default rate limit and the retry policy's numbers.
    """

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        self.policy = cfg.retry_policy()
        self.gate = asyncio.Semaphore(cfg.concurrency)
        self.limiters: dict[str, RateLimiter] = {}
        self.stats = {"done": 0, "errors": 0, "retries": 0, "judged": 0}

    def limiter(self, quota: str, rpm: float | None = None) -> RateLimiter:
        if quota not in self.limiters:
            self.limiters[quota] = RateLimiter(rpm or self.cfg.rpm)
        return self.limiters[quota]

    def _retrying(self, attempt: int, exc: BaseException, sleep: float) -> None:
        self.stats["retries"] += 1
        log.debug("transient error (attempt %d): %s; retrying in %.2fs", attempt, exc, sleep)

    async def call(self, quota: str, fn: Callable[[], Awaitable], *, rpm: float | None = None):
        """``(value, None, latency)`` or, once retries are spent or the error is not transient,
        ``(None, "Type: message", None)``."""
        limiter = self.limiter(quota, rpm)
        latency = None

        async def attempt():
            nonlocal latency
            await limiter.acquire()
            async with self.gate:
                t0 = time.monotonic()
                value = await fn()
                latency = time.monotonic() - t0
                return value

        try:
            return await retry.acall(self.policy, attempt, on_retry=self._retrying), None, latency
        except Exception as exc:  # noqa: BLE001
            self.stats["errors"] += 1
            return None, f"{type(exc).__name__}: {exc}", None


class PromptHook:
    """Runs once a prompt has an Answer from every target (the judge): ``await hook.on_prompt(engine, prompt,
    {label: Answer})``."""

    async def on_prompt(self, engine: Engine, prompt: Prompt, answers: dict[str, Answer]) -> None:
        raise NotImplementedError


async def run_online(generate: Generate, prompts: Sequence[Prompt], targets: Sequence[Target],
                     cfg: EngineConfig = EngineConfig(), *,
                     after_prompt: PromptHook | None = None) -> dict[str, dict[str, Answer]]:
    """Returns ``{target label: {prompt id: Answer}}`` with an Answer for every (target, prompt).
    ``after_prompt`` (the judge) runs for each prompt as soon as all its answers are in."""
    engine = Engine(cfg)
    results: dict[str, dict[str, Answer]] = {t.label: {} for t in targets}
    total = len(prompts) * len(targets)
    stats = engine.stats
    start = time.monotonic()

    async def one(target: Target, prompt: Prompt) -> None:
        text, error, latency = await engine.call(target.quota or target.model, lambda: generate(target, prompt))
        results[target.label][prompt.id] = Answer(prompt.id, str(text) if error is None else None, error, latency,
                                                  getattr(text, "usage", None))
        stats["done"] += 1

    async def per_prompt(prompt: Prompt) -> None:
        await asyncio.gather(*(one(t, prompt) for t in targets))
        if after_prompt is not None:
            await after_prompt.on_prompt(engine, prompt, {t.label: results[t.label][prompt.id] for t in targets})
            stats["judged"] += 1

    async def progress() -> None:
        while True:
            await asyncio.sleep(cfg.progress_every_s)
            elapsed = time.monotonic() - start
            log.info("evaluation: %d/%d calls done (%.0f%%), %d prompt(s) judged, %d errors, %d retries, "
                     "%.1f calls/s", stats["done"], total, 100.0 * stats["done"] / max(1, total), stats["judged"],
                     stats["errors"], stats["retries"], stats["done"] / max(elapsed, 1e-9))

    reporter = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(per_prompt(p) for p in prompts))
    finally:
        reporter.cancel()
    elapsed = time.monotonic() - start
    log.info("evaluation finished: %d calls in %.1fs (%.1f/s), %d errors, %d retries", total, elapsed,
             total / max(elapsed, 1e-9), stats["errors"], stats["retries"])
    return results


def result_rows(prompts: Iterable[Prompt], answers: dict[str, dict[str, Answer]],
                scores: dict[str, dict[str, ExampleScores]]) -> Iterable[dict]:
    """Exactly one row per prompt: the prompt, its reference, each model's answer (or error) and scores."""
    for p in prompts:
        row = {"prompt_id": p.id, "prompt": p.prompt, "reference": p.reference, "tags": list(p.tags),
               "metric": p.metric, "models": {}}
        for label, by_id in answers.items():
            a = by_id.get(p.id)
            s = scores.get(label, {}).get(p.id)
            row["models"][label] = {
                "status": "missing" if a is None else ("error" if a.error else "answered"),
                "answer": a.text if a else None, "error": a.error if a else "no answer recorded",
                "latency_s": a.latency_s if a else None, "scores": s.scores if s else None}
        yield row
