"""The one retry policy (``backends.retry``), sync and async, and the evaluation engine on it: Retry-After honoured
(capped), exponential backoff under its cap, only transient errors retried, each engine attempt through the rate
limiter again and no concurrency slot held while it pauses."""

from __future__ import annotations

import asyncio

import pytest

from gemini_tuning.backends import retry
from gemini_tuning.backends.errors import TuningApiError
from gemini_tuning.backends.retry import RetryPolicy, delay
from gemini_tuning.services import eval_engine
from gemini_tuning.services.eval_engine import Engine, EngineConfig

pytestmark = pytest.mark.fast

QUICK = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05, total_seconds=None)


class Flaky:
    """Fails with ``errors`` in turn, then answers ``"ok"``."""

    def __init__(self, *errors: BaseException):
        self.errors, self.calls = list(errors), 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self):
        return self()


def test_retry_after_is_honoured_and_capped_and_the_backoff_stays_under_its_cap():
    assert delay(QUICK, 1, TuningApiError(429, "slow", retry_after=0.03)) == 0.03
    assert delay(QUICK, 1, TuningApiError(429, "slow", retry_after=600.0)) == QUICK.max_delay
    for attempt in (1, 2, 3, 10, 1000):
        cap = min(QUICK.max_delay, QUICK.initial_delay * 2 ** min(attempt - 1, 64))
        assert all(0.0 <= delay(QUICK, attempt, TuningApiError(503, "x")) <= cap for _ in range(50))


@pytest.mark.parametrize("run", ["sync", "async"])
def test_transient_errors_are_retried_with_the_pause_retry_after_asks(run):
    fn = Flaky(TuningApiError(429, "slow", retry_after=0.02), ConnectionResetError("reset"),
               TuningApiError(503, "down"))
    pauses = []

    def on_retry(attempt, exc, sleep):
        pauses.append((attempt, type(exc).__name__, sleep))

    if run == "sync":
        assert retry.call(QUICK, fn, on_retry=on_retry) == "ok"
    else:
        assert asyncio.run(retry.acall(QUICK, fn.acall, on_retry=on_retry)) == "ok"
    assert fn.calls == 4
    assert [p[:2] for p in pauses] == [(1, "TuningApiError"), (2, "ConnectionResetError"), (3, "TuningApiError")]
    assert pauses[0][2] == 0.02 and all(p[2] <= QUICK.max_delay for p in pauses)


@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_non_transient_error_is_raised_at_once_and_the_last_one_when_attempts_are_spent(run):
    def go(fn):
        return retry.call(QUICK, fn) if run == "sync" else asyncio.run(retry.acall(QUICK, fn.acall))

    bad = Flaky(TuningApiError(400, "bad request"))
    with pytest.raises(TuningApiError, match="bad request"):
        go(bad)
    assert bad.calls == 1
    down = Flaky(*(TuningApiError(503, f"down {i}", retry_after=0.0) for i in range(10)))
    with pytest.raises(TuningApiError, match="down 3"):
        go(down)
    assert down.calls == QUICK.attempts


def test_the_default_logs_a_warning_per_retry(caplog):
    with caplog.at_level("WARNING", logger=retry.__name__):
        assert retry.call(QUICK, Flaky(TuningApiError(503, "down", retry_after=0.0))) == "ok"
    assert "transient error (attempt 1)" in caplog.text


def test_the_engine_uses_the_shared_policy_with_its_own_numbers():
    cfg = EngineConfig(attempts=3, initial_backoff=0.5, max_backoff=4.0)
    assert Engine(cfg).policy == RetryPolicy(attempts=3, initial_delay=0.5, max_delay=4.0, total_seconds=None)
    assert eval_engine.retry is retry          # not a second implementation


def test_every_engine_attempt_goes_through_the_rate_limiter_and_failures_are_counted(monkeypatch):
    acquired = []
    real = eval_engine.RateLimiter.acquire

    async def acquire(self):
        acquired.append(self)
        await real(self)

    monkeypatch.setattr(eval_engine.RateLimiter, "acquire", acquire)

    async def go():
        engine = Engine(EngineConfig(rpm=60_000, attempts=3, initial_backoff=0.01, max_backoff=0.02))
        flaky = Flaky(TuningApiError(503, "down", retry_after=0.0))
        ok = await engine.call("m", flaky.acall)
        dead = await engine.call("m", Flaky(*(TuningApiError(503, "still down") for _ in range(5))).acall)
        bad = await engine.call("m", Flaky(TuningApiError(400, "bad template")).acall)
        return engine, ok, dead, bad

    engine, ok, dead, bad = asyncio.run(go())
    assert ok[0] == "ok" and ok[1] is None and ok[2] is not None
    assert dead == (None, "TuningApiError: 503 : still down", None)
    assert bad[0] is None and "400" in bad[1] and "bad template" in bad[1]
    assert len(acquired) == 2 + 3 + 1                    # one per attempt, retries included
    assert engine.stats["retries"] == 1 + 2 and engine.stats["errors"] == 2


def test_an_engine_call_pausing_for_a_retry_holds_no_concurrency_slot():
    events = []

    async def go():
        engine = Engine(EngineConfig(concurrency=1, rpm=60_000, attempts=2, max_backoff=1.0))
        first = Flaky(TuningApiError(429, "slow", retry_after=0.2))

        async def slow_then_ok():
            events.append("first")
            return first()

        async def other():
            await asyncio.sleep(0.05)
            events.append("other")
            return "other"

        return await asyncio.gather(engine.call("a", slow_then_ok), engine.call("b", other))

    (a, b) = asyncio.run(go())
    assert a[0] == "ok" and b[0] == "other"
    assert events == ["first", "other", "first"]         # the other call ran during the first one's pause
