"""Queue time and sub-states (Vertex ``tuningJobState``): the job timeout counts from the first TUNING observation,
time waiting for quota or capacity is bounded by its own limit (``max_queue``), and the sub-state timeline reaches
the event and the XCom. A fake clock throughout; no network."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from gemini_tuning.core.states import JobStatus
from gemini_tuning.core.wait import SubStateClock, WaitMachine
from gemini_tuning.services.tuning.wait import JobWait

pytestmark = pytest.mark.fast

JOB = "projects/p/locations/us-central1/tuningJobs/1"
T0 = 1_000_000.0
POLL = {"initial_seconds": 60, "min_seconds": 60, "max_seconds": 60, "fallback_max_seconds": 60, "jitter": 0}
QUOTA, CAPACITY = "TUNING_JOB_STATE_WAITING_FOR_QUOTA", "TUNING_JOB_STATE_WAITING_FOR_CAPACITY"
DATASET, TUNING = "TUNING_JOB_STATE_PROCESSING_DATASET", "TUNING_JOB_STATE_TUNING"


class Clock:
    def __init__(self):
        self.t, self.sleeps = T0, []

    def now(self):
        return self.t

    def sleep(self, d):
        self.sleeps.append(d)
        self.t += d

    async def asleep(self, d):
        self.sleep(d)


class Timed:
    """A Vertex-like backend whose job follows a timetable: ``[(seconds_from_T0, state, sub_state), ...]``."""

    def __init__(self, clock, plan, backend="vertex"):
        self.clock, self.plan, self.backend, self.calls = clock, plan, backend, []

    def get(self, name):
        self.calls.append("get")
        elapsed = self.clock.now() - T0
        state, sub = next((st, sub) for until, st, sub in self.plan if elapsed < until)
        return JobStatus(backend=self.backend, name=JOB, state=state, sub_state=sub,
                         create_time="2026-12-01T00:00:00+00:00")

    def cancel(self, name):
        self.calls.append("cancel")

    def console_url(self, name):
        return f"https://console/{name}"


class Log:
    def __init__(self):
        self.lines = []

    def info(self, msg, *args):
        self.lines.append(msg % args)

    warning = error = info


R, OK = "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"
# 30 min waiting for quota, 5 min validating the dataset, 15 min tuning, then done
QUEUED_30_MIN = [(1800, R, QUOTA), (2100, R, DATASET), (3000, R, TUNING), (float("inf"), OK, None)]


def wait(clock, plan, *, mode="sync", backend="vertex", **kw):
    b, log = Timed(clock, plan, backend), Log()
    kw.setdefault("deadline", T0 + 1200)                   # created + timeout: what the run computes
    kw.setdefault("timeout_seconds", 1200)
    w = JobWait(JOB, log, poll=POLL, **kw)
    if mode == "sync":
        out = w.run(b, sleep=clock.sleep, now=clock.now)
    else:
        class Async:
            async def aget(self, name):
                return b.get(name)

            async def acancel(self, name):
                return b.cancel(name)

        out = asyncio.run(w.arun(Async(), sleep=clock.asleep, now=clock.now))
    return out, b, log


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_time_queued_is_not_charged_to_the_tuning_timeout(mode):
    """30 min in WAITING_FOR_QUOTA under a 20 min tuning timeout: the job tunes 15 min and succeeds."""
    clock = Clock()
    out, b, _ = wait(clock, QUEUED_30_MIN, mode=mode)
    ev = out.event()
    assert ev["status"] == "success" and "cancel" not in b.calls
    assert [e["state"] for e in ev["substates"]] == [QUOTA, DATASET, TUNING]
    assert [e["seconds"] for e in ev["substates"]] == [1800, 300, 900]
    assert [e["since"] for e in ev["substates"]] == [T0, T0 + 1800, T0 + 2100]


def test_the_tuning_timeout_counts_from_the_first_tuning_observation():
    clock = Clock()
    plan = [(1800, R, QUOTA), (float("inf"), R, TUNING)]
    out, b, log = wait(clock, plan)
    ev = out.event()
    assert ev["status"] == "timeout" and ev["cancelled"] is True and b.calls[-1] == "cancel"
    assert clock.t == pytest.approx(T0 + 1800 + 1200)     # TUNING first seen at +1800, never slept past +3000
    assert ev["substates"][-1] == {"state": TUNING, "since": T0 + 1800, "seconds": 1200}
    assert "did not finish before the deadline; it was cancelled" in ev["message"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_queued_longer_than_max_queue_fails_and_cancels(mode):
    clock = Clock()
    out, b, log = wait(clock, QUEUED_30_MIN, mode=mode, max_queue_seconds=600)
    ev = out.event()
    assert out.kind == "queue_timeout" and ev["status"] == "queue_timeout"
    assert ev["cancelled"] is True and b.calls[-1] == "cancel"
    assert clock.t == pytest.approx(T0 + 600)              # no sleep past the limit
    assert "WAITING_FOR_QUOTA" in ev["message"] and "10m00s" in ev["message"] and "limit of 10m00s" in ev["message"]
    assert ev["message"].endswith("it was cancelled")
    assert ev["substates"] == [{"state": QUOTA, "since": T0, "seconds": 600}]
    assert any("queue limit reached: cancelled" in line for line in log.lines)


def test_queue_time_is_summed_over_quota_and_capacity():
    clock = Clock()
    plan = [(300, R, QUOTA), (600, R, DATASET), (float("inf"), R, CAPACITY)]
    out, b, _ = wait(clock, plan, max_queue_seconds=600, cancel_on_timeout=False)
    ev = out.event()
    assert ev["status"] == "queue_timeout" and ev["cancelled"] is False and "cancel" not in b.calls
    assert clock.t == pytest.approx(T0 + 900)              # 300 s quota + 300 s capacity; dataset not counted
    assert "WAITING_FOR_CAPACITY" in ev["message"] and ev["message"].endswith("it was left running")


def test_a_queue_within_the_limit_passes():
    clock = Clock()
    out, _, _ = wait(clock, QUEUED_30_MIN, max_queue_seconds=3600)
    assert out.event()["status"] == "success"


def test_each_sub_state_change_is_logged_once_with_the_previous_duration():
    clock = Clock()
    _, b, log = wait(clock, QUEUED_30_MIN)
    changes = [line for line in log.lines if "sub-state" in line]
    assert changes == [f"{JOB}: sub-state WAITING_FOR_QUOTA",
                       f"{JOB}: sub-state WAITING_FOR_QUOTA -> PROCESSING_DATASET after 30m00s in WAITING_FOR_QUOTA",
                       f"{JOB}: sub-state PROCESSING_DATASET -> TUNING after 5m00s in PROCESSING_DATASET"]
    assert b.calls.count("get") > 40                       # many polls, one line per change


def test_jobs_without_sub_states_keep_the_absolute_deadline():
    """Gemini API jobs (and a v1 GET without tuningJobState) report no sub-state: the create-time deadline."""
    clock = Clock()
    plan = [(float("inf"), R, None)]
    out, b, log = wait(clock, plan, backend="gemini_api", max_queue_seconds=60)
    ev = out.event()
    assert ev["status"] == "timeout" and clock.t == pytest.approx(T0 + 1200) and ev["substates"] == []
    assert not [line for line in log.lines if "sub-state" in line]


def test_without_timeout_seconds_the_deadline_is_absolute_as_before():
    """A trigger serialized by the previous version has only ``deadline``: it keeps its meaning."""
    clock = Clock()
    out, _, _ = wait(clock, QUEUED_30_MIN, timeout_seconds=None)
    assert out.event()["status"] == "timeout" and clock.t == pytest.approx(T0 + 1200)


def test_the_machine_alone():
    m = WaitMachine(JOB, deadline=T0 + 10, timeout_seconds=100, max_queue_seconds=50)
    assert m.due(T0 + 20) is None                          # nothing observed yet: poll first
    step = m.on_status(JobStatus("vertex", JOB, R, sub_state=QUOTA), T0 + 20)
    assert step.kind == "sleep" and step.delay <= 50 and step.note == "sub-state WAITING_FOR_QUOTA"
    assert m.due(T0 + 70).kind == "queue_timeout"
    c = SubStateClock()
    c.observe(QUOTA, 0)
    c.observe(TUNING, 10)
    c.observe(QUOTA, 20)
    assert c.queue_seconds(25) == 15 and c.tuning_since == 10


# ---------------------------------------------------------------------------------------------- trigger and operator
def test_the_trigger_serializes_the_new_arguments_and_loads_old_kwargs():
    from airflow.sdk.module_loading import import_string

    from gemini_tuning.triggers import TuningJobTrigger

    t = TuningJobTrigger(backend="vertex", job_name=JOB, deadline=T0, timeout_seconds=1200.0,
                         max_queue_seconds=600.0)
    path, kwargs = t.serialize()
    assert kwargs["timeout_seconds"] == 1200.0 and kwargs["max_queue_seconds"] == 600.0
    assert import_string(path)(**kwargs).serialize() == (path, kwargs)
    old = {k: v for k, v in kwargs.items() if k not in ("timeout_seconds", "max_queue_seconds")}
    again = import_string(path)(**old)                     # serialized by the previous version
    assert again.timeout_seconds is None and again.max_queue_seconds is None


@pytest.mark.asyncio
async def test_the_trigger_event_carries_the_timeline(monkeypatch):
    import weakref

    from gemini_tuning.triggers import TuningJobTrigger, base_job

    clock = Clock()
    b = Timed(clock, QUEUED_30_MIN)

    class Backend:
        async def aget(self, name):
            return b.get(name)

        async def acancel(self, name):
            return b.cancel(name)

        async def aclose(self):
            pass

    async def sleep(d):
        clock.sleep(d)

    monkeypatch.setattr(base_job, "_sleep", sleep)
    monkeypatch.setattr(base_job, "_now", clock.now)
    monkeypatch.setattr(base_job, "_LOOPS", weakref.WeakKeyDictionary())
    monkeypatch.setattr(base_job, "build_backend", lambda *a, **k: Backend())
    t = TuningJobTrigger(backend="vertex", job_name=JOB, poll=POLL, deadline=T0 + 1200, timeout_seconds=1200,
                         max_queue_seconds=600)
    gen = t.run()
    ev = (await gen.__anext__()).payload
    await gen.aclose()
    assert ev["status"] == "queue_timeout" and ev["substates"][0]["state"] == QUOTA and b.calls[-1] == "cancel"


class _Ti(SimpleNamespace):
    def xcom_push(self, key, value):
        self.pushed[key] = value


def operator(monkeypatch, **kw):
    from gemini_tuning.operators.tune import GeminiTuningOperator
    from gemini_tuning.services.tuning import run

    clock = Clock()
    backend = Timed(clock, QUEUED_30_MIN)
    monkeypatch.setattr(run.TuningRun, "start", lambda self, publish: run.Started(
        JobStatus("vertex", JOB, R, sub_state=QUOTA), "reattach", backend, deadline=T0 + 1200))
    op = GeminiTuningOperator(task_id="tune", base_model="gemini-2.5-flash", training_uri="gs://b/t.jsonl",
                              poll_policy=POLL, job_timeout=1200, **kw)
    op.__dict__["hook"] = SimpleNamespace(api_base_url="http://emulator.invalid")
    ctx = {"ti": _Ti(pushed={}, dag_id="d", task_id="tune", run_id="r", map_index=-1),
           "dag_run": SimpleNamespace(run_type="manual")}
    return op, ctx, clock


def test_max_queue_hours_is_templated_and_reaches_the_trigger(monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    op, ctx, _ = operator(monkeypatch, max_queue_hours="0.5", deferrable=True)
    assert "max_queue_hours" in op.template_fields
    monkeypatch.setattr(op, "trigger_connection", dict)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["max_queue_seconds"] == 1800.0 and kwargs["timeout_seconds"] == 1200.0


def test_no_max_queue_by_default(monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    op, ctx, _ = operator(monkeypatch, deferrable=True)
    monkeypatch.setattr(op, "trigger_connection", dict)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert deferred.value.trigger.serialize()[1]["max_queue_seconds"] is None


@pytest.mark.parametrize("bad", ["soon", "-1", 0])
def test_a_bad_max_queue_fails_before_anything_is_created(monkeypatch, bad):
    from airflow.sdk.exceptions import AirflowFailException

    op, ctx, _ = operator(monkeypatch, max_queue_hours=bad, deferrable=False)
    with pytest.raises(AirflowFailException, match="max_queue_hours"):
        op.execute(ctx)


def test_the_worker_path_returns_the_timeline_and_fails_on_the_queue_limit(monkeypatch):
    from airflow.sdk.exceptions import AirflowException

    from gemini_tuning.operators import tune

    op, ctx, clock = operator(monkeypatch, deferrable=False)
    monkeypatch.setattr(tune.JobWait, "run", lambda self, backend: _run(self, backend, clock))
    result = op.execute(ctx)
    assert result["state"] == OK and [e["state"] for e in result["substates"]] == [QUOTA, DATASET, TUNING]
    op, ctx, clock = operator(monkeypatch, deferrable=False, max_queue_hours=0.1)
    monkeypatch.setattr(tune.JobWait, "run", lambda self, backend: _run(self, backend, clock))
    with pytest.raises(AirflowException, match="WAITING_FOR_QUOTA.*max_queue limit of 6m00s; it was cancelled"):
        op.execute(ctx)


def _run(wait, backend, clock):
    async def asleep(d):
        clock.sleep(d)

    class Async:
        async def aget(self, name):
            return backend.get(name)

        async def acancel(self, name):
            return backend.cancel(name)

    return asyncio.run(wait.arun(Async(), sleep=asleep, now=clock.now))


def test_finish_event_maps_queue_timeout_to_a_failure():
    from airflow.sdk.exceptions import AirflowException

    from gemini_tuning.operators.tune import finish_event

    with pytest.raises(AirflowException, match="waited"):
        finish_event({"status": "queue_timeout", "message": "j waited 1h", "substates": []}, Log())
