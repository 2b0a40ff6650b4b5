"""backends/gcs/ against the in-process GCS emulator (generation preconditions patched in; 412 as on GCS)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import uuid
from unittest import mock

import pytest
from google.api_core.exceptions import Forbidden, InternalServerError, NotFound

from gemini_tuning.backends import gcs
from harness.clients import BUCKET

pytestmark = pytest.mark.fast


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def prefix():
    return f"unit-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def write_file(tmp_path):
    def _write(data: bytes, name: str = "data.jsonl") -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    return _write


def names(client, prefix: str) -> list[str]:
    return sorted(b.name for b in client.list_blobs(BUCKET, prefix=prefix))


def lines(n: int, tag: str = "x") -> bytes:
    return b"".join(b'{"n": %d, "tag": "%s", "pad": "%s"}\n' % (i, tag.encode(), b"p" * 40) for i in range(n))


# ---------------------------------------------------------------------------------------------- URIs
def test_parse_gs_uri():
    assert gcs.parse_gs_uri("gs://my-bucket/a/b.jsonl") == ("my-bucket", "a/b.jsonl")
    assert gcs.parse_gs_uri("gs://my-bucket") == ("my-bucket", "")
    assert gcs.parse_gs_uri("gs://my-bucket/dir/") == ("my-bucket", "dir/")
    assert gcs.parse_gs_uri("gs://my-bucket/a/b.jsonl", object_required=True) == ("my-bucket", "a/b.jsonl")
    assert gcs.gs_uri("b-1", "x/y") == "gs://b-1/x/y"


@pytest.mark.parametrize("uri, message", [
    ("/local/path.jsonl", "not a gs:// URI"),
    ("s3://bucket/key", "not a gs:// URI"),
    ("gs:/bucket/key", "not a gs:// URI"),
    ("gs://", "invalid bucket name"),
    ("gs://Bad_Bucket/x", "invalid bucket name"),
    ("gs://a/x", "invalid bucket name"),
    ("gs://bucket..x/y", "invalid bucket name"),
    (None, "expected a gs:// URI string"),
])
def test_parse_gs_uri_errors(uri, message):
    with pytest.raises(ValueError, match=message):
        gcs.parse_gs_uri(uri)


@pytest.mark.parametrize("uri", ["gs://bucket", "gs://bucket/", "gs://bucket/dir/"])
def test_parse_gs_uri_object_required(uri):
    with pytest.raises(ValueError, match="names no object"):
        gcs.parse_gs_uri(uri, object_required=True)


# ---------------------------------------------------------------------------------------------- create-only upload
def test_upload_create_only_creates_then_reuses(gcs_client, write_file, prefix):
    data = lines(50)
    path = write_file(data)
    uri = f"gs://{BUCKET}/{prefix}/train.jsonl"
    seen = []
    first = gcs.upload_create_only(gcs_client, path, uri, sha256=sha(data), progress=seen.append)
    assert first.created and first.bytes == len(data) and first.uri == uri and first.generation > 0
    assert seen and seen[-1] == len(data)
    blob = gcs_client.bucket(BUCKET).get_blob(f"{prefix}/train.jsonl")
    assert blob.download_as_bytes() == data
    assert blob.metadata == {"sha256": sha(data)} and blob.content_type == "application/jsonl"

    again = gcs.upload_create_only(gcs_client, path, uri, sha256=sha(data))
    assert not again.created and again.generation == first.generation and again.bytes == len(data)
    assert names(gcs_client, prefix) == [f"{prefix}/train.jsonl"]


def test_upload_create_only_refuses_other_content(gcs_client, write_file, prefix):
    uri = f"gs://{BUCKET}/{prefix}/train.jsonl"
    old = lines(10, "old")
    first = gcs.upload_create_only(gcs_client, write_file(old, "old.jsonl"), uri, sha256=sha(old))
    new = lines(10, "new")
    with pytest.raises(gcs.ContentMismatch, match="refusing to overwrite"):
        gcs.upload_create_only(gcs_client, write_file(new, "new.jsonl"), uri, sha256=sha(new))
    blob = gcs_client.bucket(BUCKET).get_blob(f"{prefix}/train.jsonl")
    assert blob.generation == first.generation and blob.download_as_bytes() == old


def test_upload_create_only_same_sha_but_other_size_is_a_mismatch(gcs_client, write_file, prefix):
    uri = f"gs://{BUCKET}/{prefix}/train.jsonl"
    data = lines(10)
    gcs.upload_create_only(gcs_client, write_file(data), uri, sha256=sha(data))
    with pytest.raises(gcs.ContentMismatch):
        gcs.upload_create_only(gcs_client, write_file(data + b"\n", "b.jsonl"), uri, sha256=sha(data))


def test_existing_object_without_metadata_is_compared_by_size_and_crc32c(gcs_client, write_file, prefix):
    data = lines(20)
    blob = gcs_client.bucket(BUCKET).blob(f"{prefix}/train.jsonl")
    blob.upload_from_string(data)  # no sha256 metadata: written by another tool
    uri = f"gs://{BUCKET}/{prefix}/train.jsonl"
    reused = gcs.upload_create_only(gcs_client, write_file(data), uri, sha256=sha(data))
    assert not reused.created and reused.generation == blob.generation
    other = data.replace(b"pad", b"dap")
    with pytest.raises(gcs.ContentMismatch, match="no sha256 metadata"):
        gcs.upload_create_only(gcs_client, write_file(other, "o.jsonl"), uri, sha256=sha(other))


def test_failed_upload_leaves_no_object(gcs_client, write_file, prefix):
    """A resumable upload (> 8 MiB) whose stream breaks after the session was opened is never finalized."""
    data = os.urandom(9 * 1024 * 1024)
    uri = f"gs://{BUCKET}/{prefix}/big.bin"
    with mock.patch.object(gcs.CountingReader, "read", side_effect=OSError("disk went away")), \
            pytest.raises(OSError, match="disk went away"):
        gcs.upload_create_only(gcs_client, write_file(data, "big.bin"), uri, sha256=sha(data))
    assert names(gcs_client, prefix) == []
    # and the name is still free: a later upload creates it
    assert gcs.upload_create_only(gcs_client, write_file(data, "big.bin"), uri, sha256=sha(data)).created


# ---------------------------------------------------------------------------------------------- staged upload
def staged(gcs_client, prefix, data: bytes, *, part_size: int, write: int = 1000, name: str = "train.jsonl"):
    up = gcs.StagedUpload(gcs_client, f"gs://{BUCKET}/{prefix}/_staging/s1/{name}", part_size=part_size)
    with up:
        for i in range(0, len(data), write):
            up.write(data[i:i + write])
        result = up.finish(f"gs://{BUCKET}/{prefix}/final/{name}", sha256=sha(data))
    return up, result


def test_default_part_size_is_the_packages(gcs_client, prefix, monkeypatch):
    """``gcs`` is a package: its ``DEFAULT_PART_SIZE`` is the knob, read when a StagedUpload is made."""
    uri = f"gs://{BUCKET}/{prefix}/_staging/s1/train.jsonl"
    with gcs.StagedUpload(gcs_client, uri) as up:
        assert up.part_size == gcs.DEFAULT_PART_SIZE == 64 << 20
    monkeypatch.setattr(gcs, "DEFAULT_PART_SIZE", 4096)
    with gcs.StagedUpload(gcs_client, uri) as up:
        assert up.part_size == 4096
    with gcs.StagedUpload(gcs_client, uri, part_size=2048) as up:
        assert up.part_size == 2048
    assert names(gcs_client, prefix) == []


def test_staged_small_data_goes_straight_to_the_final_name(gcs_client, prefix):
    data = lines(30)
    up, result = staged(gcs_client, prefix, data, part_size=1 << 20)
    assert result.created and result.bytes == len(data)
    assert names(gcs_client, prefix) == [f"{prefix}/final/train.jsonl"]
    assert not os.path.exists(up.spool_path)


@pytest.mark.parametrize("part_size, n_lines", [(4096, 300), (1024, 1500)])  # 7 parts; ~86 parts (> 32: 2 levels)
def test_staged_parts_are_composed_and_deleted(gcs_client, prefix, part_size, n_lines):
    data = lines(n_lines)
    assert len(data) > part_size * (2 if n_lines == 300 else 33)
    progress = []
    with gcs.StagedUpload(gcs_client, f"gs://{BUCKET}/{prefix}/_staging/s1/train.jsonl", part_size=part_size,
                          progress=progress.append) as up:
        for i in range(0, len(data), 777):
            up.write(data[i:i + 777])
        for fut in up._futures:
            fut.result()
        staged_parts = names(gcs_client, f"{prefix}/_staging/")
        assert len(staged_parts) == len(data) // part_size  # full parts went up while writing
        with mock.patch.object(gcs.StagedUpload, "_compose", autospec=True, side_effect=gcs.StagedUpload._compose) as c:
            result = up.finish(f"gs://{BUCKET}/{prefix}/final/train.jsonl", sha256=sha(data))
        n_parts = -(-len(data) // part_size)
        assert c.call_count == (1 if n_parts <= 32 else 1 + -(-n_parts // 32))
    assert result.created and result.bytes == len(data)
    assert names(gcs_client, prefix) == [f"{prefix}/final/train.jsonl"]  # no part left
    blob = gcs_client.bucket(BUCKET).get_blob(f"{prefix}/final/train.jsonl")
    assert blob.download_as_bytes() == data and blob.metadata == {"sha256": sha(data)}
    assert blob.content_type == "application/jsonl"
    assert progress[-1] == len(data)

    # the same bytes again (a rerun): reused, same generation, parts cleaned up again
    _, again = staged(gcs_client, prefix, data, part_size=part_size)
    assert not again.created and again.generation == result.generation
    assert names(gcs_client, prefix) == [f"{prefix}/final/train.jsonl"]


def test_staged_other_content_at_the_final_name_raises_and_cleans_up(gcs_client, prefix):
    _, first = staged(gcs_client, prefix, lines(300, "a"), part_size=4096)
    with pytest.raises(gcs.ContentMismatch):
        staged(gcs_client, prefix, lines(300, "b"), part_size=4096)
    assert names(gcs_client, prefix) == [f"{prefix}/final/train.jsonl"]
    assert gcs_client.bucket(BUCKET).get_blob(f"{prefix}/final/train.jsonl").generation == first.generation


def test_staged_abort_deletes_every_part(gcs_client, prefix):
    data = lines(400)
    with pytest.raises(RuntimeError, match="bad line"):
        with gcs.StagedUpload(gcs_client, f"gs://{BUCKET}/{prefix}/_staging/s1/train.jsonl", part_size=2048) as up:
            up.write(data)
            for fut in up._futures:  # make sure parts really reached GCS before the failure
                fut.result()
            assert len(names(gcs_client, f"{prefix}/_staging/")) >= 5
            raise RuntimeError("bad line")
    assert names(gcs_client, prefix) == []
    assert not os.path.exists(up.spool_path)


def test_staged_part_upload_failure_propagates_and_cleans_up(gcs_client, prefix):
    data = lines(400)
    real = gcs.StagedUpload._upload_part
    calls = []

    def flaky(self, index, start, length):
        calls.append(index)
        if index == 2:
            raise InternalServerError("injected")
        return real(self, index, start, length)

    with mock.patch.object(gcs.StagedUpload, "_upload_part", flaky), pytest.raises(InternalServerError):
        staged(gcs_client, prefix, data, part_size=2048, write=2048)
    assert 2 in calls
    assert names(gcs_client, prefix) == []


# ---------------------------------------------------------------------------------------------- sources
def test_open_source_local_and_gs(gcs_client, upload, write_file):
    data = lines(5)
    with gcs.open_source(write_file(data)) as fh:
        assert fh.read() == data
    uri = upload(data)
    with gcs.open_source(uri, gcs_client) as fh:
        assert fh.read() == data
    packed = gzip.compress(data)
    with gcs.open_source(upload(packed, name=f"data/{uuid.uuid4().hex}.jsonl.gz"), gcs_client) as fh:
        assert fh.read() == packed  # as stored; iter_lines gunzips by magic bytes


def test_open_source_gs_is_read_in_chunks(gcs_client, upload):
    data = lines(2000)
    uri = upload(data)
    with gcs.open_source(uri, gcs_client, chunk_size=4096) as fh:
        got = b"".join(iter(lambda: fh.read(1000), b""))
    assert got == data


def test_open_source_missing(gcs_client, tmp_path, emulator):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gcs.open_source(f"gs://{BUCKET}/nope/{uuid.uuid4().hex}.jsonl", gcs_client)
    with pytest.raises(FileNotFoundError):
        gcs.open_source(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="names no object"):
        gcs.open_source(f"gs://{BUCKET}/dir/", gcs_client)


def test_read_jsonl(gcs_client, upload):
    uri = upload(b'{"text_input": "a", "output": "b"}\n\n{"text_input": "c", "output": "d"}\n')
    assert gcs.read_jsonl(gcs_client, uri, max_bytes=1000) == [{"text_input": "a", "output": "b"},
                                                                {"text_input": "c", "output": "d"}]
    with pytest.raises(ValueError, match="more than the 10 allowed"):
        gcs.read_jsonl(gcs_client, uri, max_bytes=10)


# ---------------------------------------------------------------------------------------------- small JSON, CAS
def test_json_compare_and_swap(gcs_client, prefix):
    uri = f"gs://{BUCKET}/{prefix}/champion.json"
    assert gcs.read_json(gcs_client, uri) == (None, 0)

    g1 = gcs.write_json(gcs_client, uri, {"model": "m1"}, if_generation_match=0)
    assert gcs.read_json(gcs_client, uri) == ({"model": "m1"}, g1)

    with pytest.raises(gcs.GenerationMismatch) as exc:  # create-only on an existing object
        gcs.write_json(gcs_client, uri, {"model": "m2"}, if_generation_match=0)
    assert exc.value.expected == 0 and exc.value.actual == g1

    g2 = gcs.write_json(gcs_client, uri, {"model": "m2"}, if_generation_match=g1)
    assert g2 != g1 and gcs.read_json(gcs_client, uri) == ({"model": "m2"}, g2)

    with pytest.raises(gcs.GenerationMismatch, match="changed concurrently"):  # stale generation
        gcs.write_json(gcs_client, uri, {"model": "m3"}, if_generation_match=g1)
    assert gcs.read_json(gcs_client, uri) == ({"model": "m2"}, g2)


def test_write_json_412_with_identical_content_is_success(gcs_client, prefix):
    """A retried write whose first attempt landed sees 412; the same bytes mean it was ours."""
    uri = f"gs://{BUCKET}/{prefix}/intent.json"
    g1 = gcs.write_json(gcs_client, uri, {"job": "j1"}, if_generation_match=0)
    assert gcs.write_json(gcs_client, uri, {"job": "j1"}, if_generation_match=0) == g1


def test_write_json_expected_object_is_gone(gcs_client, prefix):
    uri = f"gs://{BUCKET}/{prefix}/x.json"
    with pytest.raises(gcs.GenerationMismatch) as exc:
        gcs.write_json(gcs_client, uri, {"a": 1}, if_generation_match=12345)
    assert exc.value.actual == 0
    with pytest.raises(ValueError):
        gcs.write_json(gcs_client, uri, {"a": 1}, if_generation_match=None)


def test_read_json_rejects_non_objects(gcs_client, upload):
    with pytest.raises(ValueError, match="expected an object"):
        gcs.read_json(gcs_client, upload(b"[1, 2]"))
    with pytest.raises(json.JSONDecodeError):
        gcs.read_json(gcs_client, upload(b"{not json"))


@pytest.mark.parametrize("error", [InternalServerError("boom"), Forbidden("no access"), ConnectionError("reset")])
def test_read_json_errors_are_not_absent(error):
    client = mock.MagicMock()
    client.bucket.return_value.blob.return_value.download_as_bytes.side_effect = error
    with pytest.raises(type(error)):
        gcs.read_json(client, "gs://some-bucket/state/champion.json")


def test_read_json_not_found_is_absent():
    client = mock.MagicMock()
    client.bucket.return_value.blob.return_value.download_as_bytes.side_effect = NotFound("gone")
    assert gcs.read_json(client, "gs://some-bucket/state/champion.json") == (None, 0)


def test_write_json_other_errors_propagate():
    client = mock.MagicMock()
    client.bucket.return_value.blob.return_value.upload_from_string.side_effect = InternalServerError("boom")
    with pytest.raises(InternalServerError):
        gcs.write_json(client, "gs://some-bucket/state/champion.json", {"a": 1}, if_generation_match=3)


# ---------------------------------------------------------------------------------------------- progress
def test_progress_log_throttles(caplog):
    import logging

    logger = logging.getLogger("test.progress")
    p = gcs.ProgressLog("uploaded", logger=logger, every_bytes=100, every_s=3600)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for done in range(0, 1000, 10):
            p(done)
        p(1000, final=True)
    msgs = [r.getMessage() for r in caplog.records]
    assert 9 <= len(msgs) <= 11 and "MB/s" in msgs[-1] and msgs[-1].startswith("uploaded: 0.0 MB")
