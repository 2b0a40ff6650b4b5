"""The one wait loop (``services.tuning.wait.JobWait``): the worker path (sync) and the triggers (async) run the same
loop, and end the same way, for the same script of statuses and errors."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace

import pytest

from gemini_tuning.backends.errors import TuningApiError
from gemini_tuning.core.states import JobStatus, LossPoint
from gemini_tuning.services.tuning.wait import JobWait

pytestmark = pytest.mark.fast

JOB = "projects/p/locations/us-central1/tuningJobs/1"


def st(state, steps=None, pct=None):
    return JobStatus(backend="vertex", name=JOB, state=state, completed_steps=steps, progress_percent=pct,
                     metrics_uri="gs://b/metrics/", create_time="2026-01-01T00:00:00+00:00",
                     tuned_model="projects/p/locations/us-central1/models/9@1" if state.endswith("SUCCEEDED") else None)


class Both:
    """A backend with both faces, answering from one script; records every request in order."""

    kind = "vertex"
    project = "p"

    def __init__(self, *steps):
        self.steps, self.calls = list(steps), []

    def get(self, name):
        self.calls.append(("get", name))
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        return step

    def with_loss(self, status):
        self.calls.append(("with_loss", status.completed_steps))
        return dataclasses.replace(status, loss_history=(LossPoint(status.completed_steps or 0, 1, 0.5),))

    def cancel(self, name):
        self.calls.append(("cancel", name))

    async def aget(self, name):
        return self.get(name)

    async def awith_loss(self, status):
        return self.with_loss(status)

    async def acancel(self, name):
        return self.cancel(name)

    def console_url(self, name):
        return f"https://console/{name}"


class Clock:
    def __init__(self):
        self.t, self.sleeps = 1000.0, []

    def now(self):
        return self.t

    def sleep(self, d):
        self.sleeps.append(round(d, 6))
        self.t += d

    async def asleep(self, d):
        self.sleep(d)


class Log:
    def __init__(self):
        self.lines = []

    def info(self, msg, *args):
        self.lines.append(("info", msg % args))

    def warning(self, msg, *args):
        self.lines.append(("warning", msg % args))

    def error(self, msg, *args):
        self.lines.append(("error", msg % args))


POLL = {"initial_seconds": 10, "min_seconds": 15, "max_seconds": 300, "jitter": 0}
SCRIPTS = {
    "success with loss reads": (st("JOB_STATE_PENDING"), st("JOB_STATE_RUNNING", 3, 30.0),
                                st("JOB_STATE_RUNNING", 6, 60.0), st("JOB_STATE_SUCCEEDED", 9, 100.0)),
    "transient errors then failure": (TuningApiError(429, "slow", retry_after=7.0), ConnectionResetError("reset"),
                                      st("JOB_STATE_FAILED", 2)),
    "non-transient error": (TuningApiError(403, "denied"),),
    "deadline": (st("JOB_STATE_RUNNING", 1, 5.0),),
}


def both_ways(script, **kw):
    """(outcome, requests, sleeps, log) of the sync and of the async run of one script."""
    out = []
    for mode in ("sync", "async"):
        b, clock, log = Both(*script), Clock(), Log()
        wait = JobWait(JOB, log, poll=POLL, deadline=clock.t + 600, error_budget_seconds=120, **kw)
        if mode == "sync":
            outcome = wait.run(b, sleep=clock.sleep, now=clock.now)
        else:
            outcome = asyncio.run(wait.arun(b, sleep=clock.asleep, now=clock.now))
        out.append((outcome.event(), b.calls, clock.sleeps, log.lines))
    return out


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_worker_and_the_trigger_wait_identically(name):
    sync, async_ = both_ways(SCRIPTS[name])
    assert sync == async_


def test_what_the_loop_does_for_each_script():
    (ev, calls, sleeps, _), _ = both_ways(SCRIPTS["success with loss reads"])
    assert ev["status"] == "success" and ev["job"]["latest_loss"] == 0.5
    assert ("with_loss", 9) in calls                               # always at the end
    assert [c[1] for c in calls if c[0] == "with_loss"] == [3, 9]     # not before progress; the 2-minute throttle
    (ev, calls, sleeps, log), _ = both_ways(SCRIPTS["transient errors then failure"])
    assert ev["status"] == "failed" and sleeps[0] == 7.0 and any("transient error" in m for _, m in log)
    (ev, calls, _, _), _ = both_ways(SCRIPTS["non-transient error"])
    assert ev["status"] == "error" and "denied" in ev["message"] and calls == [("get", JOB)]
    (ev, calls, sleeps, log), _ = both_ways(SCRIPTS["deadline"])
    assert ev == {"status": "timeout", "job_name": JOB, "cancelled": True,
                  "message": f"{JOB} did not finish before the deadline; it was cancelled", "substates": []}
    assert calls[-1] == ("cancel", JOB) and sum(sleeps) == pytest.approx(600)
    (ev, calls, _, _), _ = both_ways(SCRIPTS["deadline"], cancel_on_timeout=False)
    assert ev["cancelled"] is False and ev["message"].endswith("it was left running") and ("cancel", JOB) not in calls


def test_a_failed_cancel_at_the_deadline_is_reported_not_raised():
    class NoCancel(Both):
        def cancel(self, name):
            raise TuningApiError(500, "cannot cancel")

    log = Log()
    out = JobWait(JOB, log, poll=POLL, deadline=0.0).run(NoCancel(st("JOB_STATE_RUNNING")), now=lambda: 1.0)
    assert out.event()["cancelled"] is False and "cancelling" in log.lines[-1][1]


def test_batch_jobs_read_no_loss():
    (ev, calls, _, _), _ = both_ways(SCRIPTS["success with loss reads"], read_loss=False)
    assert ev["status"] == "success" and not [c for c in calls if c[0] == "with_loss"]


# ---------------------------------------------------------------------------------------------- the operator
class _Ti(SimpleNamespace):
    def xcom_push(self, key, value):
        self.pushed[key] = value


FAST = {"initial_seconds": 0.001, "min_seconds": 0.001, "max_seconds": 0.001, "fallback_max_seconds": 0.001}


def worker_operator(monkeypatch, backend, **kw):
    """The tuning operator with the launch replaced (a job already running) and ``backend`` to wait with."""
    from gemini_tuning.operators.tune import GeminiTuningOperator
    from gemini_tuning.services.tuning import run

    deadline = kw.pop("deadline", 1e12)
    monkeypatch.setattr(run.TuningRun, "start", lambda self, publish: run.Started(
        st("JOB_STATE_RUNNING"), "reattach", backend, deadline=deadline))
    op = GeminiTuningOperator(task_id="tune", base_model="gemini-2.5-flash", training_uri="gs://b/t.jsonl",
                              deferrable=False, poll_policy=FAST, **kw)
    op.__dict__["hook"] = SimpleNamespace(api_base_url="http://emulator.invalid")
    ctx = {"ti": _Ti(pushed={}, dag_id="d", task_id="tune", run_id="r", map_index=-1),
           "dag_run": SimpleNamespace(run_type="manual")}
    return op, ctx


def test_the_worker_path_returns_what_the_deferred_path_returns(monkeypatch):
    from gemini_tuning.operators.tune import finish_event

    b = Both(*SCRIPTS["success with loss reads"])
    op, ctx = worker_operator(monkeypatch, b)
    result = op.execute(ctx)
    deferred, _ = both_ways(SCRIPTS["success with loss reads"])
    assert result == finish_event(deferred[0], op.log)
    assert result["state"] == "JOB_STATE_SUCCEEDED" and result["latest_loss"] == 0.5
    assert ctx["ti"].pushed["gemini_tuning_job"]["ref"] == JOB


def test_the_worker_path_fails_like_the_deferred_one_and_cancels_at_the_deadline(monkeypatch):
    from airflow.sdk.exceptions import AirflowException

    b = Both(st("JOB_STATE_RUNNING"))
    op, ctx = worker_operator(monkeypatch, b, deadline=0.0)
    with pytest.raises(AirflowException, match="did not finish before the deadline; it was cancelled"):
        op.execute(ctx)
    assert b.calls[-1] == ("cancel", JOB)
    b = Both(TuningApiError(403, "denied"))
    op, ctx = worker_operator(monkeypatch, b)
    with pytest.raises(AirflowException, match="denied.*was not cancelled; a retry of this task reattaches"):
        op.execute(ctx)
    assert ("cancel", JOB) not in b.calls
