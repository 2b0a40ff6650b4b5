"""The base-model catalogue and lifecycle (emulator.models): PublisherModel GET, retired / blocked / capability
errors of tuningJobs.create, and the emulator's configurable date (config ``today``)."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from emulator import models
from harness.clients import LOCATION, PROJECT, gapic_kwargs

pytestmark = pytest.mark.fast

LATE_2026 = "2026-12-07"


def _jobs_url(emulator, location=LOCATION, ver="v1"):
    return f"{emulator.endpoints.url}/{ver}/projects/{PROJECT}/locations/{location}/tuningJobs"


def _sft(base, **hp):
    return {"baseModel": base, "supervisedTuningSpec": {"trainingDatasetUri": "gs://tuning-data/train.jsonl",
                                                        "hyperParameters": {"epochCount": "1", **hp}}}


def _pref(base, **hp):
    return {"baseModel": base, "preferenceOptimizationSpec": {"trainingDatasetUri": "gs://tuning-data/pref.jsonl",
                                                              "hyperParameters": {"epochCount": "1", **hp}}}


def _set_today(emulator, day):
    r = requests.post(f"{emulator.endpoints.url}/_emulator/config", json={"today": day}, timeout=10)
    assert r.status_code == 200, r.text


def test_catalogue_lifecycle_dates():
    flash = models.lookup("gemini-2.5-flash")
    assert flash.retirement == dt.date(2026, 10, 20) and flash.tuning_blocked_from == dt.date(2026, 9, 20)
    assert models.lookup("gemini-2.5-flash-001") is flash
    assert models.lookup("publishers/google/models/gemini-3.5-flash").id == "gemini-3.5-flash"
    assert models.lookup("gemini-2.5-flash-lite").id == "gemini-2.5-flash-lite"
    assert models.lookup("gemini-9-ultra") is None
    late = dt.date.fromisoformat(LATE_2026)
    tunable = {m.id for m in models.CATALOGUE if m.supervised and m.status(late) == "available"}
    assert tunable == {"gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite"}
    assert flash.status(dt.date(2026, 9, 19)) == "available"
    assert flash.status(dt.date(2026, 9, 20)) == "tuning_blocked"
    assert flash.status(dt.date(2026, 10, 20)) == "retired"
    assert models.lookup("gemini-3.8-flash").status(dt.date(2026, 9, 1)) == "unreleased"


def test_admin_lists_catalogue_and_rejects_bad_date(emulator):
    url = emulator.endpoints.url
    _set_today(emulator, LATE_2026)
    listed = requests.get(f"{url}/_emulator/models", timeout=10).json()
    assert listed["today"] == LATE_2026
    status = {m["id"]: m["status"] for m in listed["models"]}
    assert status["gemini-2.5-flash"] == "retired" and status["gemini-3.5-flash"] == "available"
    bad = requests.post(f"{url}/_emulator/config", json={"today": "07/12/2026"}, timeout=10)
    assert bad.status_code == 400


@pytest.mark.parametrize("ver", ["v1", "v1beta1"])
def test_get_publisher_model(emulator, ver):
    _set_today(emulator, LATE_2026)
    r = requests.get(f"{emulator.endpoints.url}/{ver}/publishers/google/models/gemini-3.5-flash", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "publishers/google/models/gemini-3.5-flash"
    assert body["launchStage"] == "GA" and body["versionState"] == "VERSION_STATE_STABLE" and body["versionId"]


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-9-ultra", "gemini-2.0-flash-001"])
def test_get_publisher_model_404_for_retired_or_unknown(emulator, model):
    _set_today(emulator, LATE_2026)
    r = requests.get(f"{emulator.endpoints.url}/v1/publishers/google/models/{model}", timeout=10)
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["code"] == 404 and err["status"] == "NOT_FOUND" and model in err["message"]


def test_default_date_keeps_2_5_models_tunable(emulator):
    assert emulator.emulator.config.today == models.default_today()
    r = requests.get(f"{emulator.endpoints.url}/v1/publishers/google/models/gemini-2.5-flash", timeout=10)
    assert r.status_code == 200


def test_create_on_retired_base_is_404(emulator):
    _set_today(emulator, LATE_2026)
    r = requests.post(_jobs_url(emulator), json=_sft("gemini-2.5-flash"), timeout=10)
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["status"] == "NOT_FOUND" and "gemini-2.5-flash" in err["message"]


def test_create_on_tuning_blocked_base_is_400(emulator):
    _set_today(emulator, "2026-10-01")     # 2.5 retires 2026-10-20: new tuning blocked from 2026-09-20
    r = requests.post(_jobs_url(emulator), json=_sft("gemini-2.5-pro"), timeout=10)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT" and "2026-10-20" in err["message"] and "blocked" in err["message"]
    assert err["details"][0]["fieldViolations"][0]["field"] == "tuning_job.base_model"


def test_create_on_current_base_succeeds_late_2026(emulator, small_train_uri):
    _set_today(emulator, LATE_2026)
    body = _sft("gemini-3.5-flash-lite")
    body["supervisedTuningSpec"]["trainingDatasetUri"] = small_train_uri
    r = requests.post(_jobs_url(emulator), json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["baseModel"] == "gemini-3.5-flash-lite"


@pytest.mark.parametrize("body, field, fragment", [
    (_pref("gemini-2.5-pro"), "base_model", "not supported for preference tuning"),
    (_pref("gemini-2.5-flash", adapterSize="ADAPTER_SIZE_THIRTY_TWO"), "adapter_size", "not supported for"),
    (_sft("gemini-2.5-pro", adapterSize="ADAPTER_SIZE_SIXTEEN"), "adapter_size", "not supported for gemini-2.5-pro"),
    (_sft("gemini-3.8-flash"), "base_model", "not supported for supervised tuning"),
])
def test_create_without_capability_is_400(emulator, body, field, fragment):
    r = requests.post(_jobs_url(emulator), json=body, timeout=10)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT" and fragment in err["message"], err
    assert err["details"][0]["fieldViolations"][0]["field"].endswith(field)


def test_model_garden_client_parses_publisher_model(emulator):
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1

    _set_today(emulator, LATE_2026)
    client = aiplatform_v1.ModelGardenServiceClient(**gapic_kwargs(emulator.endpoints.url))
    got = client.get_publisher_model(name="publishers/google/models/gemini-3.1-flash-lite")
    assert got.name == "publishers/google/models/gemini-3.1-flash-lite"
    assert got.launch_stage == aiplatform_v1.PublisherModel.LaunchStage.GA
    assert got.open_source_category == aiplatform_v1.PublisherModel.OpenSourceCategory.PROPRIETARY
    with pytest.raises(exceptions.NotFound):
        client.get_publisher_model(name="publishers/google/models/gemini-2.5-flash-lite")


def test_gemini_api_tuned_models_create_not_found_knob(emulator):
    url = emulator.endpoints.url
    body = {"baseModel": "models/gemini-1.5-flash-001-tuning",
            "tuningTask": {"trainingData": {"examples": {"examples": [{"textInput": "1", "output": "2"}]}}}}
    r = requests.post(f"{url}/_emulator/config", json={"gemini_api_tuning_not_found": True}, timeout=10)
    assert r.status_code == 200
    r = requests.post(f"{url}/v1beta/tunedModels", headers={"x-goog-api-key": "k"}, json=body, timeout=10)
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["status"] == "NOT_FOUND" and "not supported for createTunedModel" in err["message"]
    assert "models/gemini-1.5-flash-001-tuning" in err["message"]
