"""Preference tuning (``preferenceOptimizationSpec``, DPO) on the emulator: the JSONL format of reference §1b, the
SFT -> preference path through ``preTunedModel`` (§1e), and a learner whose preferences really move."""

from __future__ import annotations

import json
import random

import pytest
import requests

from emulator import learner as L
from harness.clients import LOCATION, PROJECT
from harness.data import unique
from harness.waits import wait_until

pytestmark = pytest.mark.fast

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
FORMAL = "Dear customer, thank you for your inquiry. We will review your account and reply formally."
CASUAL = "Hey! No worries at all, we totally got you covered :)"
BILL = ["invoice", "refund", "payment", "charge", "billing", "receipt", "subscription fee", "credit card"]
GAME = ["level", "boss fight", "multiplayer", "controller", "quest", "high score", "leaderboard", "loot"]
FILL = ["I have a question about my", "Can you help me with the", "Something is wrong with the",
        "Please explain the", "I need information on my", "Tell me more about the", "What happened to my",
        "I am confused by the"]
TAIL = ["today", "again", "please", "right now", "this week", "as soon as possible", "", "thanks"]


def _prompts():
    """Billing prompts prefer the formal reply, gaming prompts the casual one; 200 to train on, 200 held out."""
    allp = [(f"{f} {w} {t}".strip(), w in BILL) for w in BILL + GAME for f in FILL for t in TAIL]
    random.Random(0).shuffle(allp)
    return allp[:200], allp[200:400]


def _turn(role, text):
    return {"role": role, "parts": [{"text": text}]}


def _pref_row(prompt, formal_preferred, system=None):
    row = {"contents": [_turn("user", prompt)],
           "completions": [{"score": 1 if formal_preferred else 0, "completion": _turn("model", FORMAL)},
                           {"score": 0 if formal_preferred else 1, "completion": _turn("model", CASUAL)}]}
    if system:
        row["system_instruction"] = {"parts": [{"text": system}]}
    return row


def _jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def _finished(url, name):
    return wait_until(lambda: requests.get(f"{url}/v1/{name}", timeout=30).json(),
                      lambda j: j["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"), timeout=120)


def _create(url, body, ver="v1"):
    return requests.post(f"{url}/{ver}/{PARENT}/tuningJobs", json=body, timeout=30)


def _pref_body(uri, *, source=None, **hp):
    src = {"preTunedModel": {"tunedModelName": source}} if source else {"baseModel": "gemini-2.5-flash"}
    return {**src, "tunedModelDisplayName": unique("dpo"),
            "preferenceOptimizationSpec": {"trainingDatasetUri": uri, "hyperParameters": hp}}


# ------------------------------------------------------------------------------------------------ learner
def test_learner_dpo_moves_preferences_and_beta_zero_learns_nothing():
    train, held = _prompts()
    sft = [L.Example(p, FORMAL) for p, _ in train] + [L.Example(p, CASUAL) for p, _ in train]
    hp = L.HyperParams(epochs=2, batch_size=8, adapter_rank=4, seed=1)
    sft_model, _ = L.train(sft, hp)
    pairs = [L.PreferenceExample(p, FORMAL if f else CASUAL, CASUAL if f else FORMAL) for p, f in train]
    tuned, records = L.train_preference(pairs, L.HyperParams(epochs=3, adapter_rank=4, seed=2), beta=0.1,
                                        init=sft_model)
    assert records[0].loss == pytest.approx(0.6931, abs=1e-3)      # -log sigmoid(0): starts at the reference
    assert records[-1].loss < 0.2
    frozen, _ = L.train_preference(pairs, L.HyperParams(epochs=1, adapter_rank=4, seed=2), beta=0.0, init=sft_model)
    for p, _ in held[:20]:
        assert L.completion_logprobs(frozen, p, [FORMAL, CASUAL]) == pytest.approx(
            L.completion_logprobs(sft_model, p, [FORMAL, CASUAL]), abs=1e-5)
    wins = [(a > b) == f for p, f in held for a, b in [L.completion_logprobs(tuned, p, [FORMAL, CASUAL])]]
    assert sum(wins) / len(wins) >= 0.8


@pytest.mark.parametrize("row, fragment", [
    ({"contents": [_turn("user", "q")]}, "completions"),
    ({**_pref_row("q", True), "contents": [_turn("user", "q"), _turn("model", "a")]}, "end with a user turn"),
    ({**_pref_row("q", True), "completions": _pref_row("q", True)["completions"][:1]}, "exactly two"),
    ({**_pref_row("q", True), "completions": [{"score": 1, "completion": _turn("model", "a")},
                                              {"score": 1, "completion": _turn("model", "b")}]}, "one preferred"),
    ({**_pref_row("q", True), "completions": [{"score": 0.5, "completion": _turn("model", "a")},
                                              {"score": 0, "completion": _turn("model", "b")}]}, "0 or 1"),
    ({**_pref_row("q", True), "completions": [{"score": 1, "completion": _turn("user", "a")},
                                              {"score": 0, "completion": _turn("model", "b")}]}, "role 'model'"),
    ({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}],
      "completions": _pref_row("q", True)["completions"]}, "text"),
])
def test_bad_preference_lines_are_rejected(row, fragment):
    with pytest.raises(ValueError, match=fragment):
        L.preference_example_from_vertex(row)


def test_preference_line_format():
    ex = L.preference_example_from_vertex(_pref_row("What is my favorite fruit?", False, system="You are a bot."))
    assert ex.prompt == "You are a bot.\nWhat is my favorite fruit?"
    assert (ex.chosen, ex.rejected) == (CASUAL, FORMAL)
    float_scores = _pref_row("q", True)
    for c in float_scores["completions"]:
        c["score"] = float(c["score"])          # the tutorial writes 1.0 / 0.0
    assert L.preference_example_from_vertex(float_scores).chosen == FORMAL


# ------------------------------------------------------------------------------------------------ over HTTP
def test_create_validates_the_spec(emulator):
    url = emulator.endpoints.url
    both = {**_pref_body("gs://tuning-data/p.jsonl"), "supervisedTuningSpec": {"trainingDatasetUri": "gs://tuning-data/t.jsonl"}}
    r = _create(url, both)
    assert r.status_code == 400 and "mutually exclusive" in r.json()["error"]["message"]
    r = _create(url, _pref_body("gs://tuning-data/p.jsonl", beta=-0.1))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["fieldViolations"][0]["field"].endswith("hyper_parameters.beta")
    r = _create(url, _pref_body("gs://tuning-data/p.csv"))
    assert r.status_code == 400 and "JSONL" in r.json()["error"]["message"]


def test_bad_line_fails_the_job_with_invalid_argument(emulator, upload):
    url = emulator.endpoints.url
    rows = [_pref_row("a question", True), {"contents": [_turn("user", "x")], "completions": []}]
    r = _create(url, _pref_body(upload(_jsonl(rows))))
    assert r.status_code == 200, r.text
    job = _finished(url, r.json()["name"])
    assert job["state"] == "JOB_STATE_FAILED"
    assert job["error"]["code"] == 3 and "line 2" in job["error"]["message"], job["error"]
    assert "exactly two" in job["error"]["message"]


def test_sft_then_preference_prefers_the_chosen_completions(emulator, upload):
    url = emulator.endpoints.url
    train, held = _prompts()
    # 1. SFT on both replies for every prompt: the SFT model is indifferent between them
    sft_rows = [{"contents": [_turn("user", p), _turn("model", reply)]} for p, _ in train for reply in (FORMAL,
                                                                                                        CASUAL)]
    body = {"baseModel": "gemini-2.5-flash", "tunedModelDisplayName": unique("sft"),
            "supervisedTuningSpec": {"trainingDatasetUri": upload(_jsonl(sft_rows)),
                                     "hyperParameters": {"epochCount": "2", "adapterSize": "ADAPTER_SIZE_FOUR"}}}
    r = _create(url, body)
    assert r.status_code == 200, r.text
    sft_job = _finished(url, r.json()["name"])
    assert sft_job["state"] == "JOB_STATE_SUCCEEDED", sft_job
    sft_model = L.TunedModel.load(emulator.emulator.store.artifact_path(sft_job["name"]))

    # 2. preference tuning from the SFT model (preTunedModel), billing -> formal, gaming -> casual
    pref_uri = upload(_jsonl(_pref_row(p, f) for p, f in train))
    r = _create(url, _pref_body(pref_uri, source=sft_job["tunedModel"]["model"], epochCount="3", beta=0.1))
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["preTunedModel"]["baseModel"] == "gemini-2.5-flash"
    assert created["preferenceOptimizationSpec"]["hyperParameters"] == {
        "epochCount": "3", "learningRateMultiplier": 1.0, "adapterSize": "ADAPTER_SIZE_FOUR", "beta": 0.1}
    assert "supervisedTuningSpec" not in created
    job = _finished(url, created["name"])
    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    stats = job["tuningDataStats"]["preferenceOptimizationDataStats"]
    assert stats["tuningDatasetExampleCount"] == "200" and stats["tuningStepCount"] == "75"   # 3 x ceil(200 / 8)
    assert stats["droppedExampleIndices"] == [] and int(stats["totalBillableTokenCount"]) > 0

    # 3. held-out prompts on which the SFT model was indifferent: the tuned endpoint answers with the preferred reply
    indifferent = [(p, f) for p, f in held
                   if abs(sub(*L.completion_logprobs(sft_model, p, [FORMAL, CASUAL]))) < 0.5]
    assert len(indifferent) >= 40
    wins = 0
    for p, formal in indifferent:
        gen = {"contents": [_turn("user", p)], "generationConfig": {"temperature": 0}}
        out = requests.post(f"{url}/v1/{job['tunedModel']['endpoint']}:generateContent", json=gen, timeout=30).json()
        wins += out["candidates"][0]["content"]["parts"][0]["text"] == (FORMAL if formal else CASUAL)
    assert wins / len(indifferent) >= 0.8, (wins, len(indifferent))


def sub(a: float, b: float) -> float:
    return a - b


def test_preference_on_base_model_with_official_client(emulator, upload):
    """google-genai's PREFERENCE_TUNING method maps to preferenceOptimizationSpec; the emulator accepts it."""
    from google.genai import types

    from harness.clients import genai_vertex_client

    train, _ = _prompts()
    client = genai_vertex_client(emulator.endpoints.url)
    cfg = types.CreateTuningJobConfig(method="PREFERENCE_TUNING", epoch_count=1, beta=0.2)
    job = client.tunings.tune(base_model="gemini-2.5-flash",
                              training_dataset=types.TuningDataset(gcs_uri=upload(_jsonl(_pref_row(p, f)
                                                                                         for p, f in train[:40]))),
                              config=cfg)
    done = wait_until(lambda: client.tunings.get(name=job.name), lambda j: j.has_ended, timeout=120)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.preference_optimization_spec.hyper_parameters.beta == 0.2
