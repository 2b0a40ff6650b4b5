"""Promote / delete (issue 5): the champion pointer in GCS, Model Registry aliases and labels, the safe delete
sequence, against the in-process emulator with real tuned models."""

from __future__ import annotations

import threading

import pytest
import requests

from gemini_tuning.backends.errors import NotFoundError, TuningApiError
from gemini_tuning.backends.gcs import read_json, write_json
from gemini_tuning.backends.gemini_api import GeminiApiTuningBackend
from gemini_tuning.backends.retry import RetryPolicy
from gemini_tuning.backends.vertex_registry import VertexRegistry, split_version
from gemini_tuning.services import champion as ch
from harness.clients import BUCKET, LOCATION, PROJECT, genai_vertex_client
from harness.data import demo_rows, unique
from harness.waits import wait_until

pytestmark = pytest.mark.fast

FAST = RetryPolicy(attempts=4, initial_delay=0.05, max_delay=0.2, total_seconds=20)
KEY = {"x-goog-api-key": "test-key"}
ROLE, RUN, SCOPE = ch.ROLE_LABEL, ch.RUN_LABEL, ch.POINTER_LABEL


# ------------------------------------------------------------------------------------------------ helpers
def _wait(get, done, timeout=120.0, interval=0.2):
    return wait_until(get, done, timeout, interval)


def tune_vertex(url: str, train_uri: str, n: int) -> list[dict]:
    """n real tuned models (jobs started together, then awaited), as tuning results (candidates)."""
    from google.genai import types

    client = genai_vertex_client(url)
    jobs = [client.tunings.tune(base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train_uri),
                                config=types.CreateTuningJobConfig(epoch_count=1, tuned_model_display_name=unique("c")))
            for _ in range(n)]
    out = []
    for job in jobs:
        job = _wait(lambda j=job: client.tunings.get(name=j.name), lambda j: j.has_ended)
        assert job.state == types.JobState.JOB_STATE_SUCCEEDED, job.error
        out.append({"backend": "vertex", "tuned_model": job.tuned_model.model, "endpoint": job.tuned_model.endpoint,
                    "display_name": job.tuned_model_display_name})
    return out


def tune_gemini_api(url: str) -> dict:
    examples = [{"textInput": r["text_input"], "output": r["output"]} for r in demo_rows("seeds_numbers.jsonl")]
    op = requests.post(f"{url}/v1beta/tunedModels", headers=KEY, timeout=10, json={
        "displayName": "champion test", "baseModel": "models/gemini-1.5-flash-001-tuning",
        "tuningTask": {"hyperparameters": {"epochCount": 1, "batchSize": 4, "learningRate": 0.001},
                       "trainingData": {"examples": {"examples": examples}}}}).json()
    _wait(lambda: requests.get(f"{url}/v1/{op['name']}", headers=KEY, timeout=10).json(), lambda o: o.get("done"))
    return {"backend": "gemini_api", "tuned_model": op["metadata"]["tunedModel"], "endpoint": None,
            "display_name": "champion test"}


@pytest.fixture
def registry(emulator):
    from google.auth.credentials import AnonymousCredentials

    return VertexRegistry(PROJECT, LOCATION, AnonymousCredentials(), base_url=emulator.endpoints.url,
                          retry_policy=FAST)


@pytest.fixture
def pointer_uri():
    return f"gs://{BUCKET}/{unique('pipeline')}/champion.json"


def run(n: int, **metrics) -> dict:
    return {"run_id": f"manual__2026-11-0{n}T10:00:00+00:00", "dag_id": "gemini_tuning", "metrics": metrics}


def status_of(url: str, name: str) -> int:
    return requests.get(f"{url}/v1/{name}", timeout=10).status_code


def is_champion_in_registry(registry: VertexRegistry, cand: dict) -> bool:
    mv = registry.get_model(cand["tuned_model"])
    return ch.CHAMPION_ALIAS in mv.version_aliases or mv.labels.get(ROLE) == ch.ROLE_CHAMPION


# ------------------------------------------------------------------------------------------------ unit: pointer shape
def test_pointer_shape_and_previous_is_one_level_deep():
    a = {"backend": "vertex", "tuned_model": "projects/p/locations/l/models/1@1", "endpoint": "projects/p/locations/l/"
         "endpoints/9", "display_name": "a"}
    first = ch.build_pointer(a, run(1, accuracy=0.7), None, now="2026-11-01T10:00:00Z")
    assert list(first) == list(ch.POINTER_FIELDS)
    assert first == {"backend": "vertex", "tuned_model": a["tuned_model"], "endpoint": a["endpoint"],
                     "checkpoint_id": None, "display_name": "a", "base_model": None,
                     "promoted_at": "2026-11-01T10:00:00Z",
                     "run_id": "manual__2026-11-01T10:00:00+00:00", "dag_id": "gemini_tuning",
                     "metrics": {"accuracy": 0.7}, "verdict_id": None, "policy_hash": None, "previous": None}
    b = {"backend": "gemini_api", "tuned_model": "tunedModels/b", "endpoint": None, "display_name": None,
         "metrics": {"accuracy": 0.8}}
    second = ch.build_pointer(b, {"run_id": "r2", "dag_id": "d"}, first)
    third = ch.build_pointer(a, {"run_id": "r3", "dag_id": "d"}, second)
    assert second["metrics"] == {"accuracy": 0.8}                      # from the candidate when run has none
    assert second["previous"] == {k: v for k, v in first.items() if k != "previous"}
    assert "previous" not in third["previous"] and third["previous"]["tuned_model"] == "tunedModels/b"
    assert second["promoted_at"].endswith("Z") and "T" in second["promoted_at"]


def test_candidate_validation_model_identity_and_labels():
    with pytest.raises(ValueError, match="backend"):
        ch.normalize_candidate({"backend": "openai", "tuned_model": "x"})
    with pytest.raises(ValueError, match="Vertex AI model name"):
        ch.normalize_candidate({"backend": "vertex", "tuned_model": "tunedModels/x"})
    with pytest.raises(ValueError, match="Gemini API"):
        ch.normalize_candidate({"backend": "gemini_api", "tuned_model": "projects/p/locations/l/models/1"})
    v = lambda name: {"backend": "vertex", "tuned_model": name}
    assert ch.same_model(v("projects/p/locations/l/models/1@1"), v("projects/123/locations/l/models/1@1"))
    assert not ch.same_model(v("projects/p/locations/l/models/1@1"), v("projects/p/locations/l/models/1@2"))
    assert ch.same_model(v("projects/p/locations/l/models/1"), v("projects/p/locations/l/models/1@2"))  # bare: all
    assert ch.same_model(v("projects/p/locations/l/models/1@champion"), v("projects/p/locations/l/models/1@2"))
    assert not ch.same_model(v("projects/p/locations/l/models/1@1"), v("projects/p/locations/l/models/2@1"))
    assert not ch.same_model(v("projects/p/locations/l/models/1@1"), {"backend": "gemini_api", "tuned_model": "x"})
    assert ch.label_value("manual__2026-11-03T10:00:00+00:00") == "manual__2026-11-03t10-00-00-00-00"
    long = ch.label_value("scheduled__" + "x" * 100)
    assert len(long) == 63 and long != ch.label_value("scheduled__" + "x" * 99)
    assert split_version("projects/p/locations/l/models/1@3") == ("projects/p/locations/l/models/1", "3")


def test_champion_changed_message_names_both_models():
    cur = {"tuned_model": "projects/p/locations/l/models/X@1", "promoted_at": "2026-11-01T10:00:00Z",
           "run_id": "r1", "dag_id": "d"}
    err = ch.ChampionChanged("gs://b/p.json", {"tuned_model": "projects/p/locations/l/models/Y@1"}, cur, 5, 7)
    msg = str(err)
    assert "another run promoted projects/p/locations/l/models/X@1 at 2026-11-01T10:00:00Z" in msg
    assert "this run's model projects/p/locations/l/models/Y@1 was not promoted" in msg
    assert "generation 5, which is now 7" in msg
    assert "was removed" in str(ch.ChampionChanged("gs://b/p.json", {"tuned_model": "Y"}, None, 5, 0))


def test_promote_rejects_bad_input_before_writing(gcs_client, pointer_uri, registry):
    cand = {"backend": "vertex", "tuned_model": f"projects/{PROJECT}/locations/{LOCATION}/models/404@1"}
    with pytest.raises(ValueError, match="needs a VertexRegistry"):
        ch.promote(gcs_client, pointer_uri, cand, expected_generation=0, registry=None, run=run(1))
    with pytest.raises(ValueError, match="run_id"):
        ch.promote(gcs_client, pointer_uri, cand, expected_generation=0, registry=registry, run={})
    with pytest.raises(NotFoundError, match="cannot promote"):
        ch.promote(gcs_client, pointer_uri, cand, expected_generation=0, registry=registry, run=run(1))
    other = {**cand, "tuned_model": f"projects/{PROJECT}/locations/europe-west4/models/1@1"}
    with pytest.raises(ValueError, match="europe-west4"):
        ch.promote(gcs_client, pointer_uri, other, expected_generation=0, registry=registry, run=run(1))
    assert ch.read_champion(gcs_client, pointer_uri) == (None, 0)       # nothing was written


def test_read_champion_absent_and_malformed(gcs_client, pointer_uri):
    assert ch.read_champion(gcs_client, pointer_uri) == (None, 0)
    write_json(gcs_client, pointer_uri, {"hello": "world"}, if_generation_match=0)
    with pytest.raises(ValueError, match="not a champion pointer"):
        ch.read_champion(gcs_client, pointer_uri)


# ------------------------------------------------------------------------------------------------ promote on Vertex
def test_promote_then_promote_again_moves_alias_and_retires(emulator, gcs_client, small_train_uri, registry,
                                                            pointer_uri):
    a, b = tune_vertex(emulator.endpoints.url, small_train_uri, 2)
    scope = ch.pointer_label(pointer_uri)

    champ, gen0 = ch.read_champion(gcs_client, pointer_uri)
    assert (champ, gen0) == (None, 0)
    res = ch.promote(gcs_client, pointer_uri, a, expected_generation=gen0, registry=registry, run=run(1, acc=0.6))
    assert res["status"] == "promoted" and res["previous_champion"] is None
    ptr, gen1 = ch.read_champion(gcs_client, pointer_uri)
    assert gen1 == res["generation"] > 0
    assert ptr["tuned_model"] == a["tuned_model"] and ptr["endpoint"] == a["endpoint"]
    assert ptr["display_name"] == a["display_name"] and ptr["metrics"] == {"acc": 0.6} and ptr["previous"] is None
    assert ptr["backend"] == "vertex" and ptr["dag_id"] == "gemini_tuning" and ptr["run_id"] == run(1)["run_id"]
    ma = registry.get_model(a["tuned_model"])
    assert set(ma.version_aliases) == {"default", "champion"}
    assert ma.labels == {ROLE: "champion", RUN: ch.label_value(run(1)["run_id"]), SCOPE: scope}
    base_a, ver_a = split_version(a["tuned_model"])
    assert registry.get_model(f"{base_a}@champion").version_id == ver_a   # the alias resolves

    res = ch.promote(gcs_client, pointer_uri, b, expected_generation=gen1, registry=registry, run=run(2, acc=0.9))
    assert res["status"] == "promoted" and res["previous_champion"] == a["tuned_model"]
    assert res["registry"]["champion"] == b["tuned_model"] and a["tuned_model"] in res["registry"]["retired"]
    ptr2, gen2 = ch.read_champion(gcs_client, pointer_uri)
    assert gen2 > gen1 and ptr2["tuned_model"] == b["tuned_model"]
    assert ptr2["previous"] == {k: v for k, v in ptr.items() if k != "previous"}
    mb, ma = registry.get_model(b["tuned_model"]), registry.get_model(a["tuned_model"])
    assert "champion" in mb.version_aliases and mb.labels[ROLE] == "champion"
    assert "champion" not in ma.version_aliases and ma.labels[ROLE] == "retired"
    assert ma.labels[RUN] == ch.label_value(run(1)["run_id"])          # which run once promoted it stays
    with pytest.raises(NotFoundError):
        registry.get_model(f"{base_a}@champion")
    assert [m.resource for m in registry.find_models({ROLE: "champion", SCOPE: scope})] == [b["tuned_model"]]

    # a stale labeller (crash window) left A labelled champion: reconcile's sweep retires it again
    registry.set_labels(a["tuned_model"], {ROLE: "champion"})
    registry.set_alias(a["tuned_model"], "champion")
    rec = ch.reconcile(gcs_client, pointer_uri, registry)
    assert a["tuned_model"] in rec["retired"]
    ma = registry.get_model(a["tuned_model"])
    assert ma.labels[ROLE] == "retired" and "champion" not in ma.version_aliases
    # promoting the champion again from the current generation changes nothing
    res = ch.promote(gcs_client, pointer_uri, b, expected_generation=gen2, registry=registry, run=run(3))
    assert res["status"] == "already_champion" and ch.read_champion(gcs_client, pointer_uri)[1] == gen2


def test_promote_resumes_after_crash_between_pointer_and_registry(emulator, gcs_client, small_train_uri, registry,
                                                                  pointer_uri, monkeypatch):
    (a,) = tune_vertex(emulator.endpoints.url, small_train_uri, 1)
    real = ch.reconcile

    def crash(*args, **kwargs):
        raise ConnectionError("worker died after the pointer swap")

    monkeypatch.setattr(ch, "reconcile", crash)
    with pytest.raises(ConnectionError):
        ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=registry, run=run(1))
    ptr, gen = ch.read_champion(gcs_client, pointer_uri)
    assert ptr["tuned_model"] == a["tuned_model"] and not is_champion_in_registry(registry, a)  # the window

    monkeypatch.setattr(ch, "reconcile", real)
    # the task retry passes the same expected generation (0) the evaluation saw: recognised as this run's own
    res = ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=registry, run=run(1))
    assert res["status"] == "already_promoted" and res["generation"] == gen
    assert is_champion_in_registry(registry, a)
    # another run with the same stale generation is still refused
    with pytest.raises(ch.ChampionChanged):
        ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=registry, run=run(2))


# ------------------------------------------------------------------------------------------------ races
def test_race_deterministic_loser_raises_and_is_not_champion(emulator, gcs_client, small_train_uri, registry,
                                                             pointer_uri, monkeypatch):
    a, b, c, d = tune_vertex(emulator.endpoints.url, small_train_uri, 4)

    # 1) both evaluated against "no champion" (generation 0); A promotes first, then B tries
    ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=registry, run=run(1))
    with pytest.raises(ch.ChampionChanged) as err:
        ch.promote(gcs_client, pointer_uri, b, expected_generation=0, registry=registry, run=run(2))
    assert f"another run promoted {a['tuned_model']}" in str(err.value)
    assert f"this run's model {b['tuned_model']} was not promoted" in str(err.value)
    assert not is_champion_in_registry(registry, b) and registry.get_model(b["tuned_model"]).labels == {}
    ptr, gen = ch.read_champion(gcs_client, pointer_uri)
    assert ptr["tuned_model"] == a["tuned_model"] and is_champion_in_registry(registry, a)

    # 2) the compare-and-swap itself decides: D reads the same generation as C, but C writes in between
    real_write = ch.write_json
    calls = []

    def c_sneaks_in(client, uri, obj, *, if_generation_match):
        if not calls:
            calls.append(obj["tuned_model"])
            ch.promote(gcs_client, pointer_uri, c, expected_generation=gen, registry=registry, run=run(3))
        return real_write(client, uri, obj, if_generation_match=if_generation_match)

    monkeypatch.setattr(ch, "write_json", c_sneaks_in)
    with pytest.raises(ch.ChampionChanged, match=f"another run promoted {c['tuned_model']}"):
        ch.promote(gcs_client, pointer_uri, d, expected_generation=gen, registry=registry, run=run(4))
    assert calls == [d["tuned_model"]]                                    # D's write reached the CAS and lost
    ptr, _ = ch.read_champion(gcs_client, pointer_uri)
    assert ptr["tuned_model"] == c["tuned_model"] and ptr["previous"]["tuned_model"] == a["tuned_model"]
    assert not is_champion_in_registry(registry, d) and registry.get_model(d["tuned_model"]).labels == {}
    assert is_champion_in_registry(registry, c)
    assert registry.get_model(a["tuned_model"]).labels[ROLE] == "retired"

    # 3) a stale labeller (crash window) left B, which the pointer never named, labelled champion of this
    #    pipeline: the next reconcile's sweep retires it
    registry.set_labels(b["tuned_model"], {ROLE: "champion", SCOPE: ch.pointer_label(pointer_uri)})
    registry.set_alias(b["tuned_model"], "champion")
    rec = ch.reconcile(gcs_client, pointer_uri, registry)
    assert rec["retired"] == [a["tuned_model"], b["tuned_model"]] and rec["champion"] == c["tuned_model"]
    assert not is_champion_in_registry(registry, b) and is_champion_in_registry(registry, c)
    # ... but not a champion of another pipeline (another pointer) in the same project
    registry.set_labels(d["tuned_model"], {ROLE: "champion", SCOPE: ch.pointer_label(pointer_uri + ".other")})
    assert d["tuned_model"] not in ch.reconcile(gcs_client, pointer_uri, registry)["retired"]
    assert registry.get_model(d["tuned_model"]).labels[ROLE] == "champion"


def test_race_concurrent_threads_exactly_one_wins(emulator, gcs_client, small_train_uri, registry, pointer_uri):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    old, x, y = tune_vertex(emulator.endpoints.url, small_train_uri, 3)
    ch.promote(gcs_client, pointer_uri, old, expected_generation=0, registry=registry, run=run(1))
    _, gen = ch.read_champion(gcs_client, pointer_uri)   # both challengers were evaluated against this

    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def promote(cand, n):
        # each "pipeline" has its own clients, as two Airflow workers would
        gcs = storage.Client(credentials=AnonymousCredentials(), project=PROJECT)
        reg = VertexRegistry(PROJECT, LOCATION, AnonymousCredentials(), base_url=emulator.endpoints.url,
                             retry_policy=FAST)
        barrier.wait()
        try:
            results[cand["tuned_model"]] = ch.promote(gcs, pointer_uri, cand, expected_generation=gen, registry=reg,
                                                      run=run(n))
        except Exception as exc:  # noqa: BLE001
            results[cand["tuned_model"]] = exc

    threads = [threading.Thread(target=promote, args=(cand, n)) for n, cand in ((2, x), (3, y))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # the whole exception (type and message), so a loser that failed for another reason says why
    outcomes = {k: v if isinstance(v, dict) else f"{type(v).__name__}: {v}" for k, v in results.items()}
    winners = [k for k, v in results.items() if isinstance(v, dict)]
    losers = [k for k, v in results.items() if isinstance(v, ch.ChampionChanged)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    winner = x if winners[0] == x["tuned_model"] else y
    loser = y if winner is x else x
    assert results[winner["tuned_model"]]["status"] == "promoted"
    assert f"this run's model {loser['tuned_model']} was not promoted" in str(results[loser["tuned_model"]])
    ptr, _ = ch.read_champion(gcs_client, pointer_uri)
    assert ptr["tuned_model"] == winner["tuned_model"] and ptr["previous"]["tuned_model"] == old["tuned_model"]
    assert is_champion_in_registry(registry, winner)
    assert not is_champion_in_registry(registry, loser) and registry.get_model(loser["tuned_model"]).labels == {}
    assert registry.get_model(old["tuned_model"]).labels[ROLE] == "retired"
    assert "champion" not in registry.get_model(old["tuned_model"]).version_aliases


# ------------------------------------------------------------------------------------------------ delete on Vertex
def test_delete_removes_model_and_endpoint_and_is_idempotent(emulator, gcs_client, small_train_uri, registry,
                                                             pointer_uri):
    url = emulator.endpoints.url
    champ, loser = tune_vertex(url, small_train_uri, 2)
    ch.promote(gcs_client, pointer_uri, champ, expected_generation=0, registry=registry, run=run(1))
    base, _ = split_version(loser["tuned_model"])
    assert status_of(url, base) == 200 and status_of(url, loser["endpoint"]) == 200

    # transient faults on the way are retried (the RPCs and the LRO polls under /ui/)
    faults = emulator.emulator.faults
    faults.add({"kind": "status", "status": 503, "path": r":undeployModel$", "count": 1, "retry_after": 0})
    faults.add({"kind": "status", "status": 429, "path": r"/models/[^/]+$", "method": "DELETE", "count": 1,
                "retry_after": 0})
    faults.add({"kind": "status", "status": 503, "path": r"^/ui/.*/operations/", "count": 2, "retry_after": 0})
    res = ch.delete_candidate(loser, storage_client=gcs_client, pointer_uri=pointer_uri, registry=registry,
                              timeout=60)
    assert [r.hits for r in faults.rules] == [1, 1, 2]
    assert res["model_deleted"] and res["endpoint_deleted"] and not res["already_gone"]
    assert res["undeployed"] == [{"endpoint": loser["endpoint"], "deployed_model_id": res["undeployed"][0]
                                  ["deployed_model_id"]}] and res["undeploy_refused"] == []
    assert res["champion"] == champ["tuned_model"]
    assert status_of(url, base) == 404 and status_of(url, loser["endpoint"]) == 404
    with pytest.raises(NotFoundError):
        registry.get_model(loser["tuned_model"])

    again = ch.delete_candidate(loser, storage_client=gcs_client, pointer_uri=pointer_uri, registry=registry)
    assert again["already_gone"] and not again["model_deleted"] and not again["endpoint_deleted"]
    assert again["undeployed"] == []
    assert is_champion_in_registry(registry, champ)                      # the champion was not touched


def test_delete_refuses_the_champion_and_leaves_it_intact(emulator, gcs_client, small_train_uri, registry,
                                                          pointer_uri):
    url = emulator.endpoints.url
    (champ,) = tune_vertex(url, small_train_uri, 1)
    ch.promote(gcs_client, pointer_uri, champ, expected_generation=0, registry=registry, run=run(1))
    base, _ = split_version(champ["tuned_model"])
    for variant in (champ, {**champ, "tuned_model": base},                            # the bare model: all versions
                    {**champ, "tuned_model": champ["tuned_model"].replace("test-project", "123456")}):
        with pytest.raises(ch.ChampionDeletionRefused, match="current champion"):
            ch.delete_candidate(variant, storage_client=gcs_client, pointer_uri=pointer_uri, registry=registry)
    assert status_of(url, base) == 200 and status_of(url, champ["endpoint"]) == 200
    assert registry.get_model(champ["tuned_model"]).deployed_models
    ep = requests.get(f"{url}/v1/{champ['endpoint']}", timeout=10).json()
    assert len(ep["deployedModels"]) == 1


def test_delete_when_undeploy_is_refused_fails_clearly_then_succeeds(emulator, gcs_client, small_train_uri,
                                                                     registry, pointer_uri):
    url = emulator.endpoints.url
    (cand,) = tune_vertex(url, small_train_uri, 1)
    emulator.emulator.faults.add({"kind": "status", "status": 403, "path": r":undeployModel$", "count": 1,
                                  "message": "Google-managed endpoint"})
    with pytest.raises(TuningApiError, match="still deployed") as err:
        ch.delete_candidate(cand, storage_client=gcs_client, pointer_uri=pointer_uri, registry=registry, timeout=60)
    assert "Google-managed endpoint" in str(err.value) and err.value.code == 400
    assert err.value.status == "FAILED_PRECONDITION"
    base, _ = split_version(cand["tuned_model"])
    assert status_of(url, base) == 200 and status_of(url, cand["endpoint"]) == 200   # nothing half-deleted
    res = ch.delete_candidate(cand, storage_client=gcs_client, pointer_uri=pointer_uri, registry=registry)
    assert res["model_deleted"] and res["endpoint_deleted"]
    assert status_of(url, base) == 404 and status_of(url, cand["endpoint"]) == 404


def test_registry_errors_are_mapped(registry):
    with pytest.raises(NotFoundError) as err:
        registry.get_model(f"projects/{PROJECT}/locations/{LOCATION}/models/424242@1")
    assert err.value.code == 404
    with pytest.raises(ValueError, match="alias"):
        registry.set_alias(f"projects/{PROJECT}/locations/{LOCATION}/models/1@1", "Champion")
    with pytest.raises(ValueError, match="not a Vertex AI model name"):
        registry.get_model("tunedModels/x")
    nothing = registry.delete_tuned_model(f"projects/{PROJECT}/locations/{LOCATION}/models/424242@1", None, timeout=5)
    assert nothing["already_gone"] and not nothing["model_deleted"]


def test_delete_version_only_when_the_model_has_other_versions(emulator, small_train_uri, registry):
    """A tuned version of a parent model (continuous tuning): only that version goes; the default alias moves."""
    url = emulator.endpoints.url
    (cand,) = tune_vertex(url, small_train_uri, 1)
    base, _ = split_version(cand["tuned_model"])
    store = emulator.emulator.store
    model = store.get("models", base)
    v2 = {**model["versions"]["1"], "versionId": "2", "versionAliases": [], "deployedModels": [], "labels": {}}
    model["versions"]["2"] = v2
    store.put("models", base, model)
    res = registry.delete_tuned_model(cand["tuned_model"], cand["endpoint"], timeout=60)
    assert res["model_deleted"] and res["version_only"] and res["endpoint_deleted"]
    left = registry.list_versions(base)
    assert [v.version_id for v in left] == ["2"] and "default" in left[0].version_aliases


def test_default_alias_follows_the_champion_and_never_lands_on_a_loser(emulator, gcs_client, small_train_uri,
                                                                        registry, pointer_uri):
    """Continuous tuning makes versions of one model: promotion moves ``default`` to the champion's version; the
    deletion of a losing version that holds ``default`` hands it to the champion's version, not to the newest."""
    url = emulator.endpoints.url
    (cand,) = tune_vertex(url, small_train_uri, 1)
    base, _ = split_version(cand["tuned_model"])
    store = emulator.emulator.store
    model = store.get("models", base)
    for vid in ("2", "3"):
        model["versions"][vid] = {**model["versions"]["1"], "versionId": vid, "versionAliases": [],
                                  "deployedModels": [], "labels": {}}
    store.put("models", base, model)
    v2 = {**cand, "tuned_model": f"{base}@2", "endpoint": None}
    ch.promote(gcs_client, pointer_uri, v2, expected_generation=0, registry=registry, run=run(1))
    aliases = {v.version_id: set(v.version_aliases) for v in registry.list_versions(base)}
    assert aliases == {"1": set(), "2": {"default", "champion"}, "3": set()}
    # a loser that somehow holds default (someone moved it by hand): deleting it gives default back to the champion
    registry.set_default_version(f"{base}@3")
    res = ch.delete_candidate({**cand, "tuned_model": f"{base}@3", "endpoint": None}, storage_client=gcs_client,
                              pointer_uri=pointer_uri, registry=registry)
    assert res["model_deleted"] and res["version_only"]
    aliases = {v.version_id: set(v.version_aliases) for v in registry.list_versions(base)}
    assert aliases == {"1": set(), "2": {"default", "champion"}}


# ------------------------------------------------------------------------------------------------ Gemini API
def test_gemini_api_promote_and_delete(emulator, gcs_client, pointer_uri):
    url = emulator.endpoints.url
    champ, loser = tune_gemini_api(url), tune_gemini_api(url)
    api = GeminiApiTuningBackend(base_url=url, api_key="test-key", retry_policy=FAST)

    res = ch.promote(gcs_client, pointer_uri, champ, expected_generation=0, registry=None, run=run(1, acc=1.0))
    assert res["status"] == "promoted" and res["registry"] == {"skipped": "no Model Registry (Gemini API backend)"}
    ptr, _ = ch.read_champion(gcs_client, pointer_uri)
    assert ptr["backend"] == "gemini_api" and ptr["tuned_model"] == champ["tuned_model"] and ptr["endpoint"] is None
    with pytest.raises(ch.ChampionChanged):
        ch.promote(gcs_client, pointer_uri, loser, expected_generation=0, registry=None, run=run(2))

    with pytest.raises(ch.ChampionDeletionRefused):
        ch.delete_candidate(champ, storage_client=gcs_client, pointer_uri=pointer_uri, gemini_api=api)
    assert requests.get(f"{url}/v1beta/{champ['tuned_model']}", headers=KEY, timeout=10).status_code == 200

    res = ch.delete_candidate(loser, storage_client=gcs_client, pointer_uri=pointer_uri, gemini_api=api)
    assert res["model_deleted"] and not res["already_gone"] and res["champion"] == champ["tuned_model"]
    assert requests.get(f"{url}/v1beta/{loser['tuned_model']}", headers=KEY, timeout=10).status_code == 404
    again = ch.delete_candidate(loser, storage_client=gcs_client, pointer_uri=pointer_uri, gemini_api=api)
    assert again["already_gone"] and not again["model_deleted"]
    with pytest.raises(ValueError, match="GeminiApiTuningBackend"):
        ch.delete_candidate(loser, storage_client=gcs_client, pointer_uri=pointer_uri)


def test_switching_backend_retires_the_vertex_champion(emulator, gcs_client, small_train_uri, registry, pointer_uri):
    (old,) = tune_vertex(emulator.endpoints.url, small_train_uri, 1)
    ch.promote(gcs_client, pointer_uri, old, expected_generation=0, registry=registry, run=run(1))
    _, gen = read_json(gcs_client, pointer_uri)
    new = tune_gemini_api(emulator.endpoints.url)
    res = ch.promote(gcs_client, pointer_uri, new, expected_generation=gen, registry=registry, run=run(2))
    assert res["status"] == "promoted" and res["registry"]["retired"] == [old["tuned_model"]]
    assert not is_champion_in_registry(registry, old)


# ------------------------------------------------------------------------------------------------ rollback
def rb_run(n: int) -> dict:
    return {"run_id": f"manual__2026-11-1{n}T10:00:00+00:00", "dag_id": "gemini_tuning_rollback"}


def assert_one_champion(registry: VertexRegistry, gcs_client, pointer_uri: str, models: list[dict]) -> dict:
    """Pointer, alias and labels agree: the pointer's model carries alias and champion label, no other does."""
    ptr, _ = ch.read_champion(gcs_client, pointer_uri)
    scope = ch.pointer_label(pointer_uri)
    assert [m.resource for m in registry.find_models({ROLE: "champion", SCOPE: scope})] == [ptr["tuned_model"]]
    for m in models:
        mv = registry.get_model(m["tuned_model"])
        mine = m["tuned_model"] == ptr["tuned_model"]
        assert (ch.CHAMPION_ALIAS in mv.version_aliases) == mine, (m["tuned_model"], mv.version_aliases)
        assert (mv.labels.get(ROLE) == "champion") == mine, (m["tuned_model"], mv.labels)
    base, version = split_version(ptr["tuned_model"])
    assert registry.get_model(f"{base}@champion").version_id == version
    return ptr


def test_rollback_after_two_promotions_restores_the_first(emulator, gcs_client, small_train_uri, registry,
                                                          pointer_uri):
    url = emulator.endpoints.url
    a, b = tune_vertex(url, small_train_uri, 2)
    with pytest.raises(ValueError, match="names no champion"):
        ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1))
    ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=registry, run=run(1, acc=0.6))
    with pytest.raises(ValueError, match="no previous champion"):
        ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1))
    first, gen1 = ch.read_champion(gcs_client, pointer_uri)
    ch.promote(gcs_client, pointer_uri, b, expected_generation=gen1, registry=registry, run=run(2, acc=0.9))
    second, gen2 = ch.read_champion(gcs_client, pointer_uri)

    # a wrong expectation ("to" is not the previous champion) or a stale generation: refused, nothing written
    with pytest.raises(ValueError, match="cannot roll back to"):
        ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1),
                    to=f"projects/{PROJECT}/locations/{LOCATION}/models/424242@1")
    with pytest.raises(ch.RollbackConflict, match=f"moved from generation {gen1} to {gen2}") as err:
        ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1), expected_generation=gen1)
    assert isinstance(err.value, ch.ChampionChanged)
    assert ch.read_champion(gcs_client, pointer_uri) == (second, gen2)

    res = ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1), to=a["tuned_model"],
                      expected_generation=gen2, now="2026-11-11T10:00:00Z")
    assert res["status"] == "rolled_back" and res["rolled_back"] == b["tuned_model"]
    assert res["registry"]["champion"] == a["tuned_model"] and b["tuned_model"] in res["registry"]["retired"]
    ptr, gen3 = ch.read_champion(gcs_client, pointer_uri)
    assert gen3 == res["generation"] > gen2
    assert ptr["tuned_model"] == a["tuned_model"] and ptr["endpoint"] == a["endpoint"] and ptr["via"] == "rollback"
    assert ptr["metrics"] == {"acc": 0.6}                              # what it was promoted with
    assert (ptr["run_id"], ptr["dag_id"], ptr["promoted_at"]) == (rb_run(1)["run_id"], "gemini_tuning_rollback",
                                                                  "2026-11-11T10:00:00Z")
    assert ptr["restored"] == {"run_id": run(1)["run_id"], "dag_id": "gemini_tuning",
                               "promoted_at": first["promoted_at"]}
    assert ptr["previous"] == {k: v for k, v in second.items() if k != "previous"}   # the rolled-back one
    assert_one_champion(registry, gcs_client, pointer_uri, [a, b])
    ma, mb = registry.get_model(a["tuned_model"]), registry.get_model(b["tuned_model"])
    assert ma.labels[ROLE] == "champion" and ma.labels[RUN] == ch.label_value(rb_run(1)["run_id"])
    assert mb.labels[ROLE] == "retired" and mb.labels[RUN] == ch.label_value(run(2)["run_id"])
    assert status_of(url, split_version(b["tuned_model"])[0]) == 200 and status_of(url, b["endpoint"]) == 200  # kept

    # idempotent: the task's retry finds its own pointer and only reconciles
    again = ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1), expected_generation=gen2)
    assert again["status"] == "already_rolled_back" and again["generation"] == gen3
    assert again["rolled_back"] == b["tuned_model"] and ch.read_champion(gcs_client, pointer_uri)[1] == gen3
    # "to" naming the champion already: nothing to do
    same = ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(2), to=a["tuned_model"])
    assert same["status"] == "already_champion" and ch.read_champion(gcs_client, pointer_uri)[1] == gen3
    # a rollback of the rollback (another run) restores B: a roll-forward; the pointer stays one level deep
    back = ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(3))
    assert back["status"] == "rolled_back" and back["champion"]["tuned_model"] == b["tuned_model"]
    ptr, _ = ch.read_champion(gcs_client, pointer_uri)
    assert ptr["restored"]["run_id"] == run(2)["run_id"] and ptr["previous"]["tuned_model"] == a["tuned_model"]
    assert "previous" not in ptr["previous"] and ptr["previous"]["via"] == "rollback"
    assert_one_champion(registry, gcs_client, pointer_uri, [a, b])
    # the rollback of run 1, retried now, sees its pointer replaced: superseded, nothing changes
    late = ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1))
    assert late["status"] == "superseded" and late["superseded_by"] == b["tuned_model"]
    assert ch.read_champion(gcs_client, pointer_uri)[0] == ptr


def test_rollback_resumes_after_crash_and_refuses_a_vanished_model(emulator, gcs_client, small_train_uri, registry,
                                                                   pointer_uri, monkeypatch):
    a, b, c = tune_vertex(emulator.endpoints.url, small_train_uri, 3)
    ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=registry, run=run(1))
    _, gen = ch.read_champion(gcs_client, pointer_uri)
    ch.promote(gcs_client, pointer_uri, b, expected_generation=gen, registry=registry, run=run(2))
    real = ch.reconcile

    def crash(*args, **kwargs):
        raise ConnectionError("worker died after the pointer swap")

    monkeypatch.setattr(ch, "reconcile", crash)
    with pytest.raises(ConnectionError):
        ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1))
    ptr, gen = ch.read_champion(gcs_client, pointer_uri)
    assert ptr["tuned_model"] == a["tuned_model"] and is_champion_in_registry(registry, b)   # the window
    monkeypatch.setattr(ch, "reconcile", real)
    res = ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1))
    assert res["status"] == "already_rolled_back" and res["generation"] == gen
    assert_one_champion(registry, gcs_client, pointer_uri, [a, b])

    # the previous champion was deleted meanwhile (by hand): refused before anything is written
    ch.promote(gcs_client, pointer_uri, c, expected_generation=gen, registry=registry, run=run(3))
    ptr, gen = ch.read_champion(gcs_client, pointer_uri)
    with pytest.raises(ch.ChampionDeletionRefused, match="previous champion, the rollback target"):
        ch.delete_candidate(a, storage_client=gcs_client, pointer_uri=pointer_uri, registry=registry, timeout=60)
    registry.delete_tuned_model(a["tuned_model"], a["endpoint"], timeout=60)      # by hand, behind the pipeline
    with pytest.raises(NotFoundError, match="cannot roll back to"):
        ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(2))
    assert ch.read_champion(gcs_client, pointer_uri) == (ptr, gen)
    assert_one_champion(registry, gcs_client, pointer_uri, [b, c])


def test_rollback_and_promotion_deterministic_interleavings(emulator, gcs_client, small_train_uri, registry,
                                                            pointer_uri, monkeypatch):
    a, b, c, d = tune_vertex(emulator.endpoints.url, small_train_uri, 4)
    ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=registry, run=run(1))
    _, gen = ch.read_champion(gcs_client, pointer_uri)
    ch.promote(gcs_client, pointer_uri, b, expected_generation=gen, registry=registry, run=run(2))
    _, gen = ch.read_champion(gcs_client, pointer_uri)
    real_write = ch.write_json

    # 1) the promotion of C reaches the swap while the rollback reads the same generation: the rollback loses
    def promotion_sneaks_in(client, uri, obj, *, if_generation_match):
        if obj.get("via") == "rollback":
            monkeypatch.setattr(ch, "write_json", real_write)
            ch.promote(gcs_client, pointer_uri, c, expected_generation=gen, registry=registry, run=run(3))
        return real_write(client, uri, obj, if_generation_match=if_generation_match)

    monkeypatch.setattr(ch, "write_json", promotion_sneaks_in)
    with pytest.raises(ch.RollbackConflict, match=f"now: {c['tuned_model']}"):
        ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(1))
    ptr = assert_one_champion(registry, gcs_client, pointer_uri, [a, b, c])
    assert ptr["tuned_model"] == c["tuned_model"] and ptr["previous"]["tuned_model"] == b["tuned_model"]
    _, gen = ch.read_champion(gcs_client, pointer_uri)

    # 2) a rollback reaches the swap while D's promotion (evaluated against C) writes: the promotion loses
    def rollback_sneaks_in(client, uri, obj, *, if_generation_match):
        if obj.get("tuned_model") == d["tuned_model"]:
            monkeypatch.setattr(ch, "write_json", real_write)
            ch.rollback(gcs_client, pointer_uri, registry=registry, run=rb_run(2), expected_generation=gen)
        return real_write(client, uri, obj, if_generation_match=if_generation_match)

    monkeypatch.setattr(ch, "write_json", rollback_sneaks_in)
    with pytest.raises(ch.ChampionChanged, match=f"rolled the champion back to {b['tuned_model']}") as err:
        ch.promote(gcs_client, pointer_uri, d, expected_generation=gen, registry=registry, run=run(4))
    assert not isinstance(err.value, ch.RollbackConflict)
    ptr = assert_one_champion(registry, gcs_client, pointer_uri, [a, b, c, d])
    assert ptr["tuned_model"] == b["tuned_model"] and ptr["previous"]["tuned_model"] == c["tuned_model"]
    assert registry.get_model(d["tuned_model"]).labels == {}          # the loser was never labelled


def test_rollback_racing_a_promotion_threads_exactly_one_champion(emulator, gcs_client, small_train_uri, registry,
                                                                  pointer_uri):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    first, second, challenger = tune_vertex(emulator.endpoints.url, small_train_uri, 3)
    ch.promote(gcs_client, pointer_uri, first, expected_generation=0, registry=registry, run=run(1))
    _, gen = ch.read_champion(gcs_client, pointer_uri)
    ch.promote(gcs_client, pointer_uri, second, expected_generation=gen, registry=registry, run=run(2))
    _, gen = ch.read_champion(gcs_client, pointer_uri)   # both the rollback and the challenger start from this

    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def clients():
        return (storage.Client(credentials=AnonymousCredentials(), project=PROJECT),
                VertexRegistry(PROJECT, LOCATION, AnonymousCredentials(), base_url=emulator.endpoints.url,
                               retry_policy=FAST))

    def do(name, fn):
        gcs, reg = clients()
        barrier.wait()
        try:
            results[name] = fn(gcs, reg)
        except Exception as exc:  # noqa: BLE001
            results[name] = exc

    threads = [
        threading.Thread(target=do, args=("rollback", lambda g, r: ch.rollback(
            g, pointer_uri, registry=r, run=rb_run(1), expected_generation=gen))),
        threading.Thread(target=do, args=("promote", lambda g, r: ch.promote(
            g, pointer_uri, challenger, expected_generation=gen, registry=r, run=run(3)))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # the whole exception (type and message), so a loser that failed for another reason says why
    outcomes = {k: v if isinstance(v, dict) else f"{type(v).__name__}: {v}" for k, v in results.items()}
    winners = [k for k, v in results.items() if isinstance(v, dict)]
    losers = [k for k, v in results.items() if isinstance(v, ch.ChampionChanged)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    ptr = assert_one_champion(registry, gcs_client, pointer_uri, [first, second, challenger])
    assert ptr["previous"]["tuned_model"] == second["tuned_model"]
    if winners == ["rollback"]:
        assert results["rollback"]["status"] == "rolled_back" and ptr["tuned_model"] == first["tuned_model"]
        assert ptr["via"] == "rollback" and registry.get_model(challenger["tuned_model"]).labels == {}
    else:
        assert results["promote"]["status"] == "promoted" and ptr["tuned_model"] == challenger["tuned_model"]
        assert isinstance(results["rollback"], ch.RollbackConflict) and "via" not in ptr
        assert registry.get_model(first["tuned_model"]).labels[ROLE] == "retired"
    assert registry.get_model(second["tuned_model"]).labels[ROLE] == "retired"


def test_gemini_api_rollback(emulator, gcs_client, pointer_uri):
    url = emulator.endpoints.url
    a, b = tune_gemini_api(url), tune_gemini_api(url)
    ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=None, run=run(1))
    _, gen = ch.read_champion(gcs_client, pointer_uri)
    ch.promote(gcs_client, pointer_uri, b, expected_generation=gen, registry=None, run=run(2))
    api = GeminiApiTuningBackend(base_url=url, api_key="test-key", retry_policy=FAST)
    with pytest.raises(ValueError, match="needs a GeminiApiTuningBackend"):
        ch.rollback(gcs_client, pointer_uri, registry=None, run=rb_run(1), to=a["tuned_model"])
    res = ch.rollback(gcs_client, pointer_uri, registry=None, run=rb_run(1), to=a["tuned_model"], gemini_api=api)
    assert res["status"] == "rolled_back" and res["registry"] == {"skipped": "no Model Registry (Gemini API backend)"}
    ptr, _ = ch.read_champion(gcs_client, pointer_uri)
    assert ptr["tuned_model"] == a["tuned_model"] and ptr["previous"]["tuned_model"] == b["tuned_model"]
    assert requests.get(f"{url}/v1beta/{b['tuned_model']}", headers=KEY, timeout=10).status_code == 200


def test_gemini_api_rollback_refuses_a_target_that_is_gone(emulator, gcs_client, pointer_uri):
    """The rollback target was deleted behind the pipeline's back: refused before the pointer is written."""
    url = emulator.endpoints.url
    api = GeminiApiTuningBackend(base_url=url, api_key="test-key", retry_policy=FAST)
    a, b = tune_gemini_api(url), tune_gemini_api(url)
    ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=None, run=run(1))
    _, gen = ch.read_champion(gcs_client, pointer_uri)
    ch.promote(gcs_client, pointer_uri, b, expected_generation=gen, registry=None, run=run(2))
    assert api.delete(a["tuned_model"])
    _, before = ch.read_champion(gcs_client, pointer_uri)
    with pytest.raises(NotFoundError, match=f"cannot roll back to {a['tuned_model']}: the Gemini API has no such"):
        ch.rollback(gcs_client, pointer_uri, registry=None, run=rb_run(1), gemini_api=api)
    ptr, after = ch.read_champion(gcs_client, pointer_uri)
    assert after == before and ptr["tuned_model"] == b["tuned_model"]


def test_the_rollback_target_is_protected_from_deletion(emulator, gcs_client, pointer_uri):
    url = emulator.endpoints.url
    api = GeminiApiTuningBackend(base_url=url, api_key="test-key", retry_policy=FAST)
    a, b = tune_gemini_api(url), tune_gemini_api(url)
    ch.promote(gcs_client, pointer_uri, a, expected_generation=0, registry=None, run=run(1))
    _, gen = ch.read_champion(gcs_client, pointer_uri)
    ch.promote(gcs_client, pointer_uri, b, expected_generation=gen, registry=None, run=run(2))
    with pytest.raises(ch.ChampionDeletionRefused, match="it is the previous champion, the rollback target"):
        ch.delete_candidate(a, storage_client=gcs_client, pointer_uri=pointer_uri, gemini_api=api)
    assert requests.get(f"{url}/v1beta/{a['tuned_model']}", headers=KEY, timeout=10).status_code == 200
