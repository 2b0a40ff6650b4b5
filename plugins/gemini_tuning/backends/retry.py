"""The one retry policy of the package, for sync and async calls alike (the REST and SDK backends, the registry,
and every generation and judge call of the evaluation engine, ``services.eval_engine``): exponential backoff with
jitter, honouring Retry-After (capped at ``max_delay``), bounded by attempts and, optionally, total time. Only
transient errors are retried (``errors.is_transient``: 408, 429, 5xx, resets, timeouts); any other error is
raised at once, and the last error once the attempts are spent."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay

from .errors import is_transient, retry_after_of

log = logging.getLogger(__name__)

#: Called before each pause: ``(attempt number that failed, its error, seconds about to be slept)``.
OnRetry = Callable[[int, BaseException, float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """:param attempts: calls at most (the first one included).
    :param initial_delay: the backoff's first cap in seconds; it doubles per attempt (the pause is drawn
        uniformly below the cap: full jitter).
    :param max_delay: the longest pause, a Retry-After included.
    :param total_seconds: no retry once this long has passed since the first call; None: attempts only.
    """

    attempts: int = 6
    initial_delay: float = 1.0
    max_delay: float = 30.0
    total_seconds: float | None = 300.0

    def to_dict(self) -> dict:
        return asdict(self)


def delay(policy: RetryPolicy, attempt: int, exc: BaseException | None) -> float:
    """The pause after failed attempt ``attempt`` (1-based): the error's Retry-After capped at ``max_delay``, else
    the jittered exponential backoff."""
    ra = retry_after_of(exc) if exc is not None else None
    if ra is not None:
        return min(policy.max_delay, ra)
    cap = policy.max_delay if attempt > 64 else min(policy.max_delay, policy.initial_delay * 2.0 ** (attempt - 1))
    return random.uniform(0.0, max(0.0, cap))


def _log_retry(attempt: int, exc: BaseException, sleep: float) -> None:
    log.warning("transient error (attempt %d): %s; retrying in %.1fs", attempt, exc, sleep)


def _kwargs(policy: RetryPolicy, on_retry: OnRetry | None) -> dict:
    def wait(state: RetryCallState) -> float:
        return delay(policy, state.attempt_number, state.outcome.exception() if state.outcome else None)

    def before_sleep(state: RetryCallState) -> None:
        (on_retry or _log_retry)(state.attempt_number, state.outcome.exception() if state.outcome else None,
                                 state.next_action.sleep if state.next_action else 0.0)

    stop = stop_after_attempt(policy.attempts)
    if policy.total_seconds is not None:
        stop = stop | stop_after_delay(policy.total_seconds)
    return dict(stop=stop, wait=wait, retry=retry_if_exception(is_transient), reraise=True, before_sleep=before_sleep)


def call(policy: RetryPolicy, fn, *args, on_retry: OnRetry | None = None, sleep: Callable[[float], None] | None = None,
         **kwargs):
    """``fn(*args, **kwargs)`` with retries. ``on_retry`` replaces the warning logged before each pause; ``sleep``
    replaces ``time.sleep`` for the pauses (tests pass a no-op or a fake clock's)."""
    extra = {"sleep": sleep} if sleep is not None else {}
    return Retrying(**_kwargs(policy, on_retry), **extra)(fn, *args, **kwargs)


async def acall(policy: RetryPolicy, fn, *args, on_retry: OnRetry | None = None, **kwargs):
    """``await fn(*args, **kwargs)`` with retries. ``fn`` may be any callable returning an awaitable (a lambda
    too): tenacity would call a plain callable without awaiting what it returns, so it gets a coroutine function.
    Each attempt calls ``fn`` again (so whatever it does first, e.g. wait for a rate limiter, happens per attempt);
    the pauses are outside it. ``on_retry`` replaces the warning logged before each pause."""

    async def once():
        return await fn(*args, **kwargs)

    return await AsyncRetrying(**_kwargs(policy, on_retry))(once)
