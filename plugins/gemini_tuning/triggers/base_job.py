"""The deferred wait for a remote job, shared by every job kind: polls from the triggerer, no worker slot held.

Purpose
    One trigger shape for tuning jobs and batch prediction jobs (a small subclass per kind, as providers-google's
    ``BaseVertexAIJobTrigger``), driving the pure wait machine (``core.wait``) and doing only I/O.
How it works
    ``run`` takes a lease on the backend the subclass names (one per configuration and event loop, shared by the
    triggers running in that loop), runs the one wait loop (``services.tuning.wait.JobWait``, the same loop the
    operator's worker path runs synchronously), gives the lease back and only then yields the event. Transient
    errors are retried inside ``error_budget_seconds``; giving up yields an ``error`` event and never cancels the
    job. The job is cancelled only on a user kill (``on_kill``, guarded against triggerer handovers) or at the
    deadline, each if enabled.
Backend lifetime
    Every use of a backend holds a lease (:meth:`BaseJobTrigger._lease`): ``run``'s wait and ``on_kill``'s cancel
    alike. The first lease in a loop builds the backend, the last one given back closes it; so the backend
    ``on_kill`` needs after ``run`` was cancelled (the triggerer's order on a user action) is built for it and
    closed when it is done, and nothing is left open. Closing is shielded: a cancellation re-sent mid-close does
    not leave a session half-closed.
What it does not do
    Create jobs. Serialize secrets: credentials are looked up again in the triggerer from the connection ids.
Known limitations
    apache/airflow #73454 (present in 3.3.2): ``on_kill`` also fires on the old triggerer when a trigger moves to
    another one. The guard reads the task instance's state and leaves the job alone while it is ``deferred`` or
    unreadable; a real user action (mark failed/success, clear) has moved the task out of ``deferred`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from ..core.polling import PollPolicy
from ..services.tuning.wait import JobWait

log = logging.getLogger(__name__)

_sleep = asyncio.sleep   # indirections so tests can drive the clock
_now = time.time
# One backend (client, HTTP session) per configuration and event loop, shared by the triggers running in that loop,
# and closed when the loop's last trigger ends (a triggerer has one long-lived loop; dag.test() one loop per trigger).
_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict] = weakref.WeakKeyDictionary()
_KILLS: set[asyncio.Future] = set()   # on_kill work and backend closes in flight (kept referenced until done)


def _loop_state() -> dict:
    return _LOOPS.setdefault(asyncio.get_running_loop(), {"backends": {}, "users": 0})


def build_backend(trigger: BaseJobTrigger):
    """The backend for ``trigger``, built in a worker thread (connection lookup, credentials, any SDK import)."""
    from ..hooks import GeminiTuningHook

    hook = GeminiTuningHook(gcp_conn_id=trigger.gcp_conn_id, impersonation_chain=trigger.impersonation_chain,
                            api_base_url=trigger.api_base_url, gemini_api_conn_id=trigger.gemini_api_conn_id)
    return trigger.make_backend(hook)


class BaseJobTrigger(BaseTrigger):
    """Waits for one remote job. Subclasses name the backend (:meth:`make_backend`) and whether to read loss.

    :param job_name: the job to poll and, if asked, cancel (Vertex: the job's resource name; Gemini API: the
        tuning operation).
    :param project_id: the Google Cloud project.
    :param location: the Vertex AI region.
    :param gcp_conn_id: the Google Cloud connection (credentials are looked up again in the triggerer).
    :param impersonation_chain: a service account (or chain) to impersonate.
    :param api_base_url: another host for every call (the emulator); None = Google.
    :param gemini_api_conn_id: a connection holding a Gemini API key.
    :param poll: ``core.polling.PollPolicy`` fields (how often to poll).
    :param error_budget_seconds: how long polling may keep failing transiently before the trigger gives up (the
        job is never cancelled for it).
    :param deadline: epoch seconds; at the deadline the wait ends (``timeout`` event). With ``timeout_seconds``,
        only for a job that reports no sub-state (Gemini API, batch jobs).
    :param cancel_on_kill: cancel the job when a user kills, clears or marks the deferred task.
    :param cancel_on_timeout: cancel the job at the deadline or the queue limit.
    :param timeout_seconds: the job timeout, counted from the first ``TUNING_JOB_STATE_TUNING`` observation (Vertex
        tuning jobs report sub-states); None = the absolute ``deadline`` only (what a trigger serialized before
        this argument existed gets).
    :param max_queue_seconds: the most time the job may spend in ``WAITING_FOR_QUOTA`` / ``WAITING_FOR_CAPACITY``
        (summed): past it the job is cancelled (if ``cancel_on_timeout``) and the event is ``queue_timeout``;
        None = no limit.

    Every event carries ``substates``, the job's sub-state timeline ``[{"state", "since", "seconds"}]`` (empty for
    a job without sub-states).
    """

    #: Where the trigger classes are importable from, for ``serialize`` (stable across internal moves).
    public_module = "gemini_tuning.triggers"

    #: Read a loss curve the service keeps apart from the job (tuning jobs); a class attribute, not serialized.
    read_loss = False

    def __init__(self, *, job_name: str, project_id: str | None = None, location: str = "us-central1",
                 gcp_conn_id: str = "google_cloud_default", impersonation_chain=None, api_base_url: str | None = None,
                 gemini_api_conn_id: str | None = None, poll: dict | None = None,
                 error_budget_seconds: float = 1800.0, deadline: float | None = None, cancel_on_kill: bool = True,
                 cancel_on_timeout: bool = True, timeout_seconds: float | None = None,
                 max_queue_seconds: float | None = None):
        super().__init__()
        self.job_name = job_name
        self.project_id = project_id
        self.location = location
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.api_base_url = api_base_url
        self.gemini_api_conn_id = gemini_api_conn_id
        self.poll = dict(poll or PollPolicy().to_dict())
        self.error_budget_seconds = error_budget_seconds
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self.timeout_seconds = timeout_seconds
        self.max_queue_seconds = max_queue_seconds

    # ------------------------------------------------------------------------------------------- subclass hooks
    def make_backend(self, hook):
        """The backend this trigger polls, from the hook.

        :param hook: a :class:`~gemini_tuning.hooks.GeminiTuningHook` for this trigger's connection.
        """
        raise NotImplementedError

    def kwargs(self) -> dict[str, Any]:
        return {"job_name": self.job_name, "project_id": self.project_id, "location": self.location,
                "gcp_conn_id": self.gcp_conn_id, "impersonation_chain": self.impersonation_chain,
                "api_base_url": self.api_base_url, "gemini_api_conn_id": self.gemini_api_conn_id,
                "poll": self.poll, "error_budget_seconds": self.error_budget_seconds, "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill, "cancel_on_timeout": self.cancel_on_timeout,
                "timeout_seconds": self.timeout_seconds, "max_queue_seconds": self.max_queue_seconds}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{self.public_module}.{type(self).__qualname__}", self.kwargs()

    # ------------------------------------------------------------------------------------------- the loop
    def _cache_key(self) -> tuple:
        k = self.kwargs()
        return (type(self).__qualname__, k.get("backend"), self.project_id, self.location, self.gcp_conn_id,
                str(self.impersonation_chain), self.api_base_url, self.gemini_api_conn_id)

    async def _client(self):
        """The loop's shared backend for this configuration. The build is cached as a task, so triggers that start
        together await one build instead of racing to make one each."""
        key = self._cache_key()
        backends = _loop_state()["backends"]
        if key not in backends:
            backends[key] = asyncio.ensure_future(sync_to_async(build_backend)(self))
        try:
            return await asyncio.shield(backends[key])
        except Exception:
            if backends.get(key) is not None and backends[key].done():
                backends.pop(key, None)          # a failed build is retried by the next trigger
            raise

    @contextlib.asynccontextmanager
    async def _lease(self):
        """Use of this loop's shared backend for the duration of the ``async with`` (see "Backend lifetime")."""
        state = _loop_state()
        state["users"] += 1
        try:
            yield self._client
        finally:
            close = asyncio.ensure_future(self._release(state))
            _KILLS.add(close)
            close.add_done_callback(_KILLS.discard)
            await asyncio.shield(close)

    async def run(self):
        # The lease is given back *before* the event leaves: the trigger is done, and a caller may never resume
        # this generator (dag.test() takes one event and drops it; its loop then cancels the finalizer, which
        # would leave the HTTP sessions unclosed).
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict:
        async with self._lease() as client:
            try:
                backend = await client()
            except Exception as exc:  # noqa: BLE001 - bad connection etc.: report, never cancel
                return {"status": "error", "job_name": self.job_name,
                        "message": f"could not build the client for {self.job_name}: {exc!r}", "substates": []}
            wait = JobWait(self.job_name, self.log, poll=self.poll, deadline=self.deadline,
                           error_budget_seconds=self.error_budget_seconds, cancel_on_timeout=self.cancel_on_timeout,
                           read_loss=self.read_loss, timeout_seconds=self.timeout_seconds,
                           max_queue_seconds=self.max_queue_seconds)
            outcome = await wait.arun(backend, sleep=lambda seconds: _sleep(seconds), now=lambda: _now())
            return outcome.event()

    @staticmethod
    async def _release(state: dict) -> None:
        """One lease fewer in this loop; the last one closes the loop's shared backends."""
        state["users"] -= 1
        if state["users"] == 0:
            builds, state["backends"] = list(state["backends"].values()), {}
            for build in builds:
                try:
                    await (await build).aclose()
                except Exception as exc:  # noqa: BLE001
                    log.debug("closing a backend failed: %s", exc)

    # ------------------------------------------------------------------------------------------- user kill
    async def on_kill(self) -> None:
        """A user marked, cleared or killed the deferred task: cancel the job (if ``cancel_on_kill``).

        Guard for apache/airflow #73454 (a trigger that moves to another triggerer is cancelled with the same
        "user action" message): if the task instance is still ``deferred``, this is a handover, and a live
        multi-hour job must not be cancelled. If its state cannot be read, the job is left running.

        The work runs shielded: in 3.3.2 the triggerer re-sends the cancellation on every loop while the trigger
        has not exited, which interrupts an ``on_kill`` still awaiting I/O (and the runner swallows that silently).
        """
        if not self.cancel_on_kill:
            return
        self.log.info("on_kill: checking whether %s must be cancelled", self.job_name)
        work = asyncio.ensure_future(self._kill())
        _KILLS.add(work)
        work.add_done_callback(_KILLS.discard)
        await asyncio.shield(work)

    async def _task_state(self) -> str | None:
        """The task instance's state as the API server has it ("unknown" without a task instance); None when it
        cannot be read."""
        ti = self.task_instance
        if ti is None:
            return "unknown"
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id],
                map_index=ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None)
        except Exception as exc:  # noqa: BLE001
            self.log.error("on_kill: cannot read the task state (%s); leaving %s running", exc, self.job_name)
            return None
        return str(((states or {}).get(ti.run_id) or {}).get(ti.task_id, "none"))

    async def _kill(self) -> None:
        state = await self._task_state()
        if state is None:
            return
        if state.lower().endswith("deferred"):
            self.log.warning("on_kill fired while the task is still deferred (triggerer handover, #73454): "
                             "%s is left running", self.job_name)
            return
        async with self._lease() as client:
            try:
                await (await client()).acancel(self.job_name)
                self.log.warning("task %s by the user: cancelled %s", state, self.job_name)
            except Exception as exc:  # noqa: BLE001
                self.log.error("cancelling %s failed: %s", self.job_name, exc)
