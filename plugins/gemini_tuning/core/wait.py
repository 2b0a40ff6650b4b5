"""The wait state machine: one definition of how to wait for a long remote job, driven by I/O layers that only poll.

Purpose
    The deferred triggers (async, in the triggerer) and the operator's non-deferrable path (sync, on the worker)
    wait for the same jobs with the same rules, through one loop that drives this machine
    (``services.tuning.wait.JobWait``): ``machine.due(now)`` before each poll, then on each answer
    ``machine.on_status(status, now)`` or ``machine.on_error(...)``, then act on the :class:`Step` (sleep, finish,
    give up, handle the deadline).
How it works
    * deadline: the job's own clock. With ``timeout_seconds`` and a job that reports sub-states (Vertex
      ``tuningJobState``), the timeout counts from the first ``TUNING_JOB_STATE_TUNING`` observation, so time spent
      queued or validating the dataset is not charged to it; otherwise (Gemini API, a v1 GET without the field, a
      trigger serialized before sub-states were tracked) the absolute ``deadline`` (``created + timeout``) holds.
      Once reached the step is ``deadline``, and no sleep ever runs past it;
    * queue time: the seconds spent in ``WAITING_FOR_QUOTA`` / ``WAITING_FOR_CAPACITY``, summed; above
      ``max_queue_seconds`` the step is ``queue_timeout`` (the driver cancels the job like at the deadline);
    * sub-state timeline: ``[{"state", "since", "seconds"}]``, one entry per sub-state change, and a ``note`` on
      the step that observed each change (with the previous sub-state's duration), for the driver to log once;
    * terminal check: :attr:`JobStatus.terminal` (``core.states``, the one definition of terminal states);
    * next delay: :class:`~gemini_tuning.core.polling.PollState` (ETA-paced, jittered);
    * error budget: transient errors (the caller classifies them; this module knows no HTTP) are retried with the
      poll interval or the service's Retry-After for up to ``error_budget_seconds`` of consecutive failure; then
      the step is ``error`` with a message that says the job was not cancelled.
What it does not do
    No sleeping, no network, no cancelling: a ``deadline`` step tells the caller to cancel if it was asked to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from .polling import PollPolicy, PollState
from .states import JobStatus

StepKind = Literal["sleep", "done", "error", "deadline", "queue_timeout"]

TUNING = "TUNING_JOB_STATE_TUNING"
QUEUE_SUB_STATES = frozenset({"TUNING_JOB_STATE_WAITING_FOR_QUOTA", "TUNING_JOB_STATE_WAITING_FOR_CAPACITY"})


def _short(sub_state: str) -> str:
    return sub_state.removeprefix("TUNING_JOB_STATE_")


def _duration(seconds: float) -> str:
    """``1h02m03s`` / ``5m00s`` / ``42s``."""
    s = int(round(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


@dataclass
class SubStateClock:
    """The sub-state timeline of one job, from the statuses the wait observes (pure: the caller gives the time).

    A sub-state's time runs from its first observation to the first observation of the next one (the poll interval
    is the resolution). ``queue_seconds`` sums the time in :data:`QUEUE_SUB_STATES`; ``tuning_since`` is the first
    :data:`TUNING` observation.

    :param timeline: one ``{"state", "since", "seconds"}`` entry per sub-state, in the order observed (``since``: the
        time of its first observation; ``seconds``: how long it lasted so far).
    :param tuning_since: the time of the first :data:`TUNING` observation; None: not seen yet.
    :param seen: some status carried a sub-state (False: the job reports none).
    """

    timeline: list[dict] = field(default_factory=list)
    tuning_since: float | None = None
    seen: bool = False                # some status carried a sub-state

    @property
    def current(self) -> str | None:
        return self.timeline[-1]["state"] if self.timeline else None

    def observe(self, sub_state: str | None, now: float, *, terminal: bool = False) -> str | None:
        """Record one observation; returns a note when the sub-state changed (None otherwise)."""
        self._tick(now)
        if not sub_state or sub_state == self.current:
            return None
        self.seen = True
        note = None
        if self.timeline:
            prev = self.timeline[-1]
            note = (f"sub-state {_short(prev['state'])} -> {_short(sub_state)} after "
                    f"{_duration(prev['seconds'])} in {_short(prev['state'])}")
        elif not terminal:
            note = f"sub-state {_short(sub_state)}"
        self.timeline.append({"state": sub_state, "since": now, "seconds": 0.0})
        if sub_state == TUNING and self.tuning_since is None:
            self.tuning_since = now
        return note

    def _tick(self, now: float) -> None:
        if self.timeline:
            last = self.timeline[-1]
            last["seconds"] = max(0.0, now - last["since"])

    def queue_seconds(self, now: float) -> float:
        """Time spent queued so far (the current sub-state counted up to ``now``)."""
        total = 0.0
        for i, e in enumerate(self.timeline):
            if e["state"] in QUEUE_SUB_STATES:
                total += max(0.0, now - e["since"]) if i == len(self.timeline) - 1 else e["seconds"]
        return total

    def snapshot(self, now: float | None = None) -> list[dict]:
        """The timeline as JSON (copies; the current sub-state counted up to ``now`` when given)."""
        if now is not None:
            self._tick(now)
        return [{"state": e["state"], "since": e["since"], "seconds": round(e["seconds"], 3)} for e in self.timeline]


@dataclass(frozen=True)
class Step:
    """What the driver does next. ``sleep``: wait ``delay`` seconds and poll again; ``done``: ``status`` is
    terminal; ``error``: give up with ``message`` (never cancel); ``deadline``: the job ran out of time;
    ``queue_timeout``: the job waited for quota or capacity longer than allowed. ``note``: the sub-state changed
    (log it once).

    :param kind: ``sleep``, ``done``, ``error``, ``deadline`` or ``queue_timeout``.
    :param delay: with ``sleep``: the seconds to wait before the next poll (clamped to the deadline).
    :param status: the status just polled (``done``: the terminal one); None after a failed poll.
    :param message: why the wait ends (``error``, ``deadline``, ``queue_timeout``), or the transient error retried.
    :param note: the sub-state change to log once; None when it did not change.
    """

    kind: StepKind
    delay: float = 0.0
    status: JobStatus | None = None
    message: str | None = None
    note: str | None = None


@dataclass
class WaitMachine:
    """:param job_name: the job being waited for (for messages only).
    :param policy: how often to poll (``core.polling.PollPolicy``).
    :param deadline: epoch seconds after which the wait ends with a ``deadline`` step; None = no deadline. With
        ``timeout_seconds`` it applies only to a job that reports no sub-state.
    :param error_budget_seconds: how long polling may keep failing transiently before the wait gives up.
    :param timeout_seconds: the job timeout, counted from the first ``TUNING_JOB_STATE_TUNING`` observation for a
        job that reports sub-states; None = the absolute ``deadline`` only (the behaviour before sub-states).
    :param max_queue_seconds: the most time the job may spend in ``WAITING_FOR_QUOTA`` / ``WAITING_FOR_CAPACITY``
        (summed) before the wait ends with a ``queue_timeout`` step; None = no limit.
    :param poll: the polling state (last interval, first progress sample); normally left to its default.
    :param failing_since: when polling started failing transiently (the error budget counts from it); None: the
        last poll succeeded.
    :param substates: the job's sub-state timeline (:class:`SubStateClock`); normally left to its default.
    :param observed: some poll succeeded (until then a ``timeout_seconds`` deadline is not in force).
    """

    job_name: str
    policy: PollPolicy = field(default_factory=PollPolicy)
    deadline: float | None = None
    error_budget_seconds: float = 1800.0
    timeout_seconds: float | None = None
    max_queue_seconds: float | None = None
    poll: PollState = field(default_factory=PollState)
    failing_since: float | None = None
    substates: SubStateClock = field(default_factory=SubStateClock)
    observed: bool = False

    @property
    def effective_deadline(self) -> float | None:
        """The deadline in force: the absolute one, or the first TUNING observation + ``timeout_seconds``."""
        if self.timeout_seconds is None:
            return self.deadline
        if not self.observed:
            return None                   # poll first: the job may be queued (its sub-state decides)
        if self.substates.seen:
            since = self.substates.tuning_since
            return None if since is None else since + self.timeout_seconds
        return self.deadline

    def _queue_step(self, now: float) -> Step | None:
        if self.max_queue_seconds is None or self.substates.current not in QUEUE_SUB_STATES:
            return None
        waited = self.substates.queue_seconds(now)
        if waited < self.max_queue_seconds:
            return None
        sub = _short(self.substates.current)
        return Step("queue_timeout", message=f"{self.job_name} waited {_duration(waited)} for quota or capacity "
                                             f"(now in {sub}), over the max_queue limit of "
                                             f"{_duration(self.max_queue_seconds)}")

    def due(self, now: float) -> Step | None:
        """Call before each poll: a ``deadline`` step once the deadline is reached, a ``queue_timeout`` step once the
        queue limit is, else None (poll now)."""
        deadline = self.effective_deadline
        if deadline is not None and now >= deadline:
            return Step("deadline", message=f"{self.job_name} did not finish before the deadline")
        return self._queue_step(now)

    def _clamp(self, delay: float, now: float) -> float:
        deadline = self.effective_deadline
        if deadline is not None:
            delay = min(delay, deadline - now)
        if self.max_queue_seconds is not None and self.substates.current in QUEUE_SUB_STATES:
            delay = min(delay, self.max_queue_seconds - self.substates.queue_seconds(now))
        return max(0.0, delay)

    def on_status(self, status: JobStatus, now: float) -> Step:
        """A successful poll: ``done`` when terminal, ``queue_timeout`` when queued too long, else ``sleep`` for the
        next interval. ``note`` says when the sub-state changed."""
        self.failing_since = None
        self.observed = True
        note = self.substates.observe(status.sub_state, now, terminal=status.terminal)
        if status.terminal:
            return Step("done", status=status, note=note)
        queued = self._queue_step(now)
        if queued is not None:
            return dataclasses.replace(queued, status=status, note=note)
        delay = self.poll.next_interval(self.policy, now, status.progress_percent)
        return Step("sleep", delay=self._clamp(delay, now), status=status, note=note)

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
    :param seen_steps: the ``completed_steps`` at the last read (a read is due only when progress moved); None: none.
    :param last_read: the time of the last read (``-inf``: never read).
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
