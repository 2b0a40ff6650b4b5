"""Acceptance 2: the Gemini API tutorial's REST flow, with `requests`, against the emulator."""

from __future__ import annotations

import time

import pytest
import requests

from harness.data import demo_rows

pytestmark = pytest.mark.fast

KEY = {"x-goog-api-key": "test-key"}


def _examples():
    return [{"textInput": r["text_input"], "output": r["output"]} for r in demo_rows("seeds_numbers.jsonl")]


def _create(url, display="number generator model", **hyper):
    body = {"displayName": display, "baseModel": "models/gemini-1.5-flash-001-tuning",
            "tuningTask": {"hyperparameters": {"batchSize": 2, "learningRate": 0.001, "epochCount": 5, **hyper},
                           "trainingData": {"examples": {"examples": _examples()}}}}
    resp = requests.post(f"{url}/v1beta/tunedModels", headers=KEY, json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_seeds_flow_create_poll_get_generate_list_delete(emulator):
    url = emulator.endpoints.url
    op = _create(url)
    model = op["metadata"]["tunedModel"]
    assert op["name"].startswith(f"{model}/operations/") and op["done"] is False
    assert op["metadata"]["totalSteps"] == 5 * -(-len(_examples()) // 2)
    percents, losses = [], []
    deadline = time.monotonic() + 60
    while True:   # the tutorial polls the operation on v1/
        op = requests.get(f"{url}/v1/{op['name']}", headers=KEY, timeout=10).json()
        percents.append(op["metadata"]["completedPercent"])
        if op.get("done"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "error" not in op, op
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any(0 < p < 100 for p in percents), f"never saw progress between 0 and 100: {percents}"
    snaps = op["metadata"]["snapshots"]
    assert [s["step"] for s in snaps] == list(range(1, op["metadata"]["totalSteps"] + 1))
    losses = [s["meanLoss"] for s in snaps]
    assert sum(losses[-5:]) < sum(losses[:5]), "the real training loss should fall"

    tuned = requests.get(f"{url}/v1beta/{model}", headers=KEY, timeout=10).json()
    assert tuned["state"] == "ACTIVE"
    assert "trainingData" not in tuned["tuningTask"]          # input only, never returned
    assert tuned["tuningTask"]["snapshots"][-1]["meanLoss"] == losses[-1]

    gen = requests.post(f"{url}/v1beta/{model}:generateContent", headers=KEY, timeout=10,
                        json={"contents": [{"parts": [{"text": "LXIII"}]}], "generationConfig": {"temperature": 0}})
    assert gen.status_code == 200, gen.text
    text = gen.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert text in {e["output"] for e in _examples()}

    # list with paging: create two more, then walk pages of 1
    extra = [_create(url, display=f"pager {i}")["metadata"]["tunedModel"] for i in range(2)]
    names, token = [], None
    while True:
        params = {"pageSize": 1, **({"pageToken": token} if token else {})}
        page = requests.get(f"{url}/v1beta/tunedModels", headers=KEY, params=params, timeout=10).json()
        assert len(page["tunedModels"]) <= 1
        names += [m["name"] for m in page["tunedModels"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert {model, *extra} <= set(names) and len(names) == len(set(names))

    patched = requests.patch(f"{url}/v1beta/{model}", headers=KEY, params={"updateMask": "description"},
                             json={"description": "adds one"}, timeout=10).json()
    assert patched["description"] == "adds one"
    assert requests.delete(f"{url}/v1beta/{model}", headers=KEY, timeout=10).json() == {}
    gone = requests.get(f"{url}/v1beta/{model}", headers=KEY, timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["status"] == "NOT_FOUND"


def test_auth_missing_key_is_401_and_oauth_needs_user_project(emulator):
    url = emulator.endpoints.url
    r = requests.get(f"{url}/v1beta/tunedModels", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = requests.get(f"{url}/v1beta/tunedModels", headers={"Authorization": "Bearer tok"}, timeout=10)
    assert r.status_code == 403 and "x-goog-user-project" in r.json()["error"]["message"]
    r = requests.get(f"{url}/v1beta/tunedModels", headers={"Authorization": "Bearer tok",
                                                          "x-goog-user-project": "p"}, timeout=10)
    assert r.status_code == 200
    assert requests.get(f"{url}/v1beta/tunedModels", params={"key": "k"}, timeout=10).status_code == 200


@pytest.mark.parametrize("mutate, fragment", [
    (lambda b: b.update(baseModel="models/gemini-2.5-flash"), "does not support tuning"),
    (lambda b: b["tuningTask"]["trainingData"]["examples"]["examples"].append(
        {"textInput": "x" * 40_001, "output": "y"}),
     "40000"),
    (lambda b: b["tuningTask"]["trainingData"]["examples"]["examples"].append(
        {"textInput": "x", "output": "y" * 5_001}),
     "5000"),
    (lambda b: b.update(displayName="d" * 41), "40 characters"),
])
def test_create_validation(emulator, mutate, fragment):
    body = {"displayName": "v", "baseModel": "models/gemini-1.5-flash-001-tuning",
            "tuningTask": {"trainingData": {"examples": {"examples": _examples()}}}}
    mutate(body)
    r = requests.post(f"{emulator.endpoints.url}/v1beta/tunedModels", headers=KEY, json=body, timeout=10)
    assert r.status_code == 400 and fragment in r.json()["error"]["message"]


def test_tuned_model_id_and_discontinued_mode(emulator):
    url = emulator.endpoints.url
    body = {"baseModel": "models/gemini-1.5-flash-001-tuning",
            "tuningTask": {"trainingData": {"examples": {"examples": _examples()}}}}
    r = requests.post(f"{url}/v1beta/tunedModels", params={"tunedModelId": "Bad_Id"}, headers=KEY, json=body,
                      timeout=10)
    assert r.status_code == 400
    emulator.emulator.config.update({"gemini_api_tuning_discontinued": True})
    r = requests.post(f"{url}/v1beta/tunedModels", headers=KEY, json=body, timeout=10)
    assert r.status_code == 400 and "Vertex" in r.json()["error"]["message"]
