"""A run may tighten its pipeline's policy, never loosen it (gemini_tuning.pipelines.policy)."""

from __future__ import annotations

import pytest

from gemini_tuning.pipelines.loader import load_file
from gemini_tuning.pipelines.policy import RUN_FIELDS, PolicyViolation, check_conf, run_param_schemas
from harness.paths import ROOT

pytestmark = pytest.mark.fast

INCLUDE = ROOT / "include"


@pytest.fixture
def router():
    return load_file(ROOT / "pipelines" / "router.yaml")


@pytest.fixture
def strict(tmp_path):
    """A pipeline with approval on and every limit set."""
    text = (ROOT / "pipelines" / "router.yaml").read_text()
    text = (text.replace("require_approval: false", "require_approval: true")
            .replace("budget: {max_training_tokens: null, max_cost: null, price_per_million_training_tokens: null}",
                     "budget: {max_training_tokens: 100000, max_cost: 5, price_per_million_training_tokens: 2}")
            .replace("allowed_projects: []", "allowed_projects: [team-project-1]")
            .replace("project: null", "project: main-project-1"))
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "router.yaml").write_text(text)
    (tmp_path / "include").symlink_to(INCLUDE)
    return load_file(folder / "router.yaml")


def violations(pipeline, conf):
    with pytest.raises(PolicyViolation) as info:
        check_conf(pipeline, conf)
    return info.value


LOOSER = {"gate_min_prompts": 19, "gate_min_score": 0.5, "gate_min_margin": -0.1, "gate_confidence": 0.9,
          "gate_pairwise_min_decisive": 9, "gate_max_error_rate": 0.1}
TIGHTER = {"gate_min_prompts": 40, "gate_min_score": 0.8, "gate_min_margin": 0.02, "gate_confidence": 0.99,
           "gate_pairwise_min_decisive": 20, "gate_pairwise_margin": 0.1, "gate_max_error_rate": 0.01}


@pytest.mark.parametrize("name", list(LOOSER))
def test_each_loosened_threshold_is_one_violation(router, name):
    error = violations(router, {name: LOOSER[name]})
    (v,) = error.violations
    assert v.field == name and v.asked == LOOSER[name] and v.policy == router.defaults()[name]
    assert "a run may tighten the policy, not loosen it" in v.rule
    assert f"pipelines/router.yaml: {name}: the policy says" in str(error)


def test_the_brief_message(router):
    assert str(violations(router, {"gate_min_score": 0.0})) == (
        "pipelines/router.yaml: gate_min_score: the policy says >= 0.6, the run asked 0.0 (a run may tighten the "
        "policy, not loosen it)")


def test_tightened_values_are_accepted_and_applied(router):
    effective = check_conf(router, {**TIGHTER, "require_approval": True, "approval_timeout_hours": 24,
                                    "max_training_tokens": 50000})
    for name, value in TIGHTER.items():
        assert effective[name] == value
    assert effective["require_approval"] is True and effective["approval_timeout_hours"] == 24
    assert effective["max_training_tokens"] == 50000       # any limit tightens "no limit"
    assert effective["gcs_prefix"] == "gs://gemini-tuning-demo/router"


def test_values_equal_to_the_policy_are_fine(router):
    assert check_conf(router, router.defaults()) == router.defaults()
    assert check_conf(router, {}) == router.defaults()


def test_limits_and_approval(strict):
    assert {v.field for v in violations(strict, {"require_approval": False}).violations} == {"require_approval"}
    error = violations(strict, {"approval_timeout_hours": None, "max_training_tokens": None, "max_cost": None})
    assert [v.field for v in error.violations] == ["approval_timeout_hours", "max_training_tokens", "max_cost"]
    assert all("null" in v.rule for v in error.violations)
    error = violations(strict, {"approval_timeout_hours": 100, "max_training_tokens": 100001, "max_cost": 5.5})
    assert len(error.violations) == 3
    effective = check_conf(strict, {"approval_timeout_hours": 1, "max_training_tokens": 10, "max_cost": 0.5})
    assert (effective["approval_timeout_hours"], effective["max_training_tokens"], effective["max_cost"]) == (1, 10,
                                                                                                              0.5)


def test_max_cost_needs_the_policy_price(router):
    (v,) = violations(router.__class__(router.spec.model_copy(update={"policy": router.spec.policy.model_copy(
        update={"gate": router.spec.policy.gate.model_copy(update={"pairwise_margin": 0.2})})}), router.file,
        router.revision, router.policy_hash), {"gate_pairwise_margin": 0.1}).violations
    assert v.field == "gate_pairwise_margin" and "not loosen" in v.rule
    (v,) = violations(router, {"max_cost": 3}).violations
    assert v.field == "max_cost" and "price_per_million_training_tokens" in v.rule


@pytest.mark.parametrize("name, value", [
    ("gcs_prefix", "gs://gemini-tuning-demo/replies"), ("gcs_prefix", "gs://gemini-tuning-demo/router/"),
    ("backend", "gemini_api"), ("gate_primary_metric", "exact_match"), ("judge", "both"),
    ("price_per_million_training_tokens", 1.0), ("compare_base_model", 0), ("display_name", "x"),
])
def test_fixed_fields(router, name, value):
    error = violations(router, {name: value})
    (v,) = error.violations
    assert v.field == name and v.asked == value
    assert f"{name} is fixed by pipelines/router.yaml (policy {router.defaults()[name]!r}, asked {value!r})" \
        in str(error)


def test_unknown_keys_are_violations(router):
    (v,) = violations(router, {"gate_thresholds": {"x": 0}}).violations
    assert v.field == "gate_thresholds" and "not a run field" in v.rule


@pytest.mark.parametrize("value", [
    str(INCLUDE / ".." / "README.md"),                               # traversal out of include/
    str(INCLUDE) + "2/x.jsonl",                                       # a sibling that shares the prefix
    "/etc/passwd",
    "gs://gemini-tuning-demo/replies/train.jsonl",                    # another pipeline's gcs_prefix
    "gs://gemini-tuning-demo/router/../replies/train.jsonl",
    "gs://gemini-tuning-demo/router2/train.jsonl",
    "include/demo/train.jsonl",                                       # relative
    "", 3, None,
])
def test_paths_outside_the_roots(router, value):
    (v,) = violations(router, {"training_data": value}).violations
    assert v.field == "training_data"
    if isinstance(value, str) and value.startswith(("/", "gs://")):
        assert "not under an allowed storage root" in v.rule
        assert "gs://gemini-tuning-demo/router" in v.rule and str(INCLUDE) in v.rule     # the roots are named


def test_paths_inside_the_roots(router):
    effective = check_conf(router, {
        "training_data": str(INCLUDE / "demo" / "train_shuffled.jsonl"),
        "eval_prompts": "gs://gemini-tuning-demo/router/sets/eval.jsonl",
        "system_instruction": "Answer with one queue name.",                   # the text itself, not a path
    })
    assert effective["training_data"] == str(INCLUDE / "demo" / "train_shuffled.jsonl")
    assert effective["system_instruction"] == "Answer with one queue name."
    assert check_conf(router, {"training_data": str(INCLUDE / "x" / ".." / "demo" / "t.jsonl")})[
        "training_data"] == str(INCLUDE / "demo" / "t.jsonl")
    (v,) = violations(router, {"system_instruction": "/etc/instruction.txt"}).violations
    assert v.field == "system_instruction"


@pytest.mark.parametrize("name, value, rule", [
    ("gate_min_score", "0.9", "must be a number"), ("gate_min_prompts", "0", "must be a number"),
    ("gate_min_score", True, "must be a number"), ("epochs", "3", "must be a number"),
    ("max_training_tokens", False, "must be a number"), ("gate_min_score", float("nan"), "finite"),
    ("gate_min_score", 1.5, "<= 1"), ("epochs", 0, ">= 1"), ("epochs", 2.5, "integer"),
    ("learning_rate_multiplier", 0, "> 0"), ("gate_confidence", 1, "< 1"),
    ("require_approval", "true", "true or false"),
])
def test_types_are_not_fooled(router, name, value, rule):
    (v,) = violations(router, {name: value}).violations
    assert v.field == name and rule in v.rule


def test_allowed_lists(router, strict):
    assert check_conf(router, {"base_model": "gemini-3.1-flash-lite"})["base_model"] == "gemini-3.1-flash-lite"
    assert {v.field for v in violations(router, {"base_model": "gemini-2.5-pro", "location": "europe-west4",
                                                 "project_id": "other-project"}).violations} == {
        "base_model", "location", "project_id"}
    assert check_conf(strict, {"project_id": "team-project-1"})["project_id"] == "team-project-1"
    assert check_conf(strict, {"project_id": "main-project-1"})["project_id"] == "main-project-1"
    (v,) = violations(strict, {"project_id": None}).violations
    assert v.field == "project_id"


def test_every_violation_is_reported_together(router):
    error = violations(router, {"gate_min_score": 0.1, "gcs_prefix": "gs://x-bucket/y", "epochs": "3",
                                "training_data": "/etc/passwd", "require_approval": True, "location": "us-east1"})
    assert [v.field for v in error.violations] == ["gate_min_score", "gcs_prefix", "epochs", "training_data",
                                                   "location"]
    assert len(str(error).splitlines()) == 5


def test_run_param_schemas_follow_the_policy(router, strict):
    schemas = run_param_schemas(router)
    assert set(schemas) == set(RUN_FIELDS)
    for name, schema in schemas.items():
        assert {"default", "type", "title", "description"} <= set(schema), name
        assert schema["default"] == router.defaults()[name]
        assert set(schema) <= {"default", "type", "title", "description", "minimum", "maximum", "exclusiveMinimum",
                               "exclusiveMaximum", "enum", "examples"}, name
    assert (schemas["gate_min_score"]["minimum"], schemas["gate_min_score"]["maximum"]) == (0.6, 1)
    assert schemas["gate_max_error_rate"]["maximum"] == 0.05
    assert schemas["gate_confidence"]["minimum"] == 0.95 and schemas["gate_confidence"]["exclusiveMaximum"] == 1
    assert schemas["location"]["enum"] == ["us-central1"]
    assert schemas["base_model"]["enum"] == ["gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite"]
    assert "enum" not in schemas["require_approval"]
    assert schemas["max_training_tokens"]["type"] == ["null", "integer"]
    strict_schemas = run_param_schemas(strict)
    assert strict_schemas["require_approval"]["enum"] == [True]
    assert strict_schemas["approval_timeout_hours"]["maximum"] == 72
    assert strict_schemas["max_cost"]["maximum"] == 5 and strict_schemas["max_cost"]["type"] == "number"
    assert strict_schemas["project_id"]["enum"] == ["main-project-1", "team-project-1"]


def test_max_dropped_fraction_may_be_set_and_lowered_never_raised_or_removed(router, tmp_path):
    assert router.defaults()["gate_max_dropped_fraction"] is None           # the demo file: no rule
    assert check_conf(router, {"gate_max_dropped_fraction": 0.02})["gate_max_dropped_fraction"] == 0.02
    text = (ROOT / "pipelines" / "router.yaml").read_text()
    text = text.replace("max_error_rate:", "max_dropped_fraction: 0.05\n    max_error_rate:", 1)
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "router.yaml").write_text(text)
    (tmp_path / "include").symlink_to(INCLUDE)
    locked = load_file(folder / "router.yaml")
    assert locked.defaults()["gate_max_dropped_fraction"] == 0.05
    assert check_conf(locked, {"gate_max_dropped_fraction": 0.01})["gate_max_dropped_fraction"] == 0.01
    for looser in (0.2, None):
        (v,) = violations(locked, {"gate_max_dropped_fraction": looser}).violations
        assert v.field == "gate_max_dropped_fraction" and v.policy == 0.05
