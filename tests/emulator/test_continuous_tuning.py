"""Continuous tuning (``preTunedModel``) and per-epoch checkpoints on the emulator, through the official clients.

The emulator warm-starts the learner from the pre-tuned model's checkpoint and registers the result as the next
version of the same Model Registry model; every checkpoint is served from its own endpoint with the weights of
its epoch.
"""

from __future__ import annotations

import json
import warnings

import pytest
import requests

from emulator import learner
from harness.clients import BUCKET, LOCATION, PROJECT, gapic_kwargs, genai_vertex_client
from harness.data import unique
from harness.paths import DEMO
from harness.waits import wait_until

pytestmark = pytest.mark.fast

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SYSTEM = (DEMO / "system_instruction.txt").read_text().strip()


def rows(name: str) -> list[dict]:
    return [json.loads(x) for x in (DEMO / name).read_text().splitlines() if x.strip()]


def jsonl(items) -> str:
    return "".join(json.dumps(r) + "\n" for r in items)


def tune(client, source: str, train_uri: str, *, epochs: int, display: str, checkpoint: str | None = None):
    from google.genai import types

    cfg = types.CreateTuningJobConfig(epoch_count=epochs, tuned_model_display_name=display,
                                      pre_tuned_model_checkpoint_id=checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return client.tunings.tune(base_model=source, training_dataset=types.TuningDataset(gcs_uri=train_uri),
                                   config=cfg)


def finished(url: str, name: str) -> dict:
    return wait_until(lambda: requests.get(f"{url}/v1/{name}", timeout=10).json(),
                      lambda j: j["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"), timeout=120)


def accuracy(url: str, endpoint: str, prompts: list[dict]) -> float:
    hits = 0
    for p in prompts:
        body = {"contents": [{"role": "user", "parts": [{"text": p["prompt"]}]}],
                "systemInstruction": {"parts": [{"text": SYSTEM}]}, "generationConfig": {"temperature": 0}}
        out = requests.post(f"{url}/v1/{endpoint}:generateContent", json=body, timeout=10).json()
        hits += out["candidates"][0]["content"]["parts"][0]["text"] == p["reference"]
    return hits / len(prompts)


@pytest.fixture(scope="module")
def champion(emulator_server):
    """A model tuned from the base model on the first half of the demo set: 3 epochs, 3 checkpoints."""
    url, gcs = emulator_server.endpoints.url, emulator_server.endpoints.gcs_url
    train = rows("train.jsonl")
    uris = {}
    for key, part in (("a", train[:180]), ("b", train[180:])):
        name = f"continuous/{unique(key)}.jsonl"
        requests.post(f"{gcs}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name},
                      data=jsonl(part).encode(), timeout=30).raise_for_status()
        uris[key] = f"gs://{BUCKET}/{name}"
    client = genai_vertex_client(url)
    display = unique("router")
    job = finished(url, tune(client, "gemini-2.5-flash", uris["a"], epochs=3, display=display).name)
    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    return {"url": url, "client": client, "job": job, "uris": uris, "display": display}


def test_checkpoints_have_endpoints_of_their_own_and_really_differ(champion):
    url, job = champion["url"], champion["job"]
    ckpts = job["tunedModel"]["checkpoints"]
    assert [c["checkpointId"] for c in ckpts] == ["1", "2", "3"]
    assert [c["epoch"] for c in ckpts] == ["1", "2", "3"]
    assert len({c["endpoint"] for c in ckpts}) == 3 and ckpts[-1]["endpoint"] == job["tunedModel"]["endpoint"]
    model = requests.get(f"{url}/v1/{job['tunedModel']['model']}", timeout=10).json()
    assert model["defaultCheckpointId"] == "3"
    assert all(set(c) == {"checkpointId", "epoch", "step"} for c in model["checkpoints"])   # no endpoint on a Model
    endpoint = requests.get(f"{url}/v1/{ckpts[0]['endpoint']}", timeout=10).json()
    assert endpoint["deployedModels"][0]["checkpointId"] == "1"
    prompts = rows("eval_prompts.jsonl")[:40]
    first, last = (accuracy(url, c["endpoint"], prompts) for c in (ckpts[0], ckpts[-1]))
    assert first != last      # epoch 1's weights are not epoch 3's


def test_continuous_tuning_makes_the_next_version_of_the_same_model(champion):
    url, client, job = champion["url"], champion["client"], champion["job"]
    parent_version = job["tunedModel"]["model"]                     # .../models/M@1
    model_name = parent_version.split("@")[0]
    new = tune(client, parent_version, champion["uris"]["b"], epochs=1, display=champion["display"], checkpoint="2")
    assert new.pre_tuned_model.tuned_model_name == parent_version and new.pre_tuned_model.checkpoint_id == "2"
    done = finished(url, new.name)
    assert done["state"] == "JOB_STATE_SUCCEEDED", done
    assert "baseModel" not in done                                   # oneof source_model
    assert done["preTunedModel"] == {"tunedModelName": parent_version, "checkpointId": "2",
                                     "baseModel": "gemini-2.5-flash"}
    assert done["tunedModel"]["model"] == f"{model_name}@2"
    versions = requests.get(f"{url}/v1/{model_name}:listVersions", timeout=10).json()["models"]
    assert [v["versionId"] for v in versions] == ["1", "2"]
    assert "default" in versions[0]["versionAliases"] and "default" not in versions[1]["versionAliases"]
    # warm start: one epoch on the new batch is at least as good as the champion's 3 epochs on the first one
    prompts = rows("eval_prompts.jsonl")
    assert accuracy(url, done["tunedModel"]["endpoint"], prompts) >= accuracy(url, job["tunedModel"]["endpoint"],
                                                                              prompts)


def test_gapic_create_with_pre_tuned_model_and_a_new_display_name_makes_a_new_model(champion):
    from google.cloud import aiplatform_v1

    tuning = aiplatform_v1.GenAiTuningServiceClient(**gapic_kwargs(champion["url"]))
    created = tuning.create_tuning_job(parent=PARENT, tuning_job=aiplatform_v1.TuningJob(
        pre_tuned_model=aiplatform_v1.PreTunedModel(tuned_model_name=champion["job"]["tunedModel"]["model"]),
        tuned_model_display_name=unique("other"),
        supervised_tuning_spec=aiplatform_v1.SupervisedTuningSpec(
            training_dataset_uri=champion["uris"]["b"],
            hyper_parameters=aiplatform_v1.SupervisedHyperParameters(epoch_count=1))))
    assert created.pre_tuned_model.checkpoint_id == "3"             # the version's default checkpoint
    done = finished(champion["url"], created.name)
    assert done["tunedModel"]["model"].endswith("@1")
    assert done["tunedModel"]["model"].split("@")[0] != champion["job"]["tunedModel"]["model"].split("@")[0]


@pytest.mark.parametrize("pre, code, field", [
    ({"tunedModelName": f"{PARENT}/models/404404"}, 404, None),
    ({"tunedModelName": "PLACEHOLDER@7"}, 404, None),
    ({"tunedModelName": "PLACEHOLDER@1", "checkpointId": "9"}, 400, "tuning_job.pre_tuned_model.checkpoint_id"),
    ({"tunedModelName": "models/nope"}, 400, "tuning_job.pre_tuned_model.tuned_model_name"),
])
def test_bad_pre_tuned_models_get_googles_errors(champion, pre, code, field):
    model = champion["job"]["tunedModel"]["model"].split("@")[0]
    pre = {k: v.replace("PLACEHOLDER", model) for k, v in pre.items()}
    body = {"preTunedModel": pre, "supervisedTuningSpec": {"trainingDatasetUri": champion["uris"]["b"]}}
    resp = requests.post(f"{champion['url']}/v1/{PARENT}/tuningJobs", json=body, timeout=10)
    assert resp.status_code == code, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and err["status"] == ("NOT_FOUND" if code == 404 else "INVALID_ARGUMENT")
    if field:
        assert err["details"][0]["fieldViolations"][0]["field"] == field


def test_base_model_and_pre_tuned_model_are_one_of(champion):
    pre = {"tunedModelName": champion["job"]["tunedModel"]["model"]}
    body = {"baseModel": "gemini-2.5-flash", "preTunedModel": pre,
            "supervisedTuningSpec": {"trainingDatasetUri": champion["uris"]["b"]}}
    resp = requests.post(f"{champion['url']}/v1/{PARENT}/tuningJobs", json=body, timeout=10)
    assert resp.status_code == 400 and "mutually exclusive" in resp.json()["error"]["message"]


def test_default_checkpoint_is_patchable_and_serves_batch_predictions(champion):
    from google.cloud import aiplatform_v1
    from google.protobuf import field_mask_pb2

    models = aiplatform_v1.ModelServiceClient(**gapic_kwargs(champion["url"]))
    name = champion["job"]["tunedModel"]["model"]
    updated = models.update_model(model=aiplatform_v1.Model(name=name, default_checkpoint_id="1"),
                                  update_mask=field_mask_pb2.FieldMask(paths=["default_checkpoint_id"]))
    assert updated.default_checkpoint_id == "1"
    with pytest.raises(Exception, match="does not exist"):
        models.update_model(model=aiplatform_v1.Model(name=name, default_checkpoint_id="42"),
                            update_mask=field_mask_pb2.FieldMask(paths=["default_checkpoint_id"]))
    models.update_model(model=aiplatform_v1.Model(name=name, default_checkpoint_id="3"),
                        update_mask=field_mask_pb2.FieldMask(paths=["default_checkpoint_id"]))


def test_learner_warm_start_keeps_what_it_knew():
    """The learner itself: a warm start answers like its initial model before any step, and keeps its classes."""
    train = [learner.example_from_vertex(r) for r in rows("train.jsonl")]
    init, _ = learner.train(train[:180], learner.HyperParams(epochs=3, seed=1))
    snaps = []
    cont, _ = learner.train(train[180:200], learner.HyperParams(epochs=1, seed=2), init=init,
                            on_epoch=lambda e, m: snaps.append((e, m)))
    assert cont.outputs[: len(init.outputs)] == init.outputs and [e for e, _ in snaps] == [1]
    with pytest.raises(ValueError, match="adapter rank"):
        learner.train(train[:10], learner.HyperParams(epochs=1, adapter_rank=8), init=init)
