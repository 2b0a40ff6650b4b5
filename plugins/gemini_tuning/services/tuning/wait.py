"""The one wait loop for a remote job (tuning or batch prediction), shared by the worker and the triggerer.

Purpose
    The operator's non-deferrable path (sync, on the worker) and the deferred triggers (async, in the triggerer)
    wait for the same jobs the same way. Both run :class:`JobWait`: one loop, written once, as a generator that
    *asks* for I/O (:class:`Call`, :class:`Sleep`) and is told the answer. :meth:`JobWait.run` answers with
    ``backend.get`` / ``time.sleep``, :meth:`JobWait.arun` with ``await backend.aget`` / ``asyncio.sleep``: that is
    the whole difference between the two paths.
How it works
    Each round: ask the wait machine (``core.wait``) whether the deadline has come; get the status; for a service
    that keeps the loss curve apart from the job (Vertex: a metrics file) read it when progress moved, at most
    every two minutes, and at the end (``core.wait.LossThrottle``); log; let the machine say what next (sleep,
    done, give up, deadline, queue timeout). Errors are classified here (``backends.errors``: transient or not,
    Retry-After). Each sub-state change (Vertex ``tuningJobState``) is logged once, with the previous sub-state's
    duration. At the deadline, or when the job waited for quota or capacity longer than ``max_queue_seconds``, the
    job is cancelled if asked (a failed cancel is logged and reported, never raised).
What it does not do
    Create jobs, build or close backends (the caller owns the backend's lifetime), or know about Airflow: the result
    is a :class:`WaitOutcome`, whose :meth:`~WaitOutcome.event` is the trigger event payload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal

from ...backends.errors import is_transient, retry_after_of
from ...core.polling import PollPolicy
from ...core.states import JobStatus
from ...core.wait import LossThrottle, WaitMachine


@dataclass(frozen=True)
class Call:
    """Ask the driver to call ``backend.<method>(arg)`` (sync) or ``await backend.a<method>(arg)`` (async); the
    answer sent back is ``(True, result)`` or ``(False, exception)``.

    :param method: ``get``, ``with_loss`` or ``cancel``.
    :param arg: the job name, or the status to add the loss curve to.
    """

    method: Literal["get", "with_loss", "cancel"]
    arg: Any


@dataclass(frozen=True)
class Sleep:
    """Ask the driver to sleep.

    :param seconds: how long.
    """

    seconds: float


@dataclass(frozen=True)
class WaitOutcome:
    """How a wait ended.

    :param kind: ``done`` (``status`` is terminal), ``error`` (polling gave up; the job was not cancelled),
        ``timeout`` (the deadline came; ``cancelled`` says whether the job was cancelled) or ``queue_timeout`` (the
        job waited for quota or capacity longer than ``max_queue_seconds``; cancelled like at the deadline).
    :param job_name: the job waited for.
    :param status: the terminal status (``done`` only).
    :param message: what happened (``error``, ``timeout`` and ``queue_timeout``).
    :param cancelled: the job was cancelled at the deadline or the queue limit.
    :param substates: the sub-state timeline ``[{"state", "since" (epoch), "seconds"}]``; empty for a job without
        sub-states (Gemini API).
    """

    kind: Literal["done", "error", "timeout", "queue_timeout"]
    job_name: str
    status: JobStatus | None = None
    message: str | None = None
    cancelled: bool = False
    substates: tuple = ()

    def event(self) -> dict:
        """The outcome as a trigger event payload (JSON-serializable), the one form both paths finish from."""
        timeline = [dict(e) for e in self.substates]
        if self.kind == "done":
            return {"status": "success" if self.status.succeeded else "failed", "job_name": self.job_name,
                    "job": self.status.summary(), "substates": timeline}
        if self.kind == "error":
            return {"status": "error", "job_name": self.job_name, "message": self.message, "substates": timeline}
        return {"status": self.kind, "job_name": self.job_name, "cancelled": self.cancelled,
                "message": self.message, "substates": timeline}


Reply = tuple[bool, Any]
Steps = Generator[Call | Sleep, Reply | None, WaitOutcome]


@dataclass
class JobWait:
    """Wait for one job until it is terminal, polling fails for good, or its deadline comes.

    :param job_name: the job to poll (and cancel at the deadline, if asked).
    :param log: a logger (the task's or the trigger's: each poll's state, progress and loss is logged).
    :param poll: how often to poll: a ``core.polling.PollPolicy`` or its fields.
    :param deadline: epoch seconds; at the deadline the wait ends (``timeout``). None = no deadline. With
        ``timeout_seconds``, only for a job that reports no sub-state (``core.wait.WaitMachine``).
    :param error_budget_seconds: how long polling may keep failing transiently before the wait gives up.
    :param cancel_on_timeout: cancel the job at the deadline or the queue limit.
    :param read_loss: read a loss curve the service keeps apart from the job (tuning jobs; not batch jobs).
    :param timeout_seconds: the job timeout, counted from the first ``TUNING_JOB_STATE_TUNING`` observation (jobs
        with sub-states); None = the absolute ``deadline`` only.
    :param max_queue_seconds: the most time in ``WAITING_FOR_QUOTA`` / ``WAITING_FOR_CAPACITY`` (summed) before the
        wait ends (``queue_timeout``); None = no limit.
    """

    job_name: str
    log: Any
    poll: PollPolicy | dict | None = None
    deadline: float | None = None
    error_budget_seconds: float = 1800.0
    cancel_on_timeout: bool = True
    read_loss: bool = True
    timeout_seconds: float | None = None
    max_queue_seconds: float | None = None

    def steps(self, now: Callable[[], float]) -> Steps:
        """The loop itself: yields what to do, is sent the answers, returns the :class:`WaitOutcome`.

        :param now: the clock (epoch seconds).
        """
        policy = self.poll if isinstance(self.poll, PollPolicy) else PollPolicy(**(self.poll or {}))
        machine = WaitMachine(self.job_name, policy, self.deadline, self.error_budget_seconds,
                              timeout_seconds=self.timeout_seconds, max_queue_seconds=self.max_queue_seconds)
        throttle, points, validation = LossThrottle(), (), ()
        while True:
            step = machine.due(now())
            if step is None:
                ok, got = yield Call("get", self.job_name)
                if not ok:
                    step = machine.on_error(got, transient=is_transient(got), retry_after=retry_after_of(got),
                                            now=now())
                else:
                    status = got
                    if self.read_loss and status.metrics_uri is not None:
                        if throttle.due(status, now()):
                            throttle.mark(status, now())
                            ok, read = yield Call("with_loss", status)
                            if ok:
                                points = read.loss_history or points
                                validation = read.validation_history or validation
                        status = dataclasses.replace(status, loss_history=points or status.loss_history,
                                                     validation_history=validation or status.validation_history)
                    self.log.info("%s: %s", self.job_name, status.describe())
                    step = machine.on_status(status, now())
                    if step.note:
                        self.log.info("%s: %s", self.job_name, step.note)
            if step.kind == "sleep":
                if step.message:
                    self.log.warning("%s", step.message)
                yield Sleep(step.delay)
            elif step.kind == "done":
                return WaitOutcome("done", self.job_name, status=step.status,
                                   substates=tuple(machine.substates.snapshot(now())))
            elif step.kind == "error":
                return WaitOutcome("error", self.job_name, message=step.message,
                                   substates=tuple(machine.substates.snapshot(now())))
            else:
                timeline = tuple(machine.substates.snapshot(now()))
                return (yield from self._deadline(step.message, step.kind, timeline))

    def _deadline(self, message: str, kind: str = "timeout", substates: tuple = ()) -> Steps:
        """Cancel (if asked) and end: at the deadline (``timeout``) or at the queue limit (``queue_timeout``)."""
        cancelled = False
        what = "queue limit reached" if kind == "queue_timeout" else "deadline reached"
        if self.cancel_on_timeout:
            cancelled, error = yield Call("cancel", self.job_name)
            if cancelled:
                self.log.warning("%s: cancelled %s", what, self.job_name)
            else:
                self.log.error("%s; cancelling %s failed: %s", what, self.job_name, error)
        return WaitOutcome("queue_timeout" if kind == "queue_timeout" else "timeout", self.job_name,
                           cancelled=cancelled, substates=substates,
                           message=message + ("; it was cancelled" if cancelled else "; it was left running"))

    def run(self, backend, *, sleep: Callable[[float], None] = time.sleep,
            now: Callable[[], float] = time.time) -> WaitOutcome:
        """Drive the loop synchronously (the worker): ``backend.get`` etc., ``time.sleep``.

        :param backend: a tuning or batch backend (``backends.contract``).
        :param sleep: the sleep function.
        :param now: the clock.
        """
        async def asleep(seconds: float) -> None:
            sleep(seconds)

        # one loop (arun) for both paths: the backend's blocking calls run in turn, no thread, no overlap
        return asyncio.run(self.arun(_Blocking(backend), sleep=asleep, now=now))

    async def arun(self, backend, *, sleep: Callable[[float], Any] = asyncio.sleep,
                   now: Callable[[], float] = time.time) -> WaitOutcome:
        """Drive the loop asynchronously (the triggerer): ``await backend.aget`` etc., ``await asyncio.sleep``.

        :param backend: a tuning or batch backend (``backends.contract``).
        :param sleep: the coroutine function to sleep with.
        :param now: the clock.
        """
        steps, reply = self.steps(now), None
        while True:
            try:
                ask = steps.send(reply)
            except StopIteration as stop:
                return stop.value
            if isinstance(ask, Sleep):
                await sleep(ask.seconds)
                reply = None
                continue
            try:
                reply = (True, await getattr(backend, "a" + ask.method)(ask.arg))
            except Exception as exc:  # noqa: BLE001 - the loop classifies it
                reply = (False, exc)


class _Blocking:
    """A backend's blocking ``get``/``cancel`` as the ``aget``/``acancel`` coroutines :meth:`JobWait.arun` awaits."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name: str):
        method = getattr(self._backend, name.removeprefix("a"))

        async def call(*args, **kwargs):
            return method(*args, **kwargs)

        return call
