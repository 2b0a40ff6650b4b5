"""Idempotence: identity key, fingerprint, decisions, and the launcher's flow against a fake backend + store."""

from __future__ import annotations

import dataclasses

import pytest

from gemini_tuning.backends import gcs
from gemini_tuning.backends.contract import JobIdentity
from gemini_tuning.backends.errors import AlreadyExistsError, NotFoundError, TuningApiError
from gemini_tuning.core.identity import FINGERPRINT_LABEL, KEY_LABEL, fingerprint, identity_key
from gemini_tuning.core.identity import decide_launch as decide
from gemini_tuning.core.states import JobStatus
from gemini_tuning.core.tuning import TuningSpec
from gemini_tuning.services.idempotence import FingerprintChanged, Intent, JobLauncher

pytestmark = pytest.mark.fast


def st(name="j1", state="JOB_STATE_RUNNING", **kw):
    return JobStatus(backend="vertex", name=name, state=state, **kw)


def test_identity_key_is_run_stable_and_ignores_try_number():
    a = identity_key("dag", "tune", "manual__1", None)
    assert a == identity_key("dag", "tune", "manual__1", -1)
    assert a != identity_key("dag", "tune", "manual__2", None)
    assert a != identity_key("dag", "tune", "manual__1", 0)
    assert len(a) <= 63 and a.islower() or a[1:].isalnum()


def test_fingerprint_is_canonical():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


@pytest.mark.parametrize("existing, fp, policy, action", [
    (None, None, "fail", "create"),
    (st(state="JOB_STATE_RUNNING"), "f1", "fail", "reattach"),
    (st(state="JOB_STATE_PENDING"), "f1", "fail", "reattach"),
    (st(state="JOB_STATE_QUEUED"), "f1", "fail", "reattach"),
    (st(state="JOB_STATE_PAUSED"), "f1", "fail", "reattach"),
    (st(state="JOB_STATE_SUCCEEDED"), "f1", "fail", "return"),
    (st(state="JOB_STATE_FAILED"), "f1", "fail", "create"),
    (st(state="JOB_STATE_CANCELLED"), "f1", "fail", "create"),
    (st(state="JOB_STATE_EXPIRED"), "f1", "fail", "create"),
    (st(state="JOB_STATE_RUNNING"), "f0", "cancel_and_resubmit", "cancel_and_create"),
    (st(state="JOB_STATE_RUNNING"), "f0", "fail", "fail"),
    (st(state="JOB_STATE_SUCCEEDED"), "f0", "fail", "create"),
])
def test_decisions(existing, fp, policy, action):
    assert decide(existing, fp, "f1", policy).action == action


# ---------------------------------------------------------------------------------------------- fakes
class FakeStore:
    """IntentStore semantics in memory: generation-checked writes."""

    def __init__(self):
        self.obj, self.gen, self.writes = None, 0, 0

    def read(self, key):
        return (Intent.from_dict(dict(self.obj)) if self.obj else None), self.gen

    def save(self, intent, generation):
        if generation != self.gen:
            raise gcs.GenerationMismatch("gs://fake/intent", generation, self.gen)
        self.obj, self.gen, self.writes = dataclasses.asdict(intent), self.gen + 1, self.writes + 1
        return self.gen


class FakeVertex:
    kind = "vertex"

    def __init__(self):
        self.jobs: dict[str, JobStatus] = {}
        self.creates = 0
        self.cancelled: list[str] = []
        self.fail_create_after_submit = False

    def create(self, spec, identity):
        labels = identity.labels() if hasattr(identity, "labels") else identity
        self.creates += 1
        name = f"jobs/{self.creates}"
        self.jobs[name] = st(name, "JOB_STATE_PENDING", labels=dict(labels),
                             create_time=f"2026-01-01T00:00:0{self.creates}")
        if self.fail_create_after_submit:
            self.fail_create_after_submit = False
            raise ConnectionResetError("reset after the server accepted the create")
        return self.jobs[name]

    def get(self, name):
        if name not in self.jobs:
            raise NotFoundError(404, name)
        return self.jobs[name]

    def find(self, identity):
        labels = identity.lookup_labels()
        jobs = [j for j in self.jobs.values() if all(j.labels.get(k) == v for k, v in labels.items())]
        live = [j for j in jobs if not j.terminal]
        return max(live or jobs, key=lambda j: j.create_time or "") if jobs else None

    @staticmethod
    def fingerprint_of(status):
        return status.labels.get(FINGERPRINT_LABEL)

    def cancel(self, name):
        self.cancelled.append(name)
        self.jobs[name] = dataclasses.replace(self.jobs[name], state="JOB_STATE_CANCELLED")

    def set(self, name, state):
        self.jobs[name] = dataclasses.replace(self.jobs[name], state=state)


SPEC = TuningSpec(backend="vertex", base_model="gemini-2.5-flash", training_uri="gs://b/t.jsonl")


def launcher(backend, store, fp="f1", **kw):
    return JobLauncher(backend, store, key="kabc", fingerprint=fp, sleep=lambda s: None, **kw)


def test_first_try_writes_intent_then_creates_then_records_name():
    b, s = FakeVertex(), FakeStore()
    out = launcher(b, s).launch(SPEC)
    assert out.decision.action == "create" and b.creates == 1
    assert s.obj["job_name"] == "jobs/1" and s.obj["attempt"] == 1 and s.writes == 2
    assert b.jobs["jobs/1"].labels == {KEY_LABEL: "kabc", "gemini-tuning-attempt": "1", FINGERPRINT_LABEL: "f1"}


def test_retry_reattaches_to_active_job_and_never_creates_again():
    b, s = FakeVertex(), FakeStore()
    launcher(b, s).launch(SPEC)
    for _ in range(3):
        out = launcher(b, s).launch(SPEC)
        assert out.decision.action == "reattach" and out.status.name == "jobs/1"
    assert b.creates == 1


def test_retry_returns_succeeded_job():
    b, s = FakeVertex(), FakeStore()
    launcher(b, s).launch(SPEC)
    b.set("jobs/1", "JOB_STATE_SUCCEEDED")
    out = launcher(b, s).launch(SPEC)
    assert out.decision.action == "return" and b.creates == 1


def test_retry_after_failed_job_creates_next_attempt_with_history():
    b, s = FakeVertex(), FakeStore()
    launcher(b, s).launch(SPEC)
    b.set("jobs/1", "JOB_STATE_FAILED")
    out = launcher(b, s).launch(SPEC)
    assert out.decision.action == "create" and out.status.name == "jobs/2"
    assert s.obj["attempt"] == 2 and s.obj["history"][0]["job_name"] == "jobs/1"


def test_changed_inputs_cancel_and_resubmit_or_fail():
    b, s = FakeVertex(), FakeStore()
    launcher(b, s).launch(SPEC)
    with pytest.raises(FingerprintChanged):
        launcher(b, s, fp="f2", policy="fail").launch(SPEC)
    assert b.creates == 1 and not b.cancelled
    out = launcher(b, s, fp="f2").launch(SPEC)
    assert b.cancelled == ["jobs/1"] and out.status.name == "jobs/2" and s.obj["fingerprint"] == "f2"


def test_intent_without_job_name_is_resolved_by_label_not_paid_twice():
    b, s = FakeVertex(), FakeStore()
    # a try wrote its intent, the create went through, then the worker died before recording the name
    s.save(Intent("kabc", "f1", 1, "vertex"), 0)
    b.create(SPEC, {KEY_LABEL: "kabc", "gemini-tuning-attempt": "1", FINGERPRINT_LABEL: "f1"})
    out = launcher(b, s).launch(SPEC)
    assert out.decision.action == "reattach" and out.status.name == "jobs/1" and b.creates == 1
    assert s.obj["job_name"] == "jobs/1"


def test_stale_intent_without_job_creates_with_same_attempt():
    b, s = FakeVertex(), FakeStore()
    s.save(Intent("kabc", "f1", 3, "vertex", created_at=0.0), 0)   # old, and no job ever appeared
    out = launcher(b, s).launch(SPEC)
    assert out.decision.action == "create" and b.jobs["jobs/1"].labels["gemini-tuning-attempt"] == "3"


def test_ambiguous_create_failure_finds_the_job_instead_of_creating_twice():
    b, s = FakeVertex(), FakeStore()
    b.fail_create_after_submit = True
    out = launcher(b, s).launch(SPEC)
    assert b.creates == 1 and out.status.name == "jobs/1" and s.obj["job_name"] == "jobs/1"


def test_non_transient_create_error_propagates_and_leaves_intent():
    class Refusing(FakeVertex):
        def create(self, spec, labels):
            raise TuningApiError(400, "bad base model")

    b, s = Refusing(), FakeStore()
    with pytest.raises(TuningApiError):
        launcher(b, s).launch(SPEC)
    assert s.obj["job_name"] is None


def test_store_read_error_is_not_taken_for_no_record():
    class Broken(FakeStore):
        def read(self, key):
            raise TuningApiError(503, "GCS unavailable")

    b = FakeVertex()
    with pytest.raises(TuningApiError):
        launcher(b, Broken()).launch(SPEC)
    assert b.creates == 0


def test_concurrent_writer_conflict_rereads_and_reattaches():
    b = FakeVertex()

    class Racing(FakeStore):
        """Another try creates and records its job between our read and our first write."""
        raced = False

        def save(self, intent, generation):
            if not self.raced:
                self.raced = True
                job = b.create(SPEC, {KEY_LABEL: "kabc", "gemini-tuning-attempt": "1", FINGERPRINT_LABEL: "f1"})
                FakeStore.save(self, Intent("kabc", "f1", 1, "vertex", job_name=job.name), self.gen)
            return FakeStore.save(self, intent, generation)

    out = launcher(b, Racing()).launch(SPEC)
    assert b.creates == 1 and out.decision.action == "reattach"


class FakeGemini(FakeVertex):
    kind = "gemini_api"

    def create(self, spec, identity):
        self.creates += 1
        name = f"tunedModels/gt-{identity.key}-{identity.attempt}"
        if name in self.jobs:
            raise AlreadyExistsError(409, "exists")
        self.jobs[name] = JobStatus(backend="gemini_api", name=name, state="JOB_STATE_RUNNING",
                                    operation=f"{name}/operations/op")
        return self.jobs[name]

    def get(self, name):
        return super().get(name.split("/operations/")[0])

    def find(self, identity):
        try:
            return self.get(f"tunedModels/gt-{identity.key}-{identity.attempt}")
        except NotFoundError:
            return None


def test_gemini_api_deterministic_id_turns_a_repeat_create_into_reattach():
    b, s = FakeGemini(), FakeStore()
    s.save(Intent("kabc", "f1", 1, "gemini_api", created_at=0.0), 0)
    b.create(SPEC, JobIdentity("kabc", "f1", 1))       # went through before the crash
    out = launcher(b, s).launch(SPEC)
    assert out.status.name == "tunedModels/gt-kabc-1" and s.obj["job_name"].endswith("/operations/op")


def test_the_intent_keeps_what_continue_from_resolved_to():
    """A retry or clear reuses it (operators/tune.py ``_earlier_continuation``): after this run's promotion
    "champion" would resolve to the run's own model, and that must not become a second paid job."""
    from gemini_tuning.services.idempotence import Intent

    b, s = FakeVertex(), FakeStore()
    kept = {"raw": "champion", "model_version": "projects/p/locations/l/models/9@1", "checkpoint_id": "2"}
    launcher(b, s, continuation=kept).launch(SPEC)
    assert s.obj["continuation"] == kept
    assert Intent.from_dict(s.obj).continuation == kept
    launcher(b, s, continuation=kept).launch(SPEC)           # the retry reattaches, the record keeps it
    assert b.creates == 1 and s.obj["continuation"] == kept
