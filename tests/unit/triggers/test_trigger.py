"""TuningJobTrigger as a unit: scripted statuses and errors, a fake clock; no network."""

from __future__ import annotations

import dataclasses

import pytest

from gemini_tuning.backends.errors import TuningApiError
from gemini_tuning.core.states import JobStatus, LossPoint
from gemini_tuning.triggers import TuningJobTrigger
from gemini_tuning.triggers import base_job as triggers

pytestmark = pytest.mark.fast


class Script:
    """A backend whose aget answers from a script of statuses/exceptions."""

    kind = "gemini_api"

    def __init__(self, *steps):
        self.steps, self.calls, self.cancelled = list(steps), 0, []

    async def aget(self, name):
        self.calls += 1
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        return step

    async def acancel(self, name):
        self.cancelled.append(name)

    async def aclose(self):
        self.closed = getattr(self, "closed", 0) + 1


def s(state, pct=None, loss=None):
    hist = (LossPoint(1, 1, loss),) if loss is not None else ()
    return JobStatus(backend="gemini_api", name="tunedModels/m", state=state, progress_percent=pct,
                     loss_history=hist, error_message="boom" if state == "JOB_STATE_FAILED" else None)


@pytest.fixture
def clock(monkeypatch):
    t = {"now": 1000.0, "sleeps": []}

    async def sleep(d):
        t["sleeps"].append(d)
        t["now"] += d

    monkeypatch.setattr(triggers, "_sleep", sleep)
    monkeypatch.setattr(triggers, "_now", lambda: t["now"])
    import weakref

    monkeypatch.setattr(triggers, "_LOOPS", weakref.WeakKeyDictionary())
    return t


def use(monkeypatch, backend):
    monkeypatch.setattr(triggers, "build_backend", lambda *a, **k: backend)


def trig(**kw):
    return TuningJobTrigger(backend="gemini_api", job_name="tunedModels/m/operations/o", **kw)


async def first_event(t):
    gen = t.run()
    ev = await gen.__anext__()
    await gen.aclose()
    return ev.payload


def test_serialize_round_trips_through_airflow_serde():
    from airflow.sdk.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    t = trig(deadline=123.0, poll={"initial_seconds": 1.0}, impersonation_chain=["sa@p.iam.gserviceaccount.com"])
    path, kwargs = t.serialize()
    assert path == "gemini_tuning.triggers.TuningJobTrigger"
    again = import_string(path)(**deserialize(serialize(kwargs)))
    assert again.serialize() == (path, kwargs)
    assert not any("key" in k.lower() and "conn" not in k.lower() for k in kwargs)   # no secret fields


@pytest.mark.asyncio
@pytest.mark.parametrize("state, status", [("JOB_STATE_SUCCEEDED", "success"), ("JOB_STATE_FAILED", "failed"),
                                           ("JOB_STATE_CANCELLED", "failed"), ("JOB_STATE_EXPIRED", "failed")])
async def test_terminal_states(monkeypatch, clock, state, status):
    b = Script(s("JOB_STATE_PENDING"), s("JOB_STATE_RUNNING", 50.0, 0.7), s(state, 100.0, 0.2))
    use(monkeypatch, b)
    ev = await first_event(trig())
    assert ev["status"] == status and ev["job"]["state"] == state and b.calls == 3
    assert b.closed == 1        # the loop's shared client is closed when its last trigger ends
    assert ev["job"]["latest_loss"] == 0.2
    assert not b.cancelled


@pytest.mark.asyncio
async def test_paused_and_queued_are_not_terminal(monkeypatch, clock):
    b = Script(s("JOB_STATE_QUEUED"), s("JOB_STATE_PAUSED"), s("JOB_STATE_SUCCEEDED"))
    use(monkeypatch, b)
    assert (await first_event(trig()))["status"] == "success" and b.calls == 3


@pytest.mark.asyncio
async def test_transient_errors_are_retried_with_retry_after(monkeypatch, clock):
    b = Script(TuningApiError(429, "slow down", retry_after=7.0), ConnectionResetError("reset"),
               TuningApiError(503, "unavailable"), s("JOB_STATE_SUCCEEDED"))
    use(monkeypatch, b)
    ev = await first_event(trig())
    assert ev["status"] == "success" and b.calls == 4
    assert clock["sleeps"][0] == 7.0


@pytest.mark.asyncio
async def test_gives_up_after_error_budget_without_cancelling(monkeypatch, clock):
    b = Script(TuningApiError(503, "down"))
    use(monkeypatch, b)
    ev = await first_event(trig(error_budget_seconds=120))
    assert ev["status"] == "error" and "NOT cancelled" in ev["message"] and not b.cancelled
    assert 120 < sum(clock["sleeps"]) < 400


@pytest.mark.asyncio
async def test_non_transient_error_ends_at_once_without_cancelling(monkeypatch, clock):
    b = Script(TuningApiError(403, "permission denied"))
    use(monkeypatch, b)
    ev = await first_event(trig())
    assert ev["status"] == "error" and "permission denied" in ev["message"] and b.calls == 1 and not b.cancelled


@pytest.mark.asyncio
@pytest.mark.parametrize("cancel", [True, False])
async def test_deadline_cancels_only_if_asked(monkeypatch, clock, cancel):
    b = Script(s("JOB_STATE_RUNNING"))
    use(monkeypatch, b)
    ev = await first_event(trig(deadline=clock["now"] + 100, cancel_on_timeout=cancel))
    assert ev["status"] == "timeout" and ev["cancelled"] is cancel
    assert b.cancelled == (["tunedModels/m/operations/o"] if cancel else [])
    assert clock["now"] == pytest.approx(1100.0)      # never slept past the deadline


@pytest.mark.asyncio
async def test_logs_progress_and_loss_each_poll(monkeypatch, clock, capsys):
    b = Script(s("JOB_STATE_RUNNING", 40.0, 0.9), s("JOB_STATE_SUCCEEDED", 100.0, 0.1))
    use(monkeypatch, b)
    await first_event(trig())
    text = capsys.readouterr().out   # Airflow's structlog writes to stdout
    assert "40.0%" in text and "loss 0.9000" in text and "loss 0.1000" in text


class FakeTI:
    dag_id, task_id, run_id, map_index = "d", "tune", "r1", -1


@pytest.mark.asyncio
@pytest.mark.parametrize("ti_state, cancels", [("deferred", False), ("failed", True), ("success", True),
                                               (None, True), ("raise", False)])
async def test_on_kill_guards_against_triggerer_handover(monkeypatch, clock, ti_state, cancels):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def states(**kw):
        if ti_state == "raise":
            raise RuntimeError("no supervisor")
        return {"r1": {"tune": ti_state}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(states))
    b = Script(s("JOB_STATE_RUNNING"))
    use(monkeypatch, b)
    t = trig()
    t.task_instance = FakeTI()
    await t.on_kill()
    assert bool(b.cancelled) is cancels


def _kinds():
    from gemini_tuning.triggers import BatchPredictionJobTrigger

    conn = {"project_id": "p", "location": "us-central1"}
    return {
        "tuning: vertex": lambda: TuningJobTrigger(backend="vertex", job_name="projects/p/locations/us-central1/"
                                                                           "tuningJobs/1", **conn),
        "tuning: gemini_api": lambda: TuningJobTrigger(backend="gemini_api",
                                                       job_name="tunedModels/m/operations/o"),
        "batch evaluation": lambda: BatchPredictionJobTrigger(job_name="projects/p/locations/us-central1/"
                                                                       "batchPredictionJobs/7", **conn),
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", list(_kinds()))
@pytest.mark.parametrize("ti_state, cancels", [("deferred", False), ("failed", True), ("raise", False)])
async def test_every_trigger_kind_the_pipeline_defers_to_is_handover_safe(monkeypatch, clock, kind, ti_state,
                                                                          cancels):
    """#73454 for each kind of deferred wait of the pipeline (tuning on both backends, batch evaluation): the trigger
    as the new triggerer rebuilds it from ``serialize()``; a kill while the task is still deferred (a handover)
    leaves the job running, a real user action cancels it."""
    import importlib

    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def states(**kw):
        if ti_state == "raise":
            raise RuntimeError("no supervisor")
        return {"r1": {"tune": ti_state}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(states))
    classpath, kwargs = _kinds()[kind]().serialize()
    module, name = classpath.rsplit(".", 1)
    t = getattr(importlib.import_module(module), name)(**kwargs)
    assert type(t).on_kill is triggers.BaseJobTrigger.on_kill        # no kind overrides the guard
    b = Script(s("JOB_STATE_RUNNING"))
    use(monkeypatch, b)
    t.task_instance = FakeTI()
    await t.on_kill()
    assert b.cancelled == ([kwargs["job_name"]] if cancels else [])


@pytest.mark.asyncio
async def test_on_kill_respects_cancel_on_kill_false(monkeypatch, clock):
    b = Script(s("JOB_STATE_RUNNING"))
    use(monkeypatch, b)
    await trig(cancel_on_kill=False).on_kill()
    assert not b.cancelled


def test_summary_thins_loss_history_but_keeps_last():
    st = JobStatus(backend="vertex", name="j", state="JOB_STATE_SUCCEEDED",
                   loss_history=tuple(LossPoint(i, 1, 1.0 / i) for i in range(1, 1001)))
    d = st.summary(max_loss_points=100)
    assert len(d["loss_history"]) <= 101 and d["loss_history"][-1][0] == 1000
    assert JobStatus.from_summary(d).loss_history[-1].step == 1000
    assert dataclasses.replace(st).latest_loss == pytest.approx(0.001)


@pytest.mark.asyncio
async def test_on_kill_survives_being_cancelled_again_midway(monkeypatch, clock):
    """Airflow 3.3.2 re-sends the cancellation while on_kill awaits I/O; the cancel must still go out."""
    import asyncio
    import time as _time

    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def slow_states(**kw):
        _time.sleep(0.3)
        return {"r1": {"tune": "failed"}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(slow_states))
    b = Script(s("JOB_STATE_RUNNING"))
    use(monkeypatch, b)
    t = trig()
    t.task_instance = FakeTI()
    killer = asyncio.ensure_future(t.on_kill())
    await asyncio.sleep(0.05)
    killer.cancel()                      # the triggerer cancels again while on_kill waits
    with pytest.raises(asyncio.CancelledError):
        await killer
    for _ in range(100):
        if b.cancelled:
            break
        await asyncio.sleep(0.02)
    assert b.cancelled == ["tunedModels/m/operations/o"]


@pytest.mark.asyncio
async def test_triggers_starting_together_share_one_backend_build(monkeypatch, clock):
    import asyncio
    import time as _time

    builds = []
    b = Script(s("JOB_STATE_SUCCEEDED"))

    def build(*a, **k):
        builds.append(1)
        _time.sleep(0.1)              # a slow build (connection lookup, SDK import) in the worker thread
        return b

    monkeypatch.setattr(triggers, "build_backend", build)
    events = await asyncio.gather(*(first_event(trig()) for _ in range(20)))
    assert len(builds) == 1 and all(e["status"] == "success" for e in events)
    assert b.closed == 1


@pytest.mark.asyncio
async def test_backends_are_closed_before_the_event_leaves(monkeypatch, clock):
    """dag.test() takes the first event and drops the generator without closing it: the sessions must be closed
    already (else 'Unclosed client session' once its loop ends)."""
    b = Script(s("JOB_STATE_SUCCEEDED"))
    use(monkeypatch, b)
    ev = await trig().run().__anext__()          # no aclose() of the generator afterwards
    assert ev.payload["status"] == "success"
    assert getattr(b, "closed", 0) == 1


def test_the_serialized_kwargs_are_exactly_the_constructor_arguments():
    """0.1.0 is the current version: no older serialized trigger to stay compatible with, so no shim arguments
    (``read_metrics`` is gone: whether loss is read is the trigger kind's, not a serialized flag)."""
    from airflow.sdk.module_loading import import_string

    from gemini_tuning.triggers import BatchPredictionJobTrigger

    path, kwargs = trig(project_id="p").serialize()
    assert "read_metrics" not in kwargs
    assert import_string(path)(**kwargs).serialize() == (path, kwargs)
    with pytest.raises(TypeError, match="read_metrics"):
        import_string(path)(**kwargs, read_metrics=False)
    assert TuningJobTrigger.read_loss is True and BatchPredictionJobTrigger.read_loss is False


class Built:
    """``build_backend`` that makes a new scripted backend each time and remembers them all."""

    def __init__(self, *steps):
        self.steps, self.backends = steps, []

    def __call__(self, *a, **k):
        self.backends.append(Script(*self.steps))
        return self.backends[-1]


def _states(monkeypatch, state="failed"):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(lambda **kw: {"r1": {"tune": state}}))


@pytest.mark.asyncio
async def test_on_kill_alone_closes_the_backend_it_built(monkeypatch, clock):
    """The triggerer calls on_kill after run() has ended: the backend on_kill needs is built for it and closed."""
    _states(monkeypatch)
    built = Built(s("JOB_STATE_RUNNING"))
    monkeypatch.setattr(triggers, "build_backend", built)
    t = trig()
    t.task_instance = FakeTI()
    await t.on_kill()
    assert len(built.backends) == 1 and built.backends[0].cancelled == ["tunedModels/m/operations/o"]
    assert getattr(built.backends[0], "closed", 0) == 1


@pytest.mark.asyncio
async def test_a_user_kill_cancels_run_then_on_kill_and_every_backend_built_is_closed_once(monkeypatch, clock):
    """The triggerer's order on a user action: run() is cancelled (its lease ends, closing the loop's backend), then
    on_kill runs. Before: on_kill built a second backend that nothing ever closed."""
    import asyncio

    _states(monkeypatch)
    built = Built(s("JOB_STATE_RUNNING"))
    monkeypatch.setattr(triggers, "build_backend", built)
    never = asyncio.Event()

    async def blocked(d):
        await never.wait()

    monkeypatch.setattr(triggers, "_sleep", blocked)
    t = trig()
    t.task_instance = FakeTI()
    gen = t.run()
    running = asyncio.ensure_future(gen.__anext__())
    for _ in range(50):
        await asyncio.sleep(0.01)
        if built.backends and built.backends[0].calls:
            break
    running.cancel("user action")
    with pytest.raises(asyncio.CancelledError):
        await running
    await t.on_kill()
    assert [b.cancelled for b in built.backends][-1] == ["tunedModels/m/operations/o"]
    assert [getattr(b, "closed", 0) for b in built.backends] == [1] * len(built.backends)
    assert not triggers._loop_state()["backends"] and triggers._loop_state()["users"] == 0
