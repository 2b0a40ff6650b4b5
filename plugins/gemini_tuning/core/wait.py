"""The wait state machine: one definition of how to wait for a long remote job, driven by I/O layers that only poll.

Purpose
    The deferred triggers (async, in the triggerer) and the operator's non-deferrable path (sync, on the worker)
    wait for the same jobs with the same rules, through one loop that drives this machine
    (``services.tuning.wait.JobWait``): ``machine.due(now)`` before each poll, then on each answer
    ``machine.on_status(status, now)`` or ``machine.on_error(...)``, then act on the :class:`Step` (sleep, finish,
    give up, handle the deadline).
How it works
    * deadline: the job's own clock (``created + timeout``); once reached the step is ``deadline``, and no sleep
      ever runs past it;
    * terminal check: :attr:`JobStatus.terminal` (``core.states``, the one definition of terminal states);
    * next delay: :class:`~gemini_tuning.core.polling.PollState` (ETA-paced, jittered);
    * error budget: transient errors (the caller classifies them; this module knows no HTTP) are retried with the
      poll interval or the service's Retry-After for up to ``error_budget_seconds`` of consecutive failure; then
      the step is ``error`` with a message that says the job was not cancelled.
What it does not do
    No sleeping, no network, no cancelling: a ``deadline`` step tells the caller to cancel if it was asked to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .polling import PollPolicy, PollState
from .states import JobStatus

StepKind = Literal["sleep", "done", "error", "deadline"]


@dataclass(frozen=True)
class Step:
    """What the driver does next. ``sleep``: wait ``delay`` seconds and poll again; ``done``: ``status`` is
    terminal; ``error``: give up with ``message`` (never cancel); ``deadline``: the job ran out of time."""

    kind: StepKind
    delay: float = 0.0
    status: JobStatus | None = None
    message: str | None = None


@dataclass
class WaitMachine:
    """:param job_name: the job being waited for (for messages only).
    :param policy: how often to poll (``core.polling.PollPolicy``).
    :param deadline: epoch seconds after which the wait ends with a ``deadline`` step; None = no deadline.
    :param error_budget_seconds: how long polling may keep failing transiently before the wait gives up.
    """

    job_name: str
    policy: PollPolicy = field(default_factory=PollPolicy)
    deadline: float | None = None
    error_budget_seconds: float = 1800.0
    poll: PollState = field(default_factory=PollState)
    failing_since: float | None = None

    def due(self, now: float) -> Step | None:
        """Call before each poll: a ``deadline`` step once the deadline is reached, else None (poll now)."""
        if self.deadline is not None and now >= self.deadline:
            return Step("deadline", message=f"{self.job_name} did not finish before the deadline")
        return None

    def _clamp(self, delay: float, now: float) -> float:
        if self.deadline is not None:
            delay = min(delay, self.deadline - now)
        return max(0.0, delay)

    def on_status(self, status: JobStatus, now: float) -> Step:
        """A successful poll: ``done`` when terminal, else ``sleep`` for the next interval."""
        self.failing_since = None
        if status.terminal:
            return Step("done", status=status)
        delay = self.poll.next_interval(self.policy, now, status.progress_percent)
        return Step("sleep", delay=self._clamp(delay, now), status=status)

    def on_error(self, error: BaseException, *, transient: bool, retry_after: float | None, now: float) -> Step:
        """A failed poll. Non-transient: ``error`` at once. Transient: ``sleep`` until the budget is spent."""
        if not transient:
            return Step("error", message=f"polling {self.job_name} failed: {error}")
        self.failing_since = self.failing_since or now
        failing = now - self.failing_since
        if failing > self.error_budget_seconds:
            return Step("error", message=f"polling {self.job_name} kept failing for {failing:.0f}s (budget "
                                         f"{self.error_budget_seconds:.0f}s); last error: {error}. "
                                         "The job was NOT cancelled.")
        delay = min(self.policy.max_seconds, retry_after or self.poll.next_interval(self.policy, now, None))
        return Step("sleep", delay=self._clamp(delay, now), message=f"transient error polling {self.job_name}: "
                                                                    f"{error}; retrying in {delay:.0f}s")


@dataclass
class LossThrottle:
    """When to read a loss curve that costs a separate request (Vertex keeps it in a metrics file): when progress
    moved, at most once per ``min_interval`` seconds, and always at the end.

    :param min_interval: the shortest time between two reads, in seconds.
    """

    min_interval: float = 120.0
    seen_steps: int | None = None
    last_read: float = float("-inf")

    def due(self, status: JobStatus, now: float) -> bool:
        if status.terminal:
            return True
        return now - self.last_read >= self.min_interval and status.completed_steps != self.seen_steps

    def mark(self, status: JobStatus, now: float) -> None:
        self.seen_steps = status.completed_steps
        self.last_read = now
