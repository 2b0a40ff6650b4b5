"""The UI's view-building functions over random XCom shapes (hypothesis): whatever a run's XCom, live status or
champion pointer holds, ``views.run_view`` / ``views.overview`` and ``pages`` never raise, the views are strict JSON
(no NaN: the JSON routes use ``allow_nan=False``), the last safety net of ``run_view`` ("internal error") never
fires, and a well-formed run next to the fuzzed one is shown unchanged. The same over the real routes (TestClient,
auth manager): ``tests/integration/test_ui_untrusted.py``."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ui_views import record

from gemini_tuning.ui import pages, views

pytestmark = pytest.mark.fast

KEYS = ("name", "ref", "backend", "url", "state", "sub_state", "progress_percent", "completed_steps", "total_steps",
        "tuned_model", "endpoint", "checkpoints", "checkpoint_id", "step", "epoch", "loss_history",
        "validation_history", "latest_loss", "error_message", "error_code", "continued_from", "n_prompts", "models",
        "challenger", "champion", "summary", "metrics", "per_tag", "error_rate", "results_uri", "best_checkpoint",
        "scores", "score", "metric", "champion_pointer_uri", "pointer_uri", "decision", "rules", "verdict",
        "observed", "threshold", "reason", "details", "status", "model_deleted", "rolled_back", "report_uri",
        "previous", "promoted_at", "run_id", "dag_id", "at", "eta_seconds", "error", "not_fetched", "unreadable",
        "rouge_l_f1", "normalized_match", "policy_hash")
WORDS = ("50", "x", "", "promote", "delete", "no_decision", "vertex", "gemini_api", "JOB_STATE_SUCCEEDED",
         "JOB_STATE_RUNNING", "<script>alert(1)</script>", '"><meta http-equiv=refresh>', "champion_margin",
         "projects/my-project/locations/us-central1/tuningJobs/1", "projects/p/locations/evil.com#/tuningJobs/1",
         "gs://bkt/pipeline/champion.json", "gs://bkt/../x.json", "tunedModels/m/operations/o",
         "threshold:rouge_l_f1", "rouge_l_f1", "https://evil.example/", "\x00", "é" * 3)
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(), st.sampled_from(WORDS),
                 st.text(max_size=12))
JSON = st.recursive(LEAF, lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), kids, max_size=5), max_leaves=16)


def mutate(draw, value, depth: int = 0):
    """``value`` with one spot (anywhere in it, or all of it) replaced by random JSON."""
    if depth > 5 or draw(st.integers(0, 3)) == 0:
        return draw(JSON)
    if isinstance(value, dict):
        key = draw(st.sampled_from(sorted(value) + list(KEYS[:10])))
        return {**value, key: mutate(draw, value.get(key), depth + 1)}
    if isinstance(value, list) and value:
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(draw, value[i], depth + 1), *value[i + 1:]]
    return draw(JSON)


@st.composite
def scenes(draw):
    running = draw(st.booleans())
    rec = (record("r9", finished=False, evaluated=False, promoted=False, tune_state="deferred") if running
           else record("r9"))
    slots = sorted(rec.xcom) + [("delete", "return_value"), ("report", "return_value")]
    for _ in range(draw(st.integers(1, 4))):
        slot = draw(st.sampled_from(slots))
        rec.xcom[slot] = mutate(draw, copy.deepcopy(rec.xcom.get(slot)))
    if draw(st.booleans()):
        rec.conf = mutate(draw, {"gcs_prefix": "gs://bkt/p/", "epochs": 2, "base_model": "gemini"})
        rec.conf = rec.conf if isinstance(rec.conf, dict) else {}
    status = {"name": "n", "backend": "vertex", "state": "JOB_STATE_RUNNING", "progress_percent": 40.0,
              "loss_history": [[1, 1, 2.0]], "checkpoints": [{"checkpoint_id": "1", "step": 1}]}
    live = draw(st.sampled_from([None, "json", "status"]))
    if live == "json":
        live = draw(JSON)
    elif live == "status":
        live = {"at": 1.0, "eta_seconds": 3.0, "status": mutate(draw, status)}
    pointer = {"backend": "vertex", "tuned_model": "projects/my-project/locations/us-central1/models/9@1",
               "promoted_at": "2026-12-01T10:00:00Z", "run_id": "r1", "dag_id": "gemini_tuning_pipeline",
               "metrics": {"rouge_l_f1": 0.8}, "previous": {"tuned_model": "m0"}}
    if draw(st.booleans()):
        pointer = mutate(draw, pointer)
    return rec, live, pointer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=scenes())
def test_the_views_never_raise_and_stay_json(scene):
    rec, live, pointer = scene
    good = record("r1")
    good_view = views.run_view(good)
    fuzzed = views.run_view(rec, live)
    assert "internal error" not in (fuzzed["unreadable"] or "")
    json.dumps(fuzzed, allow_nan=False)
    pages.run_page(fuzzed, ())
    run_views = [good_view, fuzzed]
    views.assign_pipelines(run_views)
    pointers = {v["pipeline"]: pointer for v in run_views}
    out = views.overview(run_views, pointers)
    json.dumps(out, allow_nan=False)
    html = pages.overview_page(out)
    assert "<script>" not in html
    (row,) = [r for p in out["pipelines"] for r in p["runs"] if r["run_id"] == "r1"]
    assert row["unreadable"] is None and row["challenger"] == 0.8 and row["decision"] == "promote"
    assert views.overview([views.restricted_view(rec)], {})["pipelines"][0]["runs"][0]["run_id"] is None
