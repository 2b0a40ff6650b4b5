"""Hostile input never reaches unbounded memory: the line, decompression, object-size and cache bounds, and the
input-location check (``core.inputs``). Small limits are passed as parameters; the 300 MB figures are in
``scripts/bench_hostile.py``."""

from __future__ import annotations

import gzip
import io
import json
import os
import tracemalloc
from unittest import mock

import pytest

from gemini_tuning.backends import gcs
from gemini_tuning.core import dataset as D
from gemini_tuning.core.dataset import DatasetOptions, iter_lines, prepare_dataset
from gemini_tuning.core.issues import DataValidationError
from gemini_tuning.core.promptset import parse_prompt_set
from harness.clients import BUCKET

pytestmark = pytest.mark.fast


def pair(i: int) -> bytes:
    return json.dumps({"input": f"question {i}", "output": f"answer {i}"}).encode()


def prepare(data: bytes, name: str = "big.jsonl", **limits) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        prepare_dataset(iter_lines(io.BytesIO(data), **limits), source_name=name, options=DatasetOptions(),
                        train_sink=io.BytesIO())
    return info.value


class _Endless(io.RawIOBase):
    """``total`` bytes of ``x`` without a newline, produced on demand (never held by the test)."""

    def __init__(self, total: int):
        self.left = total

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return b"x" * n


# ------------------------------------------------------------------------------------------ line length
def test_the_documented_defaults():
    assert D.MAX_LINE_BYTES == 1 << 20 and D.MAX_DECOMPRESSED_BYTES == 4 << 30
    assert "line-too-long" in D.RULES and "decompressed-too-large" in D.RULES
    assert gcs.MAX_JSON_BYTES == 1 << 20


def test_a_line_without_a_newline_is_never_held_whole():
    """40 MB without a newline, default limits: memory stays near the 1 MiB line limit, the line is reported."""
    tracemalloc.start()
    try:
        out = list(iter_lines(_Endless(40 << 20)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak:,} bytes"
    assert len(out) == 1 and isinstance(out[0], D.LongLine) and out[0].length == 40 << 20


def test_an_overlong_line_is_reported_with_file_line_and_rule():
    data = pair(1) + b"\n" + b'{"input": "' + b"x" * 5000 + b'", "output": "y"}\n' + pair(3) + b"\n"
    for chunk in (64, 1000, 256 << 10):  # the line spans chunks, or sits inside one
        err = prepare(data, chunk_size=chunk, max_line_bytes=1024)
        assert str(err) == ("1 error(s):\nbig.jsonl:2: [line-too-long] 5,028 bytes; the limit is 1,024 bytes per "
                            "line (max_line_bytes)")


def test_lines_after_an_overlong_one_are_still_read():
    data = b"y" * 3000 + b"\nab\n" + b"z" * 2000
    for chunk in (7, 100, 4096):
        out = list(iter_lines(io.BytesIO(data), chunk_size=chunk, max_line_bytes=1000))
        assert [type(x) is D.LongLine for x in out] == [True, False, True]
        assert out[1] == b"ab" and (out[0].length, out[2].length) == (3000, 2000)
    assert list(iter_lines(io.BytesIO(b"a" * 1000 + b"\n"), max_line_bytes=1000)) == [b"a" * 1000]  # at the limit


def test_a_prompt_set_line_too_long():
    data = b'{"prompt": "' + b"x" * 5000 + b'", "reference": "r"}\n{"prompt": "p", "reference": "r"}\n'
    with pytest.raises(DataValidationError) as info:
        parse_prompt_set(iter_lines(io.BytesIO(data), max_line_bytes=1024), source_name="eval.jsonl")
    assert str(info.value) == ("1 error(s):\neval.jsonl:1: [line-too-long] 5,032 bytes; the limit is 1,024 bytes "
                               "per line (max_line_bytes)")


# ------------------------------------------------------------------------------------------ decompression
def test_a_gzip_bomb_stops_at_the_decompressed_limit():
    bomb = gzip.compress(b"\n".join(pair(i) for i in range(2000)) + b"\n")  # ~80 KB decompressed
    err = prepare(bomb, name="bomb.jsonl.gz", chunk_size=1024, max_decompressed_bytes=10_000)
    assert str(err) == ("1 error(s):\nbomb.jsonl.gz: [decompressed-too-large] the gzip stream decompresses to more "
                        "than the 10,000 bytes allowed (max_decompressed_bytes)")
    with pytest.raises(DataValidationError) as info:
        parse_prompt_set(iter_lines(io.BytesIO(gzip.compress(b'{"prompt": "p", "reference": "r"}\n' * 500)),
                                    chunk_size=1024, max_decompressed_bytes=4096), source_name="eval.jsonl.gz")
    assert str(info.value) == ("1 error(s):\neval.jsonl.gz: [decompressed-too-large] the gzip stream decompresses "
                               "to more than the 4,096 bytes allowed (max_decompressed_bytes)")


def test_a_newline_free_gzip_bomb_is_one_overlong_line():
    """The finding: 65 KB of gzip became a 64 MiB line. Now it is one ``line-too-long`` and flat memory."""
    bomb = gzip.compress(b"x" * (64 << 20), 9)
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        err = prepare(bomb, name="bomb.jsonl.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak:,} bytes"
    assert str(err) == ("1 error(s):\nbomb.jsonl.gz:1: [line-too-long] 67,108,864 bytes; the limit is 1,048,576 "
                        "bytes per line (max_line_bytes)")


# ------------------------------------------------------------------------------------------ object sizes (GCS)
def test_read_json_checks_the_size_before_downloading():
    client = mock.MagicMock()
    blob = client.bucket.return_value.blob.return_value
    blob.size, blob.generation = 300 * 1024 * 1024, 7
    with pytest.raises(gcs.ObjectTooLarge) as info:
        gcs.read_json(client, "gs://some-bucket/state/champion.json")
    assert str(info.value) == ("gs://some-bucket/state/champion.json has 314,572,800 bytes, more than the "
                               "1,048,576 allowed for a JSON record (max_bytes)")
    blob.download_as_bytes.assert_not_called()


def test_read_json_and_the_champion_pointer_refuse_large_objects(gcs_client, upload):
    from gemini_tuning.services.champion import read_champion

    big = upload(json.dumps({"backend": "vertex", "tuned_model": "m", "pad": "x" * 2000}).encode())
    with pytest.raises(gcs.ObjectTooLarge, match=r"has 2,\d{3} bytes, more than the 1,000 allowed for a JSON"):
        gcs.read_json(gcs_client, big, max_bytes=1000)
    assert gcs.read_json(gcs_client, big, max_bytes=5000)[0]["tuned_model"] == "m"
    huge = upload(b'{"backend": "vertex", "tuned_model": "m", "pad": "' + b"x" * (1 << 16) + b'"}')
    with pytest.raises(gcs.ObjectTooLarge) as info:
        read_champion(gcs_client, huge)
    assert str(info.value) == f"{huge} has 65,588 bytes, more than the 65,536 allowed for a champion pointer " \
                              "(max_bytes)"


def test_open_source_checks_the_size_of_local_files_and_objects(gcs_client, upload, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"x" * 3000)
    uri = upload(b"x" * 3000)
    for src in (str(path), uri):
        with pytest.raises(gcs.ObjectTooLarge) as info:
            gcs.open_source(src, gcs_client, max_bytes=1000, what="a prompt set")
        assert str(info.value) == f"{src} has 3,000 bytes, more than the 1,000 allowed for a prompt set (max_bytes)"
        with gcs.open_source(src, gcs_client, max_bytes=3000) as fh:
            assert len(fh.read()) == 3000


def test_evaluation_rows_are_bounded_and_streamed(gcs_client, upload):
    from gemini_tuning.services.eval_results import MAX_RESULTS_BYTES, read_rows

    rows = [{"prompt_id": f"p{i}", "models": {}} for i in range(100)]
    uri = upload("".join(json.dumps(r) + "\n" for r in rows))
    assert read_rows(gcs_client, uri) == rows and MAX_RESULTS_BYTES == 512 << 20
    with pytest.raises(gcs.ObjectTooLarge, match=r"has 3,\d{3} bytes, more than the 1,000 allowed for evaluation "
                                                 r"results \(max_bytes\)"):
        read_rows(gcs_client, uri, max_bytes=1000)
    long_row = upload(json.dumps({"prompt_id": "p", "pad": "x" * 3000}) + "\n")
    with pytest.raises(ValueError, match=r":1: a line of 3,\d{3} bytes; the limit is 1,000 bytes per line"):
        gcs.read_jsonl(gcs_client, long_row, max_bytes=10_000, max_line_bytes=1000)


def test_prompt_sets_and_system_instructions_are_bounded(gcs_client, upload, tmp_path):
    from gemini_tuning.core.generation import GenerationSettings
    from gemini_tuning.services.eval_results import MAX_SYSTEM_INSTRUCTION_BYTES, plan_evaluation, read_text_or_file

    prompts = upload(b'{"prompt": "p", "reference": "r"}\n' * 100, name="data/prompts.jsonl")
    challenger = {"backend": "vertex", "tuned_model": "projects/p/locations/l/models/m@1"}
    with pytest.raises(gcs.ObjectTooLarge, match=r"has 3,400 bytes, more than the 1,000 allowed for a prompt set"):
        plan_evaluation(gcs_client, prompt_set=prompts, challenger=challenger, champion_pointer_uri=None,
                        base_model=None, settings=GenerationSettings(), max_prompt_set_bytes=1000)
    assert MAX_SYSTEM_INSTRUCTION_BYTES == 64 << 10
    big = tmp_path / "system.txt"
    big.write_text("Be brief. " * 10_000)
    with pytest.raises(gcs.ObjectTooLarge) as info:
        read_text_or_file(str(big), gcs_client)
    assert str(info.value) == f"{big} has 100,000 bytes, more than the 65,536 allowed for a system instruction " \
                              "(max_bytes)"
    small = tmp_path / "ok.txt"
    small.write_text("Be brief.\n")
    assert read_text_or_file(str(small), gcs_client) == "Be brief."


def test_the_system_instruction_file_must_be_an_allowed_input(gcs_client, tmp_path):
    from gemini_tuning.core.inputs import InputNotAllowed, InputPolicy
    from gemini_tuning.services.eval_results import read_text_or_file

    secret = tmp_path / "creds.txt"
    secret.write_text("token")
    root = tmp_path / "include"
    root.mkdir()
    policy = InputPolicy(roots=(str(root),), buckets=(BUCKET,))
    with pytest.raises(InputNotAllowed) as info:
        read_text_or_file(str(secret), gcs_client, policy=policy)
    assert str(info.value) == (f"system_instruction={str(secret)!r} is not an allowed input ({secret} is outside "
                               f"the input roots); allowed: local paths under {root}, gs:// objects in "
                               f"gs://{BUCKET} (settings [gemini_tuning] input_roots and allowed_buckets)")
    assert read_text_or_file("Answer in one word.", gcs_client, policy=policy) == "Answer in one word."  # inline


def test_metrics_files_above_the_limit_are_not_downloaded():
    plan = gcs.read_texts_plan("gs://b-1/metrics/", (".jsonl",), max_bytes=1000)
    req = next(plan)
    assert "size" in req.params["fields"]
    with pytest.raises(gcs.ObjectTooLarge, match=r"gs://b-1/metrics/big.jsonl has 5,000 bytes, more than the 1,000"):
        plan.send({"items": [{"name": "metrics/a.jsonl", "size": "10"}, {"name": "metrics/big.jsonl", "size": "5000"}]})


# ------------------------------------------------------------------------------------------ caches
def test_the_cache_is_bounded_by_bytes_not_only_entries():
    from gemini_tuning.core.bounded_cache import byte_bounded_cache

    calls = []

    @byte_bounded_cache(max_bytes=1000, maxsize=100)
    def value(key):
        calls.append(key)
        return ("x" * 400,)

    value("a"), value("b"), value("a"), value("c")        # c pushes out b (a was used more recently)
    assert calls == ["a", "b", "c"]
    info = value.cache_info()
    assert info.currsize == 2 and info.bytes <= 1000 and info.max_bytes == 1000
    value("b")
    assert calls == ["a", "b", "c", "b"]

    @byte_bounded_cache(max_bytes=100)
    def huge(key):
        calls.append(key)
        return "y" * 1000                                   # larger than the whole budget: returned, not kept

    huge(1), huge(1)
    assert calls[-2:] == [1, 1] and huge.cache_info().currsize == 0
    value.cache_clear()
    assert value.cache_info().currsize == 0


def test_the_ui_caches_evaluation_examples_by_bytes():
    from gemini_tuning.ui import data

    info = data.examples.cache_info()
    assert info.max_bytes == data.EXAMPLES_CACHE_BYTES <= 64 << 20


# ------------------------------------------------------------------------------------------ input locations
def check_input_location(value, **kw):
    from gemini_tuning.core.inputs import check_input_location as check

    return check(value, **kw)


def _not_allowed():
    try:
        from gemini_tuning.core.inputs import InputNotAllowed
    except ImportError:  # before the fix: the test fails on the missing module, not here
        return type("Missing", (Exception,), {})
    return InputNotAllowed


InputNotAllowed = _not_allowed()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "include"
    (r / "demo").mkdir(parents=True)
    (r / "demo" / "train.jsonl").write_text("{}\n")
    (tmp_path / "secret.txt").write_text("token")
    return r


def allowed(root, buckets=("acme-ml",)):
    return f"allowed: local paths under {root}, gs:// objects in {', '.join('gs://' + b for b in buckets)} " \
           "(settings [gemini_tuning] input_roots and allowed_buckets)"


def test_local_inputs_only_under_the_roots(root, tmp_path):
    ok = str(root / "demo" / "train.jsonl")
    assert check_input_location(ok, field="training_data", roots=[str(root)], buckets=["acme-ml"]) == ok
    assert check_input_location(str(root / "x" / ".." / "demo" / "train.jsonl"), field="f", roots=[str(root)],
                                buckets=()) == ok                            # normalised
    for value, real in (("/etc/passwd", "/etc/passwd"), (str(root / ".." / "secret.txt"), tmp_path / "secret.txt"),
                        (str(tmp_path / "include-evil" / "a.jsonl"), tmp_path / "include-evil" / "a.jsonl")):
        with pytest.raises(InputNotAllowed) as info:
            check_input_location(value, field="training_data", roots=[str(root)], buckets=["acme-ml"])
        assert str(info.value) == (f"training_data={value!r} is not an allowed input ({real} is outside the input "
                                   f"roots); {allowed(root)}")
        assert isinstance(info.value, ValueError)


def test_a_symlink_out_of_the_roots_is_refused(root, tmp_path):
    link = root / "demo" / "link.txt"
    os.symlink(tmp_path / "secret.txt", link)
    with pytest.raises(InputNotAllowed) as info:
        check_input_location(str(link), field="system_instruction", roots=[str(root)], buckets=["acme-ml"])
    assert str(info.value) == (f"system_instruction={str(link)!r} is not an allowed input ({tmp_path / 'secret.txt'} "
                               f"is outside the input roots); {allowed(root)}")


def test_gs_inputs_only_in_the_allowed_buckets(root):
    assert check_input_location("gs://acme-ml/t.jsonl", field="f", roots=[str(root)], buckets=["acme-ml"]) \
        == "gs://acme-ml/t.jsonl"
    with pytest.raises(InputNotAllowed) as info:
        check_input_location("gs://other-co/t.jsonl", field="eval_prompts", roots=[str(root)], buckets=["acme-ml"])
    assert str(info.value) == ("eval_prompts='gs://other-co/t.jsonl' is not an allowed input (the bucket "
                               f"gs://other-co is not allowed); {allowed(root)}")
    for value, why in (("https://example.com/t.jsonl", "only local paths and gs:// URIs are inputs"),
                       ("file:///etc/passwd", "only local paths and gs:// URIs are inputs"),
                       ("a\x00b", "the path holds a NUL byte"), ("", "empty")):
        with pytest.raises(InputNotAllowed) as info:
            check_input_location(value, field="f", roots=[str(root)], buckets=["acme-ml"])
        assert str(info.value) == f"f={value!r} is not an allowed input ({why}); {allowed(root)}"


def test_nothing_is_allowed_without_roots_or_buckets(root):
    with pytest.raises(InputNotAllowed, match=r"allowed: local paths under \(none\), gs:// objects in \(none\)"):
        check_input_location(str(root / "demo" / "train.jsonl"), field="f", roots=(), buckets=())
