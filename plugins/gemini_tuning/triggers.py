"""The deferred wait: polls a tuning job from the triggerer, no worker slot held.

Only polls; never creates. Logs state, progress and latest loss on every poll. Transient errors (429, 5xx,
resets, timeouts) are retried with backoff inside a bounded budget; giving up yields an ``error`` event and never
cancels the job. The job is cancelled only on a user kill (``on_kill``) or at the trigger's own deadline, each if
enabled. Serializes no secret: credentials are looked up again in the triggerer from the connection id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from asgiref.sync import sync_to_async

from airflow.triggers.base import BaseTrigger, TriggerEvent

from .backends.errors import is_transient, retry_after_of
from .core.polling import PollPolicy, PollState
from .core.states import JobStatus

log = logging.getLogger(__name__)

_sleep = asyncio.sleep   # indirections so tests can drive the clock
_now = time.time
# One backend (client, HTTP session) per config and event loop, shared by the triggers running in that loop, and
# closed when the loop's last trigger ends (a triggerer has one long-lived loop; dag.test() one loop per trigger).
_LOOPS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


_KILLS: set[asyncio.Future] = set()   # on_kill work in flight (kept referenced until done)


def _loop_state() -> dict:
    return _LOOPS.setdefault(asyncio.get_running_loop(), {"backends": {}, "users": 0})


def build_backend(kind: str, project_id: str | None, location: str, gcp_conn_id: str,
                  impersonation_chain, api_base_url: str | None, gemini_api_conn_id: str | None):
    from .hooks import GeminiTuningHook

    hook = GeminiTuningHook(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain,
                            api_base_url=api_base_url, gemini_api_conn_id=gemini_api_conn_id)
    backend = hook.backend(kind, project_id=project_id, location=location)
    getattr(backend, "client", None)   # build the SDK client here, in the worker thread, not on the event loop
    return backend, hook


class TuningJobTrigger(BaseTrigger):
    def __init__(self, *, backend: str, job_name: str, project_id: str | None = None, location: str = "us-central1",
                 gcp_conn_id: str = "google_cloud_default", impersonation_chain=None, api_base_url: str | None = None,
                 gemini_api_conn_id: str | None = None, poll: dict | None = None,
                 error_budget_seconds: float = 1800.0, deadline: float | None = None, cancel_on_kill: bool = True,
                 cancel_on_timeout: bool = True, read_metrics: bool = True):
        super().__init__()
        self.backend, self.job_name, self.project_id, self.location = backend, job_name, project_id, location
        self.gcp_conn_id, self.impersonation_chain = gcp_conn_id, impersonation_chain
        self.api_base_url, self.gemini_api_conn_id = api_base_url, gemini_api_conn_id
        self.poll = dict(poll or PollPolicy().to_dict())
        self.error_budget_seconds = error_budget_seconds
        self.deadline = deadline
        self.cancel_on_kill, self.cancel_on_timeout, self.read_metrics = cancel_on_kill, cancel_on_timeout, read_metrics

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "backend": self.backend, "job_name": self.job_name, "project_id": self.project_id,
            "location": self.location, "gcp_conn_id": self.gcp_conn_id,
            "impersonation_chain": self.impersonation_chain, "api_base_url": self.api_base_url,
            "gemini_api_conn_id": self.gemini_api_conn_id, "poll": self.poll,
            "error_budget_seconds": self.error_budget_seconds, "deadline": self.deadline,
            "cancel_on_kill": self.cancel_on_kill, "cancel_on_timeout": self.cancel_on_timeout,
            "read_metrics": self.read_metrics})

    async def _client(self):
        """The loop's shared (backend, hook) for this config. The build is cached as a task, so triggers that start
        together await one build instead of racing to make one each; it runs in a thread (connection lookup, the
        google-genai import and client construction stay off the event loop)."""
        key = (self.backend, self.project_id, self.location, self.gcp_conn_id, str(self.impersonation_chain),
               self.api_base_url, self.gemini_api_conn_id)
        backends = _loop_state()["backends"]
        if key not in backends:
            backends[key] = asyncio.ensure_future(sync_to_async(build_backend)(
                self.backend, self.project_id, self.location, self.gcp_conn_id, self.impersonation_chain,
                self.api_base_url, self.gemini_api_conn_id))
        try:
            return await asyncio.shield(backends[key])
        except Exception:
            if backends.get(key) is not None and backends[key].done():
                backends.pop(key, None)          # a failed build is retried by the next trigger
            raise

    async def run(self):
        state = _loop_state()
        state["users"] += 1
        try:
            async for event in self._poll():
                yield event
        finally:
            state["users"] -= 1
            if state["users"] == 0:
                builds, state["backends"] = list(state["backends"].values()), {}
                for build in builds:
                    try:
                        backend, _ = await build
                        await backend.aclose()
                    except Exception as exc:  # noqa: BLE001
                        log.debug("closing %r failed: %s", backend, exc)

    async def _poll(self):
        policy = PollPolicy(**self.poll)
        state = PollState()
        failing_since: float | None = None
        metrics = _MetricsReader() if self.read_metrics and self.backend == "vertex" else None
        try:
            backend, hook = await self._client()
        except Exception as exc:  # noqa: BLE001 - bad connection etc.: report, never cancel
            yield TriggerEvent({"status": "error", "job_name": self.job_name,
                                "message": f"could not build the {self.backend} client: {exc!r}"})
            return
        while True:
            now = _now()
            if self.deadline is not None and now >= self.deadline:
                yield TriggerEvent(await self._on_deadline(backend))
                return
            try:
                status = await backend.aget(self.job_name)
                failing_since = None
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    yield TriggerEvent({"status": "error", "job_name": self.job_name,
                                        "message": f"polling {self.job_name} failed: {exc}"})
                    return
                failing_since = failing_since or now
                if now - failing_since > self.error_budget_seconds:
                    yield TriggerEvent({"status": "error", "job_name": self.job_name, "message":
                                        f"polling {self.job_name} kept failing for {now - failing_since:.0f}s "
                                        f"(budget {self.error_budget_seconds:.0f}s); last error: {exc}. "
                                        "The job was NOT cancelled."})
                    return
                delay = min(policy.max_seconds, retry_after_of(exc) or state.next_interval(policy, now, None))
                self.log.warning("transient error polling %s: %s; retrying in %.0fs", self.job_name, exc, delay)
                await _sleep(delay)
                continue
            if metrics is not None:
                status = await metrics.attach(hook, status)
            self.log.info("%s: %s", self.job_name, status.describe())
            if status.terminal:
                yield TriggerEvent({"status": "success" if status.succeeded else "failed",
                                    "job_name": self.job_name, "job": status.summary()})
                return
            delay = state.next_interval(policy, _now(), status.progress_percent)
            if self.deadline is not None:
                delay = max(0.0, min(delay, self.deadline - _now()))
            await _sleep(delay)

    async def _on_deadline(self, backend) -> dict:
        cancelled = False
        if self.cancel_on_timeout:
            try:
                await backend.acancel(self.job_name)
                cancelled = True
                self.log.warning("deadline reached: cancelled %s", self.job_name)
            except Exception as exc:  # noqa: BLE001
                self.log.error("deadline reached; cancelling %s failed: %s", self.job_name, exc)
        return {"status": "timeout", "job_name": self.job_name, "cancelled": cancelled,
                "message": f"{self.job_name} did not finish before the deadline"
                           + ("; it was cancelled" if cancelled else "; it was left running")}

    async def on_kill(self) -> None:
        """A user marked, cleared or killed the deferred task: cancel the job (if ``cancel_on_kill``).

        Guard for apache/airflow #73454 (present in 3.3.2: a trigger that moves to another triggerer is cancelled
        with the same "user action" message): if the task instance is still ``deferred``, this is a handover,
        and a live multi-hour job must not be cancelled. If its state cannot be read, the job is left running.

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

    async def _kill(self) -> None:
        ti = self.task_instance
        state = "unknown"
        if ti is not None:
            try:
                from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

                states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                    dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id],
                    map_index=ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None)
                state = str(((states or {}).get(ti.run_id) or {}).get(ti.task_id, "none"))
            except Exception as exc:  # noqa: BLE001
                self.log.error("on_kill: cannot read the task state (%s); leaving %s running", exc, self.job_name)
                return
        if state.lower().endswith("deferred"):
            self.log.warning("on_kill fired while the task is still deferred (triggerer handover, #73454): "
                             "%s is left running", self.job_name)
            return
        backend, _ = await self._client()
        try:
            await backend.acancel(self.job_name)
            self.log.warning("task %s by the user: cancelled %s", state, self.job_name)
        except Exception as exc:  # noqa: BLE001
            self.log.error("cancelling %s failed: %s", self.job_name, exc)


class _MetricsReader:
    """Vertex: the loss curve lives in the job's metrics file (``gcsMetricsUri``). Read when progress moved, at most
    once per ``min_interval`` seconds, and always at the end."""

    def __init__(self, min_interval: float = 120.0):
        self.seen_steps: int | None = None
        self.points: tuple = ()
        self.min_interval, self.last_read = min_interval, float("-inf")

    async def attach(self, hook, status: JobStatus) -> JobStatus:
        import dataclasses

        due = _now() - self.last_read >= self.min_interval
        if status.metrics_uri and ((due and status.completed_steps != self.seen_steps) or status.terminal):
            self.seen_steps, self.last_read = status.completed_steps, _now()
            try:
                self.points = await asyncio.to_thread(read_vertex_metrics, hook, status.metrics_uri)
            except Exception as exc:  # noqa: BLE001 - loss is reporting, never control
                log.debug("metrics read failed: %s", exc)
        return dataclasses.replace(status, loss_history=self.points) if self.points else status


def read_vertex_metrics(hook, metrics_uri: str):
    from .backends import gcs
    from .backends.vertex import parse_metrics

    client = hook.storage()
    bucket, prefix = gcs.parse_gs_uri(metrics_uri)
    texts = [b.download_as_text() for b in client.list_blobs(bucket, prefix=prefix)
             if b.name.endswith((".jsonl", ".json"))]
    return parse_metrics("\n".join(texts))
