"""Both tuning backends against the emulator, through the one contract (``backends.contract.TuningBackend``): create
with an identity, find it again by that identity (and by the attempt), poll it sync and async, and cancel it from
the async side (the trigger's path: on_kill and the deadline)."""

from __future__ import annotations

import asyncio
import json

import pytest

from gemini_tuning.backends.contract import JobIdentity, TuningBackend
from gemini_tuning.core.tuning import TuningSpec
from gemini_tuning.hooks import GeminiTuningHook
from harness.clients import PROJECT
from harness.data import demo_rows, unique

pytestmark = pytest.mark.fast


@pytest.fixture
def hook(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_EMU", json.dumps({"conn_type": "google_cloud_platform",
                                                       "extra": {"is_anonymous": True, "project": PROJECT}}))
    monkeypatch.setenv("AIRFLOW_CONN_EMU_KEY", json.dumps({"conn_type": "gemini_api", "password": "test-key"}))
    emulator.emulator.config.update({"time_scale": 0.05})          # long enough to cancel while it runs
    return GeminiTuningHook("emu", api_base_url=emulator.endpoints.url, gemini_api_conn_id="emu_key")


def spec_for(kind: str, upload) -> TuningSpec:
    if kind == "vertex":
        uri = upload("".join(json.dumps(r) + "\n" for r in demo_rows("train.jsonl", 24)))
        return TuningSpec(backend="vertex", base_model="gemini-2.5-flash", training_uri=uri, epochs=1)
    uri = upload("".join(json.dumps(r) + "\n" for r in demo_rows("seeds_numbers.jsonl")))   # text_input/output
    return TuningSpec(backend="gemini_api", base_model="models/gemini-1.5-flash-001-tuning", training_uri=uri,
                      epochs=1)


@pytest.mark.parametrize("kind", ["vertex", "gemini_api"])
def test_create_find_poll_and_cancel_through_the_contract(hook, upload, kind):
    backend = hook.backend(kind, project_id=PROJECT)
    assert isinstance(backend, TuningBackend)
    identity = JobIdentity(unique("k").replace("-", ""), "ffingerprint", 1)
    assert backend.find(identity) is None                               # nothing yet for this identity
    created = backend.create(spec_for(kind, upload), identity)
    found = backend.find(identity)
    assert found is not None and found.name == created.name
    assert backend.find(JobIdentity(identity.key, identity.fingerprint, None)).name == created.name   # newest
    assert backend.find(JobIdentity(identity.key, identity.fingerprint, 2)) is None                  # no attempt 2
    assert backend.get(created.poll_name).name == created.name

    async def cancel_async():
        try:
            status = await backend.aget(created.poll_name)
            assert not status.terminal
            await backend.acancel(created.poll_name)
        finally:
            await backend.aclose()

    asyncio.run(cancel_async())
    assert backend.get(created.poll_name).state == "JOB_STATE_CANCELLED"
    assert backend.console_url(created.name).startswith("https://")


def test_the_rest_poll_and_google_genai_parse_every_live_job_state_alike(hook, upload):
    """Every state a live emulator job passes through: the same response body, parsed by our REST poll and by
    google-genai's own converter and model (what ``client.tunings.get`` does), field by field."""
    import time
    from dataclasses import fields

    from google.genai import tunings, types

    from gemini_tuning.backends.rest import single
    from gemini_tuning.backends.vertex import get_job_request, job_status, parse_job

    backend = hook.backend("vertex", project_id=PROJECT)
    created = backend.create(spec_for("vertex", upload), JobIdentity(unique("k").replace("-", ""), "f", 1))
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = backend.rest.run(single(get_job_request(created.name)))
        ours = parse_job(body)
        theirs = job_status(types.TuningJob._from_response(response=tunings._TuningJob_from_vertex(body), kwargs={}))
        for f in fields(ours):
            assert getattr(ours, f.name) == getattr(theirs, f.name), (ours.state, f.name)
        seen.add((ours.state, ours.sub_state))
        if ours.terminal:
            break
        time.sleep(0.2)
    assert {s for s, _ in seen} >= {"JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"}, seen
