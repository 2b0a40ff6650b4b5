"""PrepareTuningDatasetOperator.execute() against the in-process GCS emulator, through an Airflow connection."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors

from gemini_tuning.backends import gcs
from gemini_tuning.core.issues import DataValidationError
from gemini_tuning.operators.prepare import PrepareTuningDatasetOperator
from harness.clients import BUCKET

pytestmark = pytest.mark.fast

ALIAS = "gemini-tuning-training-data"


@pytest.fixture
def conn(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "test-project"}}))


@pytest.fixture
def dest():
    return f"gs://{BUCKET}/it-{uuid.uuid4().hex[:8]}/datasets"


def example(i: int, tag: str = "q", system: bool = False) -> dict:
    ex = {"contents": [{"role": "user", "parts": [{"text": f"{tag} question number {i}?"}]},
                       {"role": "model", "parts": [{"text": f"answer {i}"}]}]}
    if system:
        ex = {"systemInstruction": {"parts": [{"text": "Be brief."}]}, **ex}
    return ex


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def write(tmp_path, data: bytes, name: str = "train.jsonl") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def run(source: str, destination: str, **kwargs) -> tuple[dict, OutletEventAccessors]:
    op = PrepareTuningDatasetOperator(task_id=f"prepare_{uuid.uuid4().hex[:6]}", source=source,
                                      destination=destination, **kwargs)
    events = OutletEventAccessors()
    result = op.execute({"outlet_events": events})
    json.dumps(result)  # XCom-able
    return result, events


def listing(client, uri_prefix: str) -> list[str]:
    bucket, prefix = gcs.parse_gs_uri(uri_prefix)
    return sorted(b.name for b in client.list_blobs(bucket, prefix=prefix))


def blob_of(client, uri: str):
    bucket, name = gcs.parse_gs_uri(uri)
    return client.bucket(bucket).get_blob(name)


# ---------------------------------------------------------------------------------------------- happy path
def test_uploads_then_a_rerun_reuses_the_same_object(conn, gcs_client, tmp_path, dest):
    rows = [example(i, system=i % 2 == 0) for i in range(40)]
    source = write(tmp_path, jsonl(rows))

    first, events = run(source, dest)
    assert first["target"] == "vertex" and first["train_count"] == 40 and first["validation_count"] == 0
    assert first["validation_uri"] is None and first["created"] == {"train": True, "validation": None}
    assert first["formats"] == {"contents": 40} and first["warnings"]["count"] == 0
    assert first["stats"]["examples"]["train"] == 40
    sha = first["train_sha256"]
    assert first["train_uri"] == f"{dest}/{sha[:16]}/train.jsonl"
    blob = blob_of(gcs_client, first["train_uri"])
    data = blob.download_as_bytes()
    assert hashlib.sha256(data).hexdigest() == sha and blob.metadata["sha256"] == sha
    assert [json.loads(line) for line in data.splitlines()][1] == example(1)  # normalized Vertex lines
    # the training file and its line map (services.prepare.write_line_map), no staging leftovers
    assert listing(gcs_client, dest) == sorted(gcs.parse_gs_uri(first[k])[1] for k in ("train_uri", "train_lines_uri"))
    lines = json.loads(blob_of(gcs_client, first["train_lines_uri"]).download_as_bytes())
    assert lines["ranges"] == [[1, 40]] and lines["train_uri"] == first["train_uri"]

    alias_events = events[AssetAlias(ALIAS)].asset_alias_events
    assert len(alias_events) == 1
    assert alias_events[0].dest_asset_key.uri == first["train_uri"]
    assert alias_events[0].extra == {"train_sha256": sha, "train_count": 40, "validation_uri": None,
                                     "validation_count": 0, "target": "vertex"}

    again, _ = run(source, dest)
    assert again["train_uri"] == first["train_uri"] and again["created"] == {"train": False, "validation": None}
    assert blob_of(gcs_client, first["train_uri"]).generation == blob.generation
    assert listing(gcs_client, dest) == sorted(gcs.parse_gs_uri(first[k])[1] for k in ("train_uri", "train_lines_uri"))


def test_declares_the_asset_alias_outlet():
    op = PrepareTuningDatasetOperator(task_id="p", source="x.jsonl", destination="gs://b-1/p",
                                      outlets=[Asset(name="other", uri="gs://b-1/other")])
    assert AssetAlias(ALIAS) in op.outlets and Asset(name="other", uri="gs://b-1/other") in op.outlets
    no_alias = PrepareTuningDatasetOperator(task_id="q", source="x", destination="gs://b-1/p", asset_alias=None)
    assert no_alias.outlets == []
    for field in ("source", "destination", "target", "validation_source", "validation_fraction", "eval_prompts",
                  "leakage", "duplicates", "max_errors", "epochs"):
        assert field in PrepareTuningDatasetOperator.template_fields


def test_a_changed_file_gets_a_new_uri(conn, gcs_client, tmp_path, dest):
    first, _ = run(write(tmp_path, jsonl(example(i) for i in range(30)), "a.jsonl"), dest)
    second, _ = run(write(tmp_path, jsonl(example(i) for i in range(31)), "b.jsonl"), dest)
    assert second["train_uri"] != first["train_uri"] and second["created"]["train"]
    assert blob_of(gcs_client, first["train_uri"]) is not None and blob_of(gcs_client, second["train_uri"]) is not None


def test_gzip_source_gives_the_same_object_as_plain(conn, gcs_client, tmp_path, dest):
    data = jsonl(example(i) for i in range(25))
    plain, _ = run(write(tmp_path, data), dest)
    packed, _ = run(write(tmp_path, gzip.compress(data), "train.jsonl.gz"), dest)
    assert packed["train_uri"] == plain["train_uri"] and packed["train_count"] == 25
    assert packed["created"]["train"] is False


def test_gs_source_plain_and_gzip(conn, gcs_client, upload, dest):
    data = jsonl(example(i, "gs") for i in range(22))
    result, _ = run(upload(data), dest)
    assert result["train_count"] == 22 and result["created"]["train"]
    zipped, _ = run(upload(gzip.compress(data), name=f"src/{uuid.uuid4().hex}.jsonl.gz"), dest)
    assert zipped["train_uri"] == result["train_uri"]


def test_missing_gs_source(conn, dest):
    with pytest.raises(FileNotFoundError):
        run(f"gs://{BUCKET}/nope/{uuid.uuid4().hex}.jsonl", dest)


def test_other_input_formats_are_converted(conn, gcs_client, tmp_path, dest):
    rows = ([{"messages": [{"role": "user", "content": f"m {i}"}, {"role": "assistant", "content": "ok"}]}
             for i in range(5)])
    data = jsonl(rows) + jsonl({"input": f"in {i}", "output": "out"} for i in range(5))
    result, _ = run(write(tmp_path, data), dest)
    assert result["formats"] == {"messages": 5, "input_output": 5}
    first = json.loads(blob_of(gcs_client, result["train_uri"]).download_as_bytes().splitlines()[0])
    assert first == {"contents": [{"role": "user", "parts": [{"text": "m 0"}]},
                                  {"role": "model", "parts": [{"text": "ok"}]}]}


def test_gemini_api_target(conn, gcs_client, tmp_path, dest):
    data = jsonl({"text_input": f"t {i}", "output": f"o {i}"} for i in range(20))
    result, _ = run(write(tmp_path, data), dest, target="gemini_api")
    assert result["target"] == "gemini_api" and result["train_count"] == 20
    rows = gcs.read_jsonl(gcs_client, result["train_uri"], max_bytes=10_000)
    assert rows[3] == {"text_input": "t 3", "output": "o 3"}


# ---------------------------------------------------------------------------------------------- validation data
def test_validation_split_produces_both_uris(conn, gcs_client, tmp_path, dest):
    result, events = run(write(tmp_path, jsonl(example(i) for i in range(200))), dest,
                         validation_fraction="0.25", max_errors="10", epochs="2")  # strings, as Jinja renders them
    assert result["train_count"] + result["validation_count"] == 200
    assert 20 < result["validation_count"] < 80
    key = result["train_sha256"][:16]
    assert result["validation_uri"] == f"{dest}/{key}/validation-{result['validation_sha256'][:16]}.jsonl"
    assert result["created"] == {"train": True, "validation": True}
    val = blob_of(gcs_client, result["validation_uri"]).download_as_bytes()
    train = blob_of(gcs_client, result["train_uri"]).download_as_bytes()
    assert len(val.splitlines()) == result["validation_count"] and len(train.splitlines()) == result["train_count"]
    assert hashlib.sha256(val).hexdigest() == result["validation_sha256"]
    assert not set(val.splitlines()) & set(train.splitlines())
    assert events[AssetAlias(ALIAS)].asset_alias_events[0].extra["validation_uri"] == result["validation_uri"]

    again, _ = run(write(tmp_path, jsonl(example(i) for i in range(200))), dest, validation_fraction=0.25)
    assert again["created"] == {"train": False, "validation": False}
    assert (again["train_uri"], again["validation_uri"]) == (result["train_uri"], result["validation_uri"])


def test_validation_source(conn, gcs_client, tmp_path, dest, upload):
    train = write(tmp_path, jsonl(example(i) for i in range(30)))
    result, _ = run(train, dest, validation_source=upload(jsonl(example(i, "val") for i in range(7))))
    assert result["validation_count"] == 7 and result["train_count"] == 30
    assert len(blob_of(gcs_client, result["validation_uri"]).download_as_bytes().splitlines()) == 7
    other, _ = run(train, dest, validation_source=upload(jsonl(example(i, "val") for i in range(8))))
    assert other["train_uri"] == result["train_uri"] and other["validation_uri"] != result["validation_uri"]
    assert other["created"] == {"train": False, "validation": True}
    with pytest.raises(ValueError, match="not both"):
        run(train, dest, validation_source=upload(b"{}\n"), validation_fraction=0.1)


def test_validation_source_gets_the_validation_rules_not_the_training_ones(conn, gcs_client, tmp_path, dest,
                                                                            upload):
    """A separate validation file is checked against the training set's size (Vertex: at most 5,000 examples, or
    30 % of training above 1,000), not with the training-only minimum."""
    train = write(tmp_path, jsonl(example(i) for i in range(100)))
    too_many = upload(jsonl(example(i, "val") for i in range(1_001)))  # > 1,000 and > 30 % of 100
    with pytest.raises(DataValidationError) as exc:
        run(train, dest, validation_source=too_many)
    assert [(i.file, i.line, i.rule) for i in exc.value.issues] == [(too_many, None, "validation-too-large")]
    assert "30%" in str(exc.value) and "100 training" in str(exc.value)
    assert listing(gcs_client, dest) == []
    ok, _ = run(write(tmp_path, jsonl(example(i) for i in range(4_000))), dest, validation_source=too_many)
    assert ok["validation_count"] == 1_001 and ok["train_count"] == 4_000  # 1,001 <= 30 % of 4,000


def test_validation_source_is_refused_for_the_gemini_api(conn, gcs_client, tmp_path, dest, upload):
    """The Gemini API takes no validation data: a clear error before anything is read, not "too-few-examples"."""
    train = write(tmp_path, jsonl({"text_input": f"t {i}", "output": f"o {i}"} for i in range(20)))
    val = upload(jsonl({"text_input": f"v {i}", "output": f"o {i}"} for i in range(5)))
    with pytest.raises(DataValidationError) as exc:
        run(train, dest, target="gemini_api", validation_source=val)
    assert [(i.file, i.line, i.rule) for i in exc.value.issues] == [(val, None, "validation-unsupported")]
    assert "validation_fraction" in str(exc.value) and "too-few-examples" not in str(exc.value)
    assert listing(gcs_client, dest) == []


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_file_raises_and_leaves_no_object(conn, gcs_client, tmp_path, dest):
    rows = jsonl(example(i) for i in range(10)) + b'{"contents": [{"role": "user", "parts": [{"text": "x"}]}\n'
    source = write(tmp_path, rows + jsonl(example(i, "z") for i in range(10)))
    with pytest.raises(DataValidationError) as exc:
        run(source, dest)
    assert f"{source}:11: [invalid-json]" in str(exc.value)
    assert listing(gcs_client, dest) == []


def test_bad_line_at_the_end_of_a_staged_upload_leaves_nothing(conn, gcs_client, tmp_path, dest, monkeypatch):
    """With small parts, many parts reach GCS while validating; the error at the last line removes them all."""
    monkeypatch.setattr(gcs, "DEFAULT_PART_SIZE", 64 * 1024)
    staged = []
    real = gcs.StagedUpload._upload_part

    def spy(self, index, start, length):
        real(self, index, start, length)
        staged.append(index)

    monkeypatch.setattr(gcs.StagedUpload, "_upload_part", spy)
    good = jsonl(example(i, "long " * 20) for i in range(20_000))  # ~3.5 MB: the core writes it in 1 MiB blocks
    bad = b'{"contents": [{"role": "model", "parts": [{"text": "no user turn"}]}]}\n'
    with pytest.raises(DataValidationError, match=r":20001: \[role-order\]"):
        run(write(tmp_path, good + bad), dest)
    assert staged  # parts really went up before the failure (the rest were cancelled when it came)...
    assert listing(gcs_client, dest) == []  # ...and none is left


def test_staged_upload_through_the_operator(conn, gcs_client, tmp_path, dest, monkeypatch):
    monkeypatch.setattr(gcs, "DEFAULT_PART_SIZE", 256 * 1024)
    data = jsonl(example(i, "long " * 20) for i in range(20_000))
    result, _ = run(write(tmp_path, data), dest)
    uploaded = blob_of(gcs_client, result["train_uri"])
    assert uploaded.size > 3 * 256 * 1024 and hashlib.sha256(uploaded.download_as_bytes()).hexdigest() == \
        result["train_sha256"]
    assert listing(gcs_client, dest) == sorted(gcs.parse_gs_uri(result[k])[1] for k in ("train_uri", "train_lines_uri"))


def test_leakage_fail_mode(conn, gcs_client, tmp_path, dest, upload):
    prompts = upload(jsonl([{"prompt": "q question number 3?", "reference": "answer 3"},
                            {"prompt": "something else entirely", "reference": "x"}]))
    source = write(tmp_path, jsonl(example(i) for i in range(30)))
    with pytest.raises(DataValidationError, match=r":4: \[leakage\]"):
        run(source, dest, eval_prompts=prompts, leakage="fail")
    assert listing(gcs_client, dest) == []

    warned, _ = run(source, dest, eval_prompts=prompts, leakage="warn")
    assert warned["warnings"]["count"] == 1 and "[leakage]" in warned["warnings"]["first"][0]
    assert warned["train_count"] == 30
    off, _ = run(source, dest, eval_prompts=f"gs://{BUCKET}/not/read.jsonl", leakage="off")
    assert off["warnings"]["count"] == 0 and off["train_uri"] == warned["train_uri"]


def test_bad_eval_prompt_set_fails_before_anything_is_uploaded(conn, gcs_client, tmp_path, dest, upload):
    prompts = upload(b'{"prompt": "p"}\n')  # no reference
    with pytest.raises(DataValidationError, match="missing-reference"):
        run(write(tmp_path, jsonl(example(i) for i in range(30))), dest, eval_prompts=prompts, leakage="fail")
    assert listing(gcs_client, dest) == []


def test_warnings_are_counted_beyond_the_listed_ones(conn, tmp_path, dest):
    rows = [example(i % 10) for i in range(30)]  # 20 duplicates, max_errors=5: 5 listed + "15 more"
    result, _ = run(write(tmp_path, jsonl(rows)), dest, max_errors=5)
    assert result["warnings"]["count"] == 20 and result["warnings"]["by_rule"] == {"duplicate": 20}
    assert len(result["warnings"]["first"]) == 6 and result["train_count"] == 30


def test_duplicates_drop_and_options_are_checked(conn, tmp_path, dest):
    rows = [example(i % 10) for i in range(30)]
    result, _ = run(write(tmp_path, jsonl(rows)), dest, duplicates="drop")
    assert result["train_count"] == 10 and result["dropped_duplicates"] == 20
    with pytest.raises(DataValidationError, match=r"\[duplicate\]"):
        run(write(tmp_path, jsonl(rows)), dest, duplicates="fail")
    with pytest.raises(ValueError, match="target"):
        run(write(tmp_path, jsonl(rows)), dest, target="openai")
    with pytest.raises(ValueError, match="not a gs:// URI"):
        run(write(tmp_path, jsonl(rows)), "/tmp/not-gcs")
