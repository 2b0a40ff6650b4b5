"""TuningRun's base-model check alone (fakes for the backend and the intent store): when it asks the service, what
it publishes, and when it must not refuse (a retry that reattaches to a job an earlier try created)."""

from __future__ import annotations

import logging
from datetime import date
from types import SimpleNamespace

import pytest

from gemini_tuning.backends.errors import NotFoundError
from gemini_tuning.backends.vertex import base_model_id, base_model_request
from gemini_tuning.core.tuning import TuningSpec
from gemini_tuning.services.tuning import run as run_module
from gemini_tuning.services.tuning.run import Refused, TaskRef, TuningRequest, TuningRun

pytestmark = pytest.mark.fast


class Backend:
    location = "europe-west4"

    def __init__(self, served: bool):
        self.served, self.asked = served, []

    def base_model(self, model):
        self.asked.append(model)
        if not self.served:
            raise NotFoundError(404, f"Publisher Model `publishers/google/models/{model}` was not found",
                                status="NOT_FOUND")
        return {"name": f"publishers/google/models/{model}"}


def tuning_run(monkeypatch, *, recorded_job: str | None = None, today=date(2026, 12, 8), **req):
    intent = SimpleNamespace(job_name=recorded_job) if recorded_job else None
    monkeypatch.setattr("gemini_tuning.services.idempotence.IntentStore",
                        lambda client, uri: SimpleNamespace(read=lambda key: (intent, 1)))
    spec = TuningSpec(backend="vertex", base_model=req.pop("base_model", "gemini-2.5-flash"),
                      training_uri="gs://acme-ml/train.jsonl")
    request = TuningRequest(spec=spec, task=TaskRef("d", "tune", "r"), today=today, **req)
    return TuningRun(request, backend=lambda kind: None, storage=lambda: object(), registry=lambda: None,
                     log=logging.getLogger("test")), spec


def test_a_model_the_service_does_not_serve_is_refused_naming_model_location_and_what_to_do(monkeypatch):
    tr, spec = tuning_run(monkeypatch)
    published = {}
    backend = Backend(served=False)
    with pytest.raises(Refused) as err:
        tr.check_base_model(backend, spec, "gs://acme-ml/state", published.__setitem__)
    msg = str(err.value)
    assert msg.startswith("nothing was created: base model gemini-2.5-flash is not served in europe-west4 "
                          "(Vertex AI answered 404 NOT_FOUND: Publisher Model")
    assert "gemini-2.5-flash retired on 2026-10-20 (49 days ago)" in msg
    assert "Set base_model to gemini-3.5-flash-lite or gemini-3.1-flash-lite" in msg
    assert backend.asked == ["gemini-2.5-flash"]
    assert published["base_model"]["served"] is False and published["base_model"]["days_left"] == -49


def test_a_served_model_is_published_with_its_date_and_the_warning_window(monkeypatch, caplog):
    tr, spec = tuning_run(monkeypatch, base_model="gemini-3.5-flash", today=date(2027, 1, 1),
                          retirement_warn_days=30)
    published = {}
    with caplog.at_level(logging.INFO, "test"):
        info = tr.check_base_model(Backend(served=True), spec, "gs://acme-ml/state", published.__setitem__)
    assert info == published["base_model"]
    assert info["served"] is True and info["retirement"] == "2027-05-19" and info["state"] == "ok"
    tr2, _ = tuning_run(monkeypatch, base_model="gemini-3.5-flash", today=date(2027, 1, 1),
                        retirement_warn_days=120)
    with caplog.at_level(logging.WARNING, "test"):
        assert tr2.check_base_model(Backend(served=True), spec, "gs://acme-ml/state",
                                    lambda k, v: None)["state"] == "warn"
    assert any(r.levelno == logging.WARNING and "retires on 2027-05-19" in r.getMessage() for r in caplog.records)


def test_a_retry_that_reattaches_is_not_refused_and_the_gemini_api_is_not_asked(monkeypatch):
    tr, spec = tuning_run(monkeypatch, recorded_job="projects/p/locations/l/tuningJobs/1")
    backend = Backend(served=False)
    assert tr.check_base_model(backend, spec, "gs://acme-ml/state", lambda k, v: None) is None
    assert backend.asked == []
    tr, spec = tuning_run(monkeypatch)
    assert tr.check_base_model(SimpleNamespace(), spec, "gs://acme-ml/state", lambda k, v: None) is None


def test_an_unreadable_lifecycle_table_is_a_refusal(monkeypatch, tmp_path):
    bad = tmp_path / "table.json"
    bad.write_text("{not json")
    tr, spec = tuning_run(monkeypatch, lifecycle_table=str(bad))
    with pytest.raises(Refused, match=r"the model lifecycle table cannot be read: .*table.json: not JSON"):
        tr.check_base_model(Backend(served=True), spec, "gs://acme-ml/state", lambda k, v: None)


@pytest.mark.parametrize("model, bare", [
    ("gemini-3.5-flash", "gemini-3.5-flash"), ("publishers/google/models/gemini-3.5-flash", "gemini-3.5-flash"),
    ("projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001", "gemini-2.0-flash-001"),
    ("models/gemini-3.1-flash-lite", "gemini-3.1-flash-lite"), ("gemini-3.5-flash@001", "gemini-3.5-flash@001"),
])
def test_the_request_names_the_bare_model(model, bare):
    assert base_model_id(model) == bare
    assert base_model_request(model).path == f"/v1beta1/publishers/google/models/{bare}"


@pytest.mark.parametrize("model", ["", "../tuningJobs", "gemini?x=1", "Gemini-3.5", "a/b", "gemini 3.5"])
def test_a_model_id_that_would_change_the_url_is_refused(model):
    with pytest.raises(ValueError, match="is not a Gemini model id"):
        base_model_request(model)


def test_the_run_module_documents_the_step():
    assert "publishers/google/models/{id}" in run_module.__doc__


# ------------------------------------------------------------------------------ rebase (continue_from=champion)
def rebase_run(monkeypatch, champion: dict | None, **req):
    monkeypatch.setattr("gemini_tuning.services.champion_pointer.read_champion",
                        lambda storage, uri: (champion, 3 if champion else 0))
    spec = TuningSpec(backend="vertex", base_model=req.pop("base_model", "gemini-3.5-flash"),
                      training_uri="gs://acme-ml/train.jsonl")
    request = TuningRequest(spec=spec, task=TaskRef("d", "tune", "r"), continue_from="champion",
                            champion_pointer_uri="gs://acme-ml/champion.json",
                            today=req.pop("today", date(2026, 12, 8)), **req)
    return TuningRun(request, backend=lambda kind: None, storage=lambda: object(), registry=lambda: None,
                     log=logging.getLogger("test"))


CHAMPION = {"backend": "vertex", "tuned_model": "projects/p/locations/us-central1/models/9@2",
            "base_model": "gemini-2.5-flash"}


def test_a_champion_on_a_retired_base_is_rebased_onto_the_configured_model(monkeypatch, caplog):
    published = {}
    with caplog.at_level(logging.WARNING, "test"):
        assert rebase_run(monkeypatch, CHAMPION).rebase(published.__setitem__) is True
    assert published["rebase"]["champion_base_model"] == "gemini-2.5-flash"
    assert published["rebase"]["base_model"] == "gemini-3.5-flash"
    assert "replaced by a fresh tuning of base_model=gemini-3.5-flash" in published["rebase"]["message"]
    assert any("the champion's base model gemini-2.5-flash retired on 2026-10-20" in r.getMessage()
               for r in caplog.records)


def test_on_base_retirement_fail_stops_with_what_to_do(monkeypatch):
    with pytest.raises(Refused, match=r"nothing was created: the champion's base model gemini-2.5-flash retired on "
                                      r"2026-10-20 .*on_base_retirement='fail': stopping\. Set "
                                      r"on_base_retirement='rebase'"):
        rebase_run(monkeypatch, CHAMPION, on_base_retirement="fail").rebase(lambda k, v: None)


def test_a_rebase_onto_the_champions_own_family_would_not_help(monkeypatch):
    with pytest.raises(Refused, match="Rebasing onto base_model=gemini-2.5-flash would not help"):
        rebase_run(monkeypatch, CHAMPION, base_model="gemini-2.5-flash").rebase(lambda k, v: None)


def test_a_healthy_or_unknown_champion_base_continues(monkeypatch):
    healthy = {**CHAMPION, "base_model": "gemini-3.5-flash"}
    assert rebase_run(monkeypatch, healthy).rebase(lambda k, v: None) is False
    # the warning window: 60 days before 3.5-flash's tuning block (2027-04-19), with the default warn_days
    assert rebase_run(monkeypatch, healthy, today=date(2027, 3, 1),
                      base_model="gemini-3.5-flash-lite").rebase(lambda k, v: None) is True
    assert rebase_run(monkeypatch, {k: v for k, v in CHAMPION.items() if k != "base_model"}).rebase(
        lambda k, v: None) is False                                  # an older pointer: nothing to judge by
    assert rebase_run(monkeypatch, None).rebase(lambda k, v: None) is False   # no champion yet


def test_a_retry_keeps_what_the_first_try_decided(monkeypatch):
    """A rebased first try is rebased again on every retry (its job is not cancelled for a continuation), and a
    first try that continued is not rebased later (another day may be inside the warning window)."""
    rebased = SimpleNamespace(job_name="projects/p/locations/l/tuningJobs/1",
                              continuation={"raw": "champion", "rebased": True, "model_version": None})
    continued = SimpleNamespace(job_name="projects/p/locations/l/tuningJobs/2",
                                continuation={"raw": "champion", "model_version": "projects/p/locations/l/models/9@2"})
    for intent, expected in ((rebased, True), (continued, False)):
        run = rebase_run(monkeypatch, CHAMPION)
        monkeypatch.setattr(run, "_intent", lambda uri, i=intent: i)
        assert run.rebase(lambda k, v: None, "gs://acme-ml/state") is expected


def test_only_warned_and_still_on_the_same_family_keeps_continuing(monkeypatch):
    healthy_soon = {**CHAMPION, "base_model": "gemini-3.5-flash"}
    published = {}
    run = rebase_run(monkeypatch, healthy_soon, today=date(2027, 3, 1))      # warn window, base_model same family
    assert run.rebase(published.__setitem__) is False
    assert published["rebase"]["rebased"] is False


def test_a_403_is_not_a_verdict_and_a_bad_id_is_a_refusal(monkeypatch):
    from gemini_tuning.backends.errors import TuningApiError

    class Forbidden(Backend):
        def base_model(self, model):
            raise TuningApiError(403, "Permission 'aiplatform.publisherModels.get' denied", status="PERMISSION_DENIED")

    tr, spec = tuning_run(monkeypatch)
    assert tr.check_base_model(Forbidden(True), spec, "gs://acme-ml/state", lambda k, v: None)["served"] is None

    class Bad(Backend):
        def base_model(self, model):
            return base_model_request(model)

    with pytest.raises(Refused, match="is not a Gemini model id"):
        tr.check_base_model(Bad(True), TuningSpec(backend="vertex", base_model="Gemini 3", training_uri="gs://a/b"),
                            "gs://acme-ml/state", lambda k, v: None)
