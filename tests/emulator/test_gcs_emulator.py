"""The in-process GCS emulator (emulator/gcs.py) as google-cloud-storage sees it, preconditions above all."""

import os

os.environ.setdefault("NO_GCE_CHECK", "true")

import io

import pytest
import requests
from google.api_core.exceptions import NotFound, PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from emulator.gcs import install_preconditions, start_gcs

pytestmark = pytest.mark.fast

BUCKET = "tune-bucket"
PRECONDITION_ENVELOPE_MESSAGE = "At least one of the pre-conditions you specified did not hold."


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = start_gcs(port=0, data_dir=str(tmp_path_factory.mktemp("gcs")), default_bucket=BUCKET)
    yield emu
    emu.stop()


def _client() -> storage.Client:
    return storage.Client(credentials=AnonymousCredentials(), project="test-project")


@pytest.fixture
def gcs(emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    emulator.wipe(keep_buckets=True)
    return _client()


@pytest.fixture
def bucket(gcs):
    return gcs.bucket(BUCKET)


@pytest.fixture
def http():
    with requests.Session() as session:
        session.trust_env = False  # loopback only, never through a proxy from the environment
        yield session


def _payload(size: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(size))


# --- basics -----------------------------------------------------------------------------------------------------------


def test_url_and_round_trip(emulator, bucket):
    assert emulator.url == f"http://127.0.0.1:{emulator.port}"
    blob = bucket.blob("data/train.jsonl")
    blob.upload_from_string(b'{"a": 1}\n', content_type="application/jsonl")
    assert blob.generation and blob.metageneration == 1  # GCS starts at 1 (the bare emulator says 2)

    fresh = bucket.blob("data/train.jsonl")
    assert fresh.download_as_bytes() == b'{"a": 1}\n'
    # The download answer carries the generation, as on GCS; a CAS write can use it directly.
    assert fresh.generation == blob.generation
    assert fresh.metageneration == 1


# --- create-only and compare-and-swap ---------------------------------------------------------------------------------


def test_create_only_second_write_is_412_and_content_unchanged(bucket):
    bucket.blob("ds.jsonl").upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed) as err:
        bucket.blob("ds.jsonl").upload_from_string(b"second", if_generation_match=0)
    assert err.value.code == 412
    assert bucket.blob("ds.jsonl").download_as_bytes() == b"first"


def test_precondition_failure_uses_the_gcs_error_envelope(emulator, bucket, http):
    bucket.blob("x").upload_from_string(b"1")
    answer = http.post(
        f"{emulator.url}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": "x", "ifGenerationMatch": "0"},
        data=b"2",
    )
    assert answer.status_code == 412
    assert answer.json() == {
        "error": {
            "code": 412,
            "message": PRECONDITION_ENVELOPE_MESSAGE,
            "errors": [
                {
                    "domain": "global",
                    "reason": "conditionNotMet",
                    "message": PRECONDITION_ENVELOPE_MESSAGE,
                    "locationType": "header",
                    "location": "If-Match",
                }
            ],
        }
    }


def test_non_integer_precondition_is_400(emulator, http):
    answer = http.post(
        f"{emulator.url}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": "y", "ifGenerationMatch": "abc"},
        data=b"2",
    )
    assert answer.status_code == 400


def test_compare_and_swap_on_generation(bucket):
    pointer = bucket.blob("champion.json")
    pointer.upload_from_string(b'{"v": 1}', if_generation_match=0)
    gen1 = pointer.generation

    pointer.upload_from_string(b'{"v": 2}', if_generation_match=gen1)
    gen2 = pointer.generation
    assert gen2 > gen1

    with pytest.raises(PreconditionFailed):  # stale generation
        bucket.blob("champion.json").upload_from_string(b'{"v": "lost"}', if_generation_match=gen1)

    # read-modify-write with the generation taken from the download
    reader = bucket.blob("champion.json")
    assert reader.download_as_bytes() == b'{"v": 2}'
    reader.upload_from_string(b'{"v": 3}', if_generation_match=reader.generation)
    assert reader.generation > gen2
    assert bucket.get_blob("champion.json").generation == reader.generation
    assert bucket.blob("champion.json").download_as_bytes() == b'{"v": 3}'


def test_generation_match_on_missing_object_is_412(bucket):
    with pytest.raises(PreconditionFailed):
        bucket.blob("nothing-here").upload_from_string(b"x", if_generation_match=123)
    assert bucket.get_blob("nothing-here") is None


def test_generation_not_match(bucket):
    blob = bucket.blob("g")
    blob.upload_from_string(b"1")
    with pytest.raises(PreconditionFailed):
        bucket.blob("g").upload_from_string(b"2", if_generation_not_match=blob.generation)
    bucket.blob("g").upload_from_string(b"3", if_generation_not_match=blob.generation + 1)
    assert bucket.blob("g").download_as_bytes() == b"3"


def test_stale_generation_read_is_404(bucket):
    blob = bucket.blob("v")
    blob.upload_from_string(b"old")
    old = blob.generation
    bucket.blob("v").upload_from_string(b"new")
    with pytest.raises(NotFound):  # no versioning: the old generation is gone
        bucket.blob("v", generation=old).download_as_bytes()


# --- delete -----------------------------------------------------------------------------------------------------------


def test_delete_with_wrong_generation_is_412_and_object_stays(bucket):
    blob = bucket.blob("to-delete")
    blob.upload_from_string(b"keep me")
    with pytest.raises(PreconditionFailed):
        bucket.delete_blob("to-delete", if_generation_match=blob.generation + 1)
    assert bucket.blob("to-delete").download_as_bytes() == b"keep me"

    bucket.delete_blob("to-delete", if_generation_match=blob.generation)
    assert bucket.get_blob("to-delete") is None


# --- resumable uploads ------------------------------------------------------------------------------------------------


def test_resumable_chunked_create_only(bucket, monkeypatch):
    from gcp_storage_emulator.handlers import objects

    chunks = []
    handle_chunk = objects._handle_resumable_chunk
    monkeypatch.setattr(objects, "_handle_resumable_chunk", lambda *a: chunks.append(1) or handle_chunk(*a))

    payload = _payload(1024 * 1024 + 123)
    blob = bucket.blob("big.bin")
    blob.chunk_size = 256 * 1024  # size unknown to the client -> resumable upload, in 5 chunks
    blob.upload_from_file(io.BytesIO(payload), if_generation_match=0)
    assert len(chunks) == 5
    assert blob.generation and blob.metageneration == 1
    assert bucket.blob("big.bin").download_as_bytes() == payload

    again = bucket.blob("big.bin")
    again.chunk_size = 256 * 1024
    with pytest.raises(PreconditionFailed):  # refused when the session is created
        again.upload_from_file(io.BytesIO(_payload(1024 * 1024, seed=7)), if_generation_match=0)
    assert bucket.blob("big.bin").download_as_bytes() == payload

    # CAS through the resumable path too
    cas = bucket.blob("big.bin")
    cas.chunk_size = 256 * 1024
    cas.upload_from_file(io.BytesIO(payload[::-1]), if_generation_match=blob.generation)
    assert cas.generation > blob.generation
    assert bucket.blob("big.bin").download_as_bytes() == payload[::-1]


def test_resumable_finalize_rechecks_the_condition(bucket, http):
    """The object appears between session creation and the last chunk: the final chunk gets 412."""
    payload = _payload(512 * 1024)
    half = len(payload) // 2
    session_url = bucket.blob("race.bin").create_resumable_upload_session(size=len(payload), if_generation_match=0)

    first = http.put(session_url, data=payload[:half], headers={"Content-Range": f"bytes 0-{half - 1}/{len(payload)}"})
    assert first.status_code == 308

    bucket.blob("race.bin").upload_from_string(b"winner", if_generation_match=0)

    last = http.put(
        session_url,
        data=payload[half:],
        headers={"Content-Range": f"bytes {half}-{len(payload) - 1}/{len(payload)}"},
    )
    assert last.status_code == 412
    assert last.json()["error"]["errors"][0]["reason"] == "conditionNotMet"
    assert bucket.blob("race.bin").download_as_bytes() == b"winner"
    # the refused session is gone
    assert http.put(session_url, data=b"", headers={"Content-Range": f"bytes */{len(payload)}"}).status_code == 404


def test_resumable_finalize_succeeds_when_condition_still_holds(bucket, http):
    payload = _payload(300 * 1024, seed=3)
    session_url = bucket.blob("ok.bin").create_resumable_upload_session(size=len(payload), if_generation_match=0)
    answer = http.put(
        session_url, data=payload, headers={"Content-Range": f"bytes 0-{len(payload) - 1}/{len(payload)}"}
    )
    assert answer.status_code == 200
    assert int(answer.json()["generation"]) == bucket.get_blob("ok.bin").generation
    assert bucket.blob("ok.bin").download_as_bytes() == payload


# --- compose, copy, rewrite -------------------------------------------------------------------------------------------


def test_compose_destination_precondition(bucket):
    a, b = bucket.blob("part-a"), bucket.blob("part-b")
    a.upload_from_string(b"AAA")
    b.upload_from_string(b"BBB")
    dest = bucket.blob("joined")
    dest.upload_from_string(b"old")
    old_gen = dest.generation

    with pytest.raises(PreconditionFailed):
        bucket.blob("joined").compose([a, b], if_generation_match=0)
    assert bucket.blob("joined").download_as_bytes() == b"old"

    with pytest.raises(PreconditionFailed):  # a source precondition
        bucket.blob("joined").compose([a, b], if_source_generation_match=[a.generation, b.generation + 1])

    new = bucket.blob("joined")
    new.compose([a, b], if_generation_match=old_gen)
    assert new.generation > old_gen
    assert bucket.blob("joined").download_as_bytes() == b"AAABBB"

    fresh = bucket.blob("fresh-joined")
    fresh.compose([a, b], if_generation_match=0)
    assert fresh.download_as_bytes() == b"AAABBB"


def test_copy_and_rewrite_destination_precondition(bucket):
    src = bucket.blob("src")
    src.upload_from_string(b"source bytes")
    dst = bucket.blob("dst")
    dst.upload_from_string(b"dest bytes")

    with pytest.raises(PreconditionFailed):
        bucket.copy_blob(src, bucket, "dst", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob("dst").rewrite(src, if_generation_match=dst.generation + 1)
    with pytest.raises(PreconditionFailed):  # source condition
        bucket.copy_blob(src, bucket, "dst", if_source_generation_match=src.generation + 1)
    assert bucket.blob("dst").download_as_bytes() == b"dest bytes"

    copied = bucket.copy_blob(src, bucket, "dst", if_generation_match=dst.generation)
    assert copied.generation > dst.generation
    assert bucket.blob("dst").download_as_bytes() == b"source bytes"

    rewritten = bucket.blob("dst2")
    token, done, total = rewritten.rewrite(src, if_generation_match=0)
    assert token is None and done == total == len(b"source bytes")
    assert bucket.blob("dst2").download_as_bytes() == b"source bytes"
    copy = bucket.copy_blob(src, bucket, "dst3", if_generation_match=0)
    assert copy.metageneration == 1


# --- metadata ---------------------------------------------------------------------------------------------------------


def test_patch_with_metageneration_match(bucket):
    blob = bucket.blob("meta")
    blob.upload_from_string(b"x")
    assert blob.metageneration == 1

    blob.metadata = {"stage": "candidate"}
    blob.patch(if_metageneration_match=1)
    assert blob.metageneration == 2

    stale = bucket.blob("meta")
    stale.metadata = {"stage": "lost-update"}
    with pytest.raises(PreconditionFailed):
        stale.patch(if_metageneration_match=1)
    assert bucket.get_blob("meta").metadata == {"stage": "candidate"}

    # Blob.update() (PUT) works and honours the condition too
    current = bucket.get_blob("meta")
    current.metadata = {"stage": "champion"}
    with pytest.raises(PreconditionFailed):
        current.update(if_metageneration_match=1)
    current.update(if_metageneration_match=2)
    assert bucket.get_blob("meta").metadata == {"stage": "champion"}
    assert bucket.get_blob("meta").metageneration == 3


def test_patch_of_missing_object_is_404(bucket):
    blob = bucket.blob("ghost")
    blob.metadata = {"a": "b"}
    with pytest.raises(NotFound):
        blob.patch(if_metageneration_match=1)


# --- lifecycle --------------------------------------------------------------------------------------------------------


def test_data_persists_across_restart(tmp_path, monkeypatch):
    first = start_gcs(data_dir=str(tmp_path), default_bucket=BUCKET)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", first.url)
        blob = _client().bucket(BUCKET).blob("persist/me.json")
        blob.upload_from_string(b'{"kept": true}', if_generation_match=0)
        generation = blob.generation
    finally:
        first.stop()

    second = start_gcs(data_dir=str(tmp_path), default_bucket=BUCKET)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", second.url)
        bucket = _client().bucket(BUCKET)
        again = bucket.get_blob("persist/me.json")
        assert again is not None and again.generation == generation
        assert again.download_as_bytes() == b'{"kept": true}'
        with pytest.raises(PreconditionFailed):
            bucket.blob("persist/me.json").upload_from_string(b"overwrite", if_generation_match=0)
    finally:
        second.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(second.url, timeout=2)


def test_in_memory_emulator(monkeypatch):
    with start_gcs(default_bucket="mem-bucket") as emu:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emu.url)
        blob = _client().bucket("mem-bucket").blob("m")
        blob.upload_from_string(b"in memory", if_generation_match=0)
        assert blob.download_as_bytes() == b"in memory"
        assert emu.data_dir is None


def test_port_in_use_raises(emulator):
    with pytest.raises(OSError, match="could not listen"):
        start_gcs(port=emulator.port)


def test_wipe(emulator, gcs, bucket):
    bucket.blob("a").upload_from_string(b"1")
    bucket.blob("b/c").upload_from_string(b"2")
    gcs.create_bucket("other-bucket")

    emulator.wipe()
    assert list(gcs.list_blobs(BUCKET)) == []
    assert gcs.lookup_bucket("other-bucket") is not None
    bucket.blob("a").upload_from_string(b"3", if_generation_match=0)  # gone for real

    emulator.wipe(keep_buckets=False)
    assert gcs.lookup_bucket("other-bucket") is None
    assert gcs.lookup_bucket(BUCKET) is not None  # the default bucket is re-created
    assert list(gcs.list_blobs(BUCKET)) == []


def test_install_preconditions_is_idempotent():
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    install_preconditions()
    install_preconditions()
    for name in ("insert", "delete", "patch", "compose", "copy", "rewrite", "get", "download", "upload_partial"):
        handler = getattr(objects, name)
        assert getattr(handler, "_gcs_preconditions", False), name
        assert not getattr(handler.__wrapped__, "_gcs_preconditions", False), name  # wrapped exactly once
    assert not getattr(objects._make_object_resource.__wrapped__, "_gcs_preconditions", False)
    assert not getattr(objects._finalize_resumable_object.__wrapped__, "_gcs_preconditions", False)
    routed = {fn for _regex, methods in server.HANDLERS for fn in methods.values()}
    assert objects.insert in routed and objects.upload_partial in routed and objects.delete in routed
