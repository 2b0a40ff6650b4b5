"""Pipeline files: schema, cross-field rules, line numbers, hashes (gemini_tuning.pipelines.spec / .loader)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from gemini_tuning.pipelines.loader import Pipeline, PipelineFileError, load_file, load_folder
from harness.paths import PIPELINE_FILES, ROOT

pytestmark = pytest.mark.fast

BROKEN = PIPELINE_FILES / "broken"

# file name -> (field path, a fragment of the rule, line or None)
EXPECTED = {
    "syntax_error.yaml": ("", "YAML syntax error", 4),
    "unknown_key.yaml": ("tuning.epoch", "unknown key 'epoch'", 10),
    "wrong_type.yaml": ("tuning.epochs", "valid integer", 10),
    "out_of_range.yaml": ("policy.gate.min_score", "less than or equal to 1", 11),
    "bad_cron.yaml": ("schedule", "cron hour field '25'", 9),
    "id_mismatch.yaml": ("id", "must equal the file's name", 1),
    "prefix_outside.yaml": ("storage.gcs_prefix", "not under an allowed storage root", 4),
    "location_not_allowed.yaml": ("google.location", "not in policy.allowed_locations", 3),
    "cost_no_price.yaml": ("policy.budget.max_cost", "needs price_per_million_training_tokens", 10),
    "good_a.yml": ("id", "duplicate id 'good_a'", 1),
}


def test_broken_folder_gives_one_error_per_broken_file_and_the_good_files_load():
    result = load_folder(BROKEN)
    by_file = {os.path.basename(e.file): e for e in result.errors}
    assert sorted(by_file) == sorted(EXPECTED)
    assert len(result.errors) == 10
    for name, (field, fragment, line) in EXPECTED.items():
        errors = by_file[name].errors
        assert len(errors) == 1, (name, [str(e) for e in errors])
        (error,) = errors
        assert error.field == field, name
        assert fragment in error.rule, (name, error.rule)
        assert error.line == line, (name, error.line)
        assert str(error).startswith(f"{error.file}:{line}: {field}: "), str(error)
        assert name in error.file
    assert [p.spec.id for p in result.pipelines] == ["good_a", "good_b"]
    good_b = result.pipelines[1]
    assert good_b.spec.policy.require_approval is True
    assert good_b.spec.schedule.asset == "new_data" and good_b.spec.schedule.cron is None
    assert good_b.spec.notifications.smtp.to == ["team@example.com"]
    # relative data paths and storage roots resolve against the file's folder
    assert good_b.spec.data.training_data == str(BROKEN / "data" / "train.jsonl")
    assert str(BROKEN / "data") in good_b.spec.policy.allowed_storage_roots


def test_pipeline_file_error_str_is_one_error_per_line(tmp_path):
    path = tmp_path / "multi.yaml"
    path.write_text("id: multi\n"
                    "google: {backend: vertexx, location: 'x@evil.example/'}\n"
                    "storage: {gcs_prefix: gs://bucket-a/multi}\n"
                    "data: {training_data: /elsewhere/t.jsonl, eval_prompts: 3}\n"
                    "tuning: {epochs: true, adapter_size: 3}\n"
                    "policy:\n"
                    "  gate: {confidence: 0.5, primary_metric: nope}\n"
                    "  allowed_storage_roots: [gs://bucket-a/multi]\n")
    with pytest.raises(PipelineFileError) as info:
        load_file(path)
    errors = {e.field: e for e in info.value.errors}
    # every error of the file at once, the cross-field rule too (its sections validated)
    assert set(errors) == {"google.backend", "google.location", "data.eval_prompts", "tuning.epochs",
                           "tuning.adapter_size", "policy.gate.confidence", "policy.gate.primary_metric"}
    assert errors["tuning.epochs"].line == 5
    assert errors["policy.gate.confidence"].line == 7
    assert "region" in errors["google.location"].rule
    assert str(info.value).count("\n") == len(info.value.errors) - 1
    assert info.value.file == str(path)


def test_cross_field_rules_are_reported_all_at_once(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("id: rules\n"
                    "google: {location: europe-west4, base_model: gemini-9-pro}\n"
                    "storage: {gcs_prefix: gs://bucket-b/rules}\n"
                    "data: {training_data: ../../../etc/t.jsonl, eval_prompts: gs://bucket-b/other/e.jsonl,\n"
                    "       system_instruction: Answer tersely.}\n"
                    "policy:\n"
                    "  allowed_storage_roots: [gs://bucket-b/rules, .]\n"
                    "  allowed_locations: [us-central1]\n"
                    "  allowed_base_models: [gemini-3.5-flash]\n"
                    "  budget: {max_cost: 5}\n")
    with pytest.raises(PipelineFileError) as info:
        load_file(path)
    fields = sorted(e.field for e in info.value.errors)
    assert fields == ["data.eval_prompts", "data.training_data", "google.base_model", "google.location",
                      "policy.budget.max_cost"]
    line = {e.field: e.line for e in info.value.errors}
    assert line["data.training_data"] == 4 and line["policy.budget.max_cost"] == 10


@pytest.mark.parametrize("text, field, fragment", [
    ("- a\n- b\n", "", "mapping of sections"),
    ("", "", "empty"),
    ("id: x\n", "google", "is required"),
    ("id: Bad\n", "id", "lowercase letter"),
    ("id: d\nid: d\n", "id", "duplicate key"),
    ("schedule: 5\n", "schedule", "expected a cron string"),
    ("schedule: {foo: 1}\n", "schedule.foo", "unknown key"),
    ("schedule: '* * *'\n", "schedule", "5 fields"),
    ("storage: {gcs_prefix: 'gs://bucket-c/../x'}\n", "storage.gcs_prefix", "'..'"),
    ("tuning: {poll_policy: {min_seconds: 100, max_seconds: 10}}\n", "tuning.poll_policy", "min_seconds"),
    ("access: {team: [read, delete]}\n", "access.team.1", "'read', 'trigger' or 'approve'"),
    ("evaluation: {rpm: '600'}\n", "evaluation.rpm", "valid number"),
    ("policy: {gate: {min_prompts: 0}}\n", "policy.gate.min_prompts", "greater than or equal to 1"),
    ("google: {project: Bad_Project}\n", "google.project", "project id"),
])
def test_field_rules(tmp_path, text, field, fragment):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(PipelineFileError) as info:
        load_file(path)
    matching = [e for e in info.value.errors if e.field == field]
    assert matching, [str(e) for e in info.value.errors]
    assert any(fragment in e.rule for e in matching), [str(e) for e in matching]


def _copy_router(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    shutil.copy(ROOT / "pipelines" / "router.yaml", folder / "router.yaml")
    os.symlink(ROOT / "include", tmp_path / "include")
    return folder / "router.yaml"


def test_policy_hash_follows_the_policy_and_revision_every_byte(tmp_path):
    path = _copy_router(tmp_path)
    first = load_file(path)
    text = path.read_text()
    path.write_text(text.replace("description: Routes support tickets to a queue", "description: Another text"))
    described = load_file(path)
    assert described.policy_hash == first.policy_hash
    assert described.revision != first.revision
    path.write_text(text + "\n")
    assert load_file(path).revision != first.revision
    assert load_file(path).policy_hash == first.policy_hash
    path.write_text(text.replace("min_score: 0.6", "min_score: 0.7"))
    assert load_file(path).policy_hash != first.policy_hash
    path.write_text(text.replace("require_approval: false", "require_approval: true"))
    assert load_file(path).policy_hash != first.policy_hash


def test_the_demo_files_load_and_mirror_the_demo():
    result = load_folder(ROOT / "pipelines")
    by_id = {p.spec.id: p for p in result.pipelines}
    assert {"router", "replies"} <= set(by_id)
    assert not [e for e in result.errors if os.path.basename(e.file) in ("router.yaml", "replies.yaml")]
    router, replies = by_id["router"].defaults(), by_id["replies"].defaults()
    assert router["gcs_prefix"] == "gs://gemini-tuning-demo/router"
    assert router["training_data"] == str(ROOT / "include" / "demo" / "train.jsonl")
    assert (router["judge"], router["gate_primary_metric"], router["gate_min_score"]) == ("none",
                                                                                           "normalized_match", 0.6)
    assert replies["gcs_prefix"] == "gs://gemini-tuning-demo/replies"
    assert replies["eval_prompts"] == str(ROOT / "include" / "demo" / "replies" / "eval_prompts.jsonl")
    assert (replies["judge"], replies["gate_primary_metric"], replies["gate_min_score"]) == ("both", "rouge_l_f1",
                                                                                             0.1)
    for values in (router, replies):
        assert values["base_model"] == "gemini-3.5-flash"
        for name in ("training_data", "eval_prompts", "system_instruction"):
            assert os.path.exists(values[name]), values[name]
    pipeline = by_id["router"]
    assert pipeline.dag_id == "gemini_tuning__router"
    assert pipeline.rollback_dag_id == "gemini_tuning__router__rollback"
    assert len(pipeline.defaults()) == 46
    assert (pipeline.defaults()["max_queue_hours"], pipeline.defaults()["retirement_warn_days"]) == (None, 60)
    again = Pipeline.from_record(pipeline.to_record())
    assert again == pipeline


def test_missing_folder_is_empty_and_fifty_files_load_fast(tmp_path):
    assert load_folder(tmp_path / "nope").pipelines == []
    template = (ROOT / "pipelines" / "router.yaml").read_text()
    folder = tmp_path / "many"
    folder.mkdir()
    os.symlink(ROOT / "include", tmp_path / "include")
    for i in range(50):
        folder.joinpath(f"p{i:02d}.yaml").write_text(template.replace("id: router", f"id: p{i:02d}"))
    load_folder(folder)    # warm
    t0 = time.perf_counter()
    result = load_folder(folder)
    took = time.perf_counter() - t0
    assert not result.errors and len(result.pipelines) == 50
    assert took < 0.5, took


@pytest.mark.parametrize("tuning, field, rule", [
    ({"max_queue_hours": 0}, "tuning.max_queue_hours", "greater than 0"),
    ({"max_queue_hours": 200}, "tuning.max_queue_hours", "less than or equal to 168"),
    ({"retirement_warn_days": -1}, "tuning.retirement_warn_days", "greater than or equal to 0"),
])
def test_queue_and_retirement_settings_are_checked_with_the_field_path(tmp_path, tuning, field, rule):
    spec = yaml.safe_load((ROOT / "pipelines" / "router.yaml").read_text())
    spec["tuning"].update(tuning)
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    os.symlink(ROOT / "include", tmp_path / "include")
    with pytest.raises(PipelineFileError) as info:
        load_file(path)
    assert any(e.field == field and rule in e.rule for e in info.value.errors), [str(e) for e in info.value.errors]


def test_queue_and_retirement_settings_reach_the_run_params(tmp_path):
    spec = yaml.safe_load((ROOT / "pipelines" / "router.yaml").read_text())
    spec["tuning"].update(max_queue_hours=6, retirement_warn_days=30)
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    os.symlink(ROOT / "include", tmp_path / "include")
    values = load_file(path).defaults()
    assert (values["max_queue_hours"], values["retirement_warn_days"]) == (6, 30)
