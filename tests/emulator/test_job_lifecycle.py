"""emulator/jobs.py: the one job lifecycle of Vertex tuning jobs and Gemini API tuned models, on a fake clock.

The trainer is stubbed (training "finishes" when a test says so), so every transition is driven by hand: pending,
running (time-scaled steps), succeeded only once training has really finished, failed (bad data, an injected
failure), cancelled, and a restart that trains unfinished jobs again and leaves finished ones alone.
"""

from __future__ import annotations

import pytest

from emulator import learner
from emulator.app import EmulatorConfig
from emulator.faults import Faults
from emulator.jobs import JobLifecycle, Timeline, TrainingInputs
from emulator.store import Store

pytestmark = pytest.mark.fast

HP = learner.HyperParams(epochs=2, learning_rate=0.01, batch_size=4, adapter_rank=4, seed=1)


class FakeTrainer:
    def __init__(self):
        self.progress: dict[str, int] = {}
        self.started: list[tuple[str, TrainingInputs]] = []
        self.callbacks: dict[str, tuple] = {}

    def start(self, key, load, hp, on_data, on_done, *, init_artifact=None, checkpoints=False, validation=None):
        self.started.append((key, TrainingInputs(load, validation, init_artifact, checkpoints)))
        self.callbacks[key] = (on_data, on_done)


class FakeEmulator:
    def __init__(self, store: Store | None = None):
        self.config = EmulatorConfig(time_scale=1.0, pending_seconds=10.0, step_seconds=1.0)
        self.store = store or Store()
        self.faults = Faults()
        self.tickers: list = []
        self.startup_hooks: list = []
        self.t = 1000.0

    def now(self) -> float:
        return self.t


def lifecycle(emu: FakeEmulator, seen: list):
    def advance(name: str, obj: dict, tl: Timeline, now: float) -> bool:
        seen.append((name, tl.state, tl.completed_steps))
        if obj["resource"]["state"] == tl.state:
            return False
        obj["resource"]["state"] = tl.state
        return True

    lc = JobLifecycle(emu, "jobs", terminal={"SUCCEEDED", "FAILED", "CANCELLED"},
                      inputs=lambda name, e: TrainingInputs(load=list, checkpoints=e.get("ckpt", False)),
                      advance=advance)
    lc.trainer = FakeTrainer()
    return lc


def create(lc: JobLifecycle, emu: FakeEmulator, name: str = "jobs/1", display: str = "d") -> None:
    state = lc.new_state(hp=HP, display_name=display, now=emu.now())
    state["ckpt"] = True
    lc.create(name, {"state": "PENDING"}, state)


def records(n: int) -> list[learner.StepRecord]:
    return [learner.StepRecord(step=i, epoch=1 + (i - 1) // 3, loss=1.0 / i) for i in range(1, n + 1)]


def state(emu: FakeEmulator, name: str = "jobs/1") -> str:
    return emu.store.get("jobs", name)["resource"]["state"]


def test_registers_with_the_emulator_and_starts_training():
    emu, seen = FakeEmulator(), []
    lc = lifecycle(emu, seen)
    assert emu.tickers == [lc.tick] and emu.startup_hooks == [lc.resume]
    create(lc, emu)
    assert [k for k, _ in lc.trainer.started] == ["jobs/1"] and lc.trainer.started[0][1].checkpoints
    assert lc.active == {"jobs/1"}


def test_pending_running_succeeded_only_after_real_training():
    emu, seen = FakeEmulator(), []
    lc = lifecycle(emu, seen)
    create(lc, emu)
    on_data, on_done = lc.trainer.callbacks["jobs/1"]
    on_data(12)  # 12 examples, batch 4, 2 epochs: 6 steps of 1 s after 10 s pending
    assert emu.store.get("jobs", "jobs/1")["emu"]["steps"] == 6
    lc.tick(emu.now())
    assert state(emu) == "PENDING"
    emu.t += 13
    lc.trainer.progress["jobs/1"] = 2  # the clock allows 3 steps, the learner has done 2
    lc.tick(emu.now())
    assert state(emu) == "RUNNING" and seen[-1] == ("jobs/1", "RUNNING", 2)
    emu.t += 100  # long past the nominal end, but training has not finished: still running
    lc.tick(emu.now())
    assert state(emu) == "RUNNING"
    on_done(records(6), None)  # reports back and advances the job at once
    assert state(emu) == "SUCCEEDED" and lc.active == set()
    e = emu.store.get("jobs", "jobs/1")["emu"]
    assert e["trained"] and len(e["losses"]) == 6 and "val_losses" not in e
    n = len(seen)
    lc.tick(emu.now())
    assert len(seen) == n  # an ended job is no longer ticked


def test_validation_losses_are_kept():
    emu, seen = FakeEmulator(), []
    lc = lifecycle(emu, seen)
    create(lc, emu)
    on_data, on_done = lc.trainer.callbacks["jobs/1"]
    on_data(12)
    on_done(records(6), None, [(3, 1, 0.5), (6, 2, 0.25)])
    assert emu.store.get("jobs", "jobs/1")["emu"]["val_losses"] == [[3, 1, 0.5], [6, 2, 0.25]]


def test_a_data_error_fails_the_job_no_earlier_than_the_end_of_pending():
    emu, seen = FakeEmulator(), []
    lc = lifecycle(emu, seen)
    create(lc, emu)
    _, on_done = lc.trainer.callbacks["jobs/1"]
    on_done(None, ValueError("line 3 is not JSON"))
    assert state(emu) == "PENDING"
    emu.t += 10
    lc.tick(emu.now())
    assert state(emu) == "FAILED" and lc.active == set()
    assert emu.store.get("jobs", "jobs/1")["emu"]["error"] == {"code": 3, "message": "line 3 is not JSON"}


def test_an_injected_failure_ends_the_job_at_its_fraction():
    emu, seen = FakeEmulator(), []
    emu.faults.add_job_failure({"match": "^doomed$", "at_fraction": 0.5, "code": 13, "message": "boom"})
    lc = lifecycle(emu, seen)
    create(lc, emu, display="doomed")
    on_data, on_done = lc.trainer.callbacks["jobs/1"]
    on_data(12)
    on_done(records(6), None)
    emu.t += 10 + 3
    lc.tick(emu.now())
    assert state(emu) == "FAILED" and seen[-1] == ("jobs/1", "FAILED", 3)


def test_cancel_and_forget():
    emu, seen = FakeEmulator(), []
    lc = lifecycle(emu, seen)
    create(lc, emu, "jobs/1")
    create(lc, emu, "jobs/2")
    lc.cancel("jobs/1", emu.store.get("jobs", "jobs/1"))
    assert state(emu, "jobs/1") == "CANCELLED" and lc.active == {"jobs/2"}
    emu.store.delete("jobs", "jobs/2")
    lc.forget("jobs/2")
    assert lc.active == set()
    _, on_done = lc.trainer.callbacks["jobs/2"]
    on_done(records(6), None)  # the training of a deleted job records nothing
    assert emu.store.get("jobs", "jobs/2") is None


def test_a_restart_trains_unfinished_jobs_again_and_leaves_ended_ones(tmp_path):
    emu, seen = FakeEmulator(Store(tmp_path)), []
    lc = lifecycle(emu, seen)
    create(lc, emu, "jobs/done")
    create(lc, emu, "jobs/mid")       # killed mid-training: trained again
    for name in ("jobs/done", "jobs/mid"):
        lc.trainer.callbacks[name][0](12)
    emu.t += 100
    lc.trainer.callbacks["jobs/done"][1](records(6), None)
    create(lc, emu, "jobs/trained")   # training finished, the clock not yet: ticked, not trained again
    lc.trainer.callbacks["jobs/trained"][0](12)
    lc.trainer.callbacks["jobs/trained"][1](records(6), None)
    assert [state(emu, n) for n in ("jobs/done", "jobs/trained", "jobs/mid")] == ["SUCCEEDED", "PENDING", "PENDING"]

    emu2 = FakeEmulator(Store(tmp_path))
    emu2.t = emu.t
    lc2 = lifecycle(emu2, [])
    for hook in emu2.startup_hooks:
        hook()
    assert lc2.active == {"jobs/trained", "jobs/mid"}
    assert [k for k, _ in lc2.trainer.started] == ["jobs/mid"]
    emu2.t += 100
    lc2.tick(emu2.now())
    assert state(emu2, "jobs/trained") == "SUCCEEDED" and state(emu2, "jobs/mid") == "RUNNING"
