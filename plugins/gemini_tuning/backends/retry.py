"""Retry policy shared by sync and async calls: exponential backoff with jitter, honouring Retry-After, bounded by
attempts and total time. Only transient errors are retried (``errors.is_transient``)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_random_exponential

from .errors import is_transient, retry_after_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_delay: float = 1.0
    max_delay: float = 30.0
    total_seconds: float = 300.0

    def to_dict(self) -> dict:
        return asdict(self)


def _wait(policy: RetryPolicy):
    backoff = wait_random_exponential(multiplier=policy.initial_delay, max=policy.max_delay)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        ra = retry_after_of(exc) if exc else None
        return min(policy.max_delay, ra) if ra is not None else backoff(state)

    return wait


def _before_sleep(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("transient error (attempt %d): %s; retrying in %.1fs", state.attempt_number, exc,
                state.next_action.sleep if state.next_action else 0.0)


def _kwargs(policy: RetryPolicy) -> dict:
    return dict(stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.total_seconds),
                wait=_wait(policy), retry=retry_if_exception(is_transient), reraise=True,
                before_sleep=_before_sleep)


def call(policy: RetryPolicy, fn, *args, **kwargs):
    return Retrying(**_kwargs(policy))(fn, *args, **kwargs)


async def acall(policy: RetryPolicy, fn, *args, **kwargs):
    """``await fn(*args, **kwargs)`` with retries. ``fn`` may be any callable returning an awaitable (a lambda
    too): tenacity would call a plain callable without awaiting what it returns, so it gets a coroutine function."""

    async def once():
        return await fn(*args, **kwargs)

    return await AsyncRetrying(**_kwargs(policy))(once)
