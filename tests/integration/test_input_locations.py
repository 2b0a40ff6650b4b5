"""Inputs from anywhere: the prepare and evaluate steps read local paths only under the input roots and gs://
objects only in the run's bucket or an allowed one (``core.inputs``, ``operators.inputs``), and bound what they
read, against the in-process GCS emulator."""

from __future__ import annotations

import json
import uuid

import pytest

from gemini_tuning.backends import gcs
from gemini_tuning.core.issues import DataValidationError
from gemini_tuning.operators.prepare import PrepareTuningDatasetOperator
from harness.clients import BUCKET
from harness.paths import DEMO, ROOT

pytestmark = pytest.mark.fast

HINT = "(settings [gemini_tuning] input_roots and allowed_buckets)"

try:
    from gemini_tuning.core.inputs import InputNotAllowed
except ImportError:  # the code before the check: each test then fails on what it was allowed to read
    InputNotAllowed = type("InputNotAllowed", (Exception,), {})


@pytest.fixture
def conn(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "test-project"}}))
    monkeypatch.delenv("AIRFLOW__GEMINI_TUNING__ALLOWED_BUCKETS", raising=False)


@pytest.fixture
def dest():
    return f"gs://{BUCKET}/inputs-{uuid.uuid4().hex[:8]}/datasets"


@pytest.fixture
def include(tmp_path, monkeypatch):
    """A private input root: tmp_path/include (and nothing else)."""
    root = tmp_path / "include"
    root.mkdir()
    monkeypatch.setenv("AIRFLOW__GEMINI_TUNING__INPUT_ROOTS", str(root))
    return root


def rows(n: int) -> bytes:
    return b"".join(json.dumps({"contents": [{"role": "user", "parts": [{"text": f"question {i}?"}]},
                                             {"role": "model", "parts": [{"text": f"answer {i}"}]}]}).encode()
                    + b"\n" for i in range(n))


def prepare(source: str, destination: str, **kwargs) -> dict:
    op = PrepareTuningDatasetOperator(task_id=f"prepare_{uuid.uuid4().hex[:6]}", source=source,
                                      destination=destination, asset_alias=None, **kwargs)
    return op.execute({})


def listing(client, uri_prefix: str) -> list[str]:
    bucket, prefix = gcs.parse_gs_uri(uri_prefix)
    return sorted(b.name for b in client.list_blobs(bucket, prefix=prefix))


def refused(field: str, value: str, reason: str, roots: str, buckets: str) -> str:
    return f"{field}={value!r} is not an allowed input ({reason}); allowed: local paths under {roots}, gs:// " \
           f"objects in {buckets} {HINT}"


# ---------------------------------------------------------------------------------------------- prepare
def test_a_local_source_outside_the_roots_is_refused_before_anything_is_read(conn, gcs_client, tmp_path, include,
                                                                               dest):
    outside = tmp_path / "train.jsonl"
    outside.write_bytes(rows(30))
    with pytest.raises(InputNotAllowed) as info:
        prepare(str(outside), dest)
    assert str(info.value) == refused("source", str(outside), f"{outside} is outside the input roots", str(include),
                                      f"gs://{BUCKET}")
    sneaky = f"{include}/../train.jsonl"                                 # `..` out of the root
    with pytest.raises(InputNotAllowed, match=r"is outside the input roots"):
        prepare(sneaky, dest)
    assert listing(gcs_client, dest) == []

    inside = include / "train.jsonl"
    inside.write_bytes(rows(30))
    assert prepare(str(inside), dest)["train_count"] == 30


def test_the_default_root_is_the_deployments_include_folder(conn, tmp_path, monkeypatch, dest):
    monkeypatch.delenv("AIRFLOW__GEMINI_TUNING__INPUT_ROOTS", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    assert prepare(str(DEMO / "train.jsonl"), dest, eval_prompts=str(DEMO / "eval_prompts.jsonl"))["train_count"] > 0
    elsewhere = tmp_path / "train.jsonl"
    elsewhere.write_bytes(rows(30))
    with pytest.raises(InputNotAllowed) as info:
        prepare(str(elsewhere), dest)
    assert str(info.value) == refused("source", str(elsewhere), f"{elsewhere} is outside the input roots",
                                      str(ROOT / "include"), f"gs://{BUCKET}")


def test_gs_sources_only_from_the_destination_bucket_or_allowed_ones(conn, gcs_client, include, dest, monkeypatch):
    other = f"other-{uuid.uuid4().hex[:6]}"
    gcs_client.create_bucket(other)
    gcs_client.bucket(other).blob("train.jsonl").upload_from_string(rows(30))
    source = f"gs://{other}/train.jsonl"
    with pytest.raises(InputNotAllowed) as info:
        prepare(source, dest)
    assert str(info.value) == refused("source", source, f"the bucket gs://{other} is not allowed", str(include),
                                      f"gs://{BUCKET}")
    assert listing(gcs_client, dest) == []
    monkeypatch.setenv("AIRFLOW__GEMINI_TUNING__ALLOWED_BUCKETS", f"gs://{other}, acme-ml")
    assert prepare(source, dest)["train_count"] == 30
    same_bucket = f"gs://{BUCKET}/raw-{uuid.uuid4().hex[:6]}/train.jsonl"   # the run's own bucket: always allowed
    gcs.parse_gs_uri(same_bucket)
    gcs_client.bucket(BUCKET).blob(same_bucket[len(f"gs://{BUCKET}/"):]).upload_from_string(rows(31))
    monkeypatch.delenv("AIRFLOW__GEMINI_TUNING__ALLOWED_BUCKETS")
    assert prepare(same_bucket, dest)["train_count"] == 31


def test_eval_prompts_and_validation_source_are_checked_too(conn, gcs_client, tmp_path, include, dest):
    train = include / "train.jsonl"
    train.write_bytes(rows(30))
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"prompt": "p", "reference": "r"}\n')
    for kwargs, field in (({"eval_prompts": str(secret)}, "eval_prompts"),
                          ({"validation_source": str(secret)}, "validation_source")):
        with pytest.raises(InputNotAllowed) as info:
            prepare(str(train), dest, **kwargs)
        assert str(info.value) == refused(field, str(secret), f"{secret} is outside the input roots", str(include),
                                          f"gs://{BUCKET}")
    assert listing(gcs_client, dest) == []


def test_an_overlong_line_fails_the_step_with_file_line_and_rule(conn, gcs_client, include, dest):
    source = include / "train.jsonl"
    source.write_bytes(rows(3) + b'{"contents": "' + b"x" * 5000 + b'"}\n' + rows(3))
    with pytest.raises(DataValidationError) as info:
        prepare(str(source), dest, max_line_bytes=2048)
    assert str(info.value) == f"1 error(s):\n{source}:4: [line-too-long] 5,016 bytes; the limit is 2,048 bytes per " \
                              "line (max_line_bytes)"
    assert listing(gcs_client, dest) == []


# ---------------------------------------------------------------------------------------------- evaluate
def evaluate_plan(**kwargs):
    from gemini_tuning.operators.evaluate import GeminiEvaluateOperator

    op = GeminiEvaluateOperator(task_id=f"evaluate_{uuid.uuid4().hex[:6]}",
                                challenger={"backend": "vertex", "tuned_model": "projects/p/locations/l/models/m@1"},
                                results_prefix=f"gs://{BUCKET}/runs/r1/eval", **kwargs)
    return op._plan()


def test_evaluation_reads_the_prompt_set_and_system_instruction_only_from_allowed_inputs(conn, tmp_path, include):
    prompts = include / "prompts.jsonl"
    prompts.write_text('{"prompt": "p", "reference": "r"}\n')
    secret = tmp_path / "token.txt"
    secret.write_text("ya29.secret-token")
    with pytest.raises(InputNotAllowed) as info:
        evaluate_plan(prompt_set=str(prompts), system_instruction=str(secret))
    assert str(info.value) == refused("system_instruction", str(secret), f"{secret} is outside the input roots",
                                      str(include), f"gs://{BUCKET}")
    with pytest.raises(InputNotAllowed) as info:
        evaluate_plan(prompt_set="gs://someone-elses-bucket/prompts.jsonl")
    assert str(info.value) == refused("prompt_set", "gs://someone-elses-bucket/prompts.jsonl",
                                      "the bucket gs://someone-elses-bucket is not allowed", str(include),
                                      f"gs://{BUCKET}")

    big = include / "system.txt"
    big.write_text("x" * 70_000)
    with pytest.raises(gcs.ObjectTooLarge) as info:
        evaluate_plan(prompt_set=str(prompts), system_instruction=str(big))
    assert str(info.value) == f"{big} has 70,000 bytes, more than the 65,536 allowed for a system instruction " \
                              "(max_bytes)"
    ok = include / "ok.txt"
    ok.write_text("Answer with one word.\n")
    plan = evaluate_plan(prompt_set=str(prompts), system_instruction=str(ok))
    assert plan.settings.system_instruction == "Answer with one word." and [p.prompt for p in plan.prompts] == ["p"]
