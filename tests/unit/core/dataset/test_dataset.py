import gzip
import hashlib
import io
import json
import random

import pytest

from gemini_tuning.core import dataset as D
from gemini_tuning.core.dataset import (
    RULES,
    DatasetOptions,
    PrepareResult,
    check_validation_target,
    dedup,
    iter_lines,
    leakage,
    normalize_prompt,
    prepare_dataset,
    prepare_validation_dataset,
)
from gemini_tuning.core.dataset import prepare as P
from gemini_tuning.core.issues import DataValidationError, Issue

pytestmark = pytest.mark.fast

# ----------------------------------------------------------------------------------------------- helpers


def enc(obj) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()


def vx(user="Hello", model="Hi there", system=None, **extra) -> dict:
    ex = {"contents": [{"role": "user", "parts": [{"text": user}]}, {"role": "model", "parts": [{"text": model}]}]}
    if system is not None:
        ex = {"systemInstruction": {"role": "system", "parts": [{"text": system}]}, **ex}
    ex.update(extra)
    return ex


def pair(i: int, **kw) -> dict:
    return {"input": f"question {i}", "output": f"answer {i}", **kw}


def run(lines, *, eval_prompts=None, val_sink=False, **opts):
    """prepare_dataset on dicts/bytes; returns (result, train bytes, validation bytes or None)."""
    train = io.BytesIO()
    val = io.BytesIO() if (val_sink or opts.get("validation_fraction")) else None
    res = prepare_dataset(
        [enc(x) for x in lines],
        source_name="data.jsonl",
        options=DatasetOptions(**opts),
        train_sink=train,
        validation_sink=val,
        eval_prompts=eval_prompts,
    )
    return res, train.getvalue(), (val.getvalue() if val is not None else None)


def fail(lines, **kw) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        run(lines, **kw)
    return info.value


def errors(lines, **kw) -> list[tuple[int | None, str]]:
    return [(i.line, i.rule) for i in fail(lines, **kw).issues if i.severity == "error"]


def rules_of(lines, **kw) -> set[str]:
    return {rule for _, rule in errors(lines, **kw)}


def out_lines(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.decode().splitlines()]


MANY = [pair(i) for i in range(25)]  # enough for the Gemini API minimum of 20


# ----------------------------------------------------------------------------------------------- formats


def test_format_contents_pass_and_canonical_output():
    line = {"contents": [{"parts": [{"text": "Hi"}], "role": "user"}, {"role": "model", "parts": [{"text": "Yo"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief"}]}}
    res, train, _ = run([line])
    assert train == (b'{"systemInstruction":{"role":"system","parts":[{"text":"Be brief"}]},"contents":[{"role":'
                     b'"user","parts":[{"text":"Hi"}]},{"role":"model","parts":[{"text":"Yo"}]}]}\n')
    assert res.formats == {"contents": 1} and res.train_count == 1


def test_format_contents_fail():
    assert errors([{"contents": "Hi"}]) == [(1, "bad-structure")]


def test_format_messages_pass_converts_roles_and_system():
    line = {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Yo"}, {"role": "user", "content": "Again"},
                         {"role": "assistant", "content": "Yo yo"}]}
    res, train, _ = run([line])
    (out,) = out_lines(train)
    assert out["systemInstruction"] == {"role": "system", "parts": [{"text": "Be brief"}]}
    assert [(c["role"], c["parts"][0]["text"]) for c in out["contents"]] == [
        ("user", "Hi"), ("model", "Yo"), ("user", "Again"), ("model", "Yo yo")]
    assert res.formats == {"messages": 1}


def test_format_messages_fail():
    issues = fail([{"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}]}]).issues
    assert [(i.line, i.rule) for i in issues] == [(1, "invalid-role")]
    assert "messages[1]" in issues[0].message
    assert errors([{"messages": [{"role": "user", "content": ["a", "b"]}]}]) == [(1, "bad-structure")]


@pytest.mark.parametrize("key", ["text_input", "textInput"])
def test_format_text_input_pass(key):
    res, train, _ = run([{key: "Hi", "output": "Yo"}])
    assert train == run([vx("Hi", "Yo")])[1]
    assert res.formats == {"text_input": 1}


def test_format_text_input_fail():
    assert errors([{"text_input": "Hi"}]) == [(1, "bad-structure")]
    assert errors([{"text_input": "Hi", "textInput": "Hi", "output": "x"}]) == [(1, "bad-structure")]


def test_format_input_output_pass():
    res, train, _ = run([{"input": "Hi", "output": "Yo"}])
    assert out_lines(train) == [vx("Hi", "Yo")]
    assert res.formats == {"input_output": 1}


def test_format_input_output_fail():
    issues = fail([{"input": 3, "output": "x"}]).issues
    assert [(i.line, i.rule) for i in issues] == [(1, "bad-structure")]
    assert "$.input" in issues[0].message


def test_mixed_file_detects_format_per_line_and_normalizes_identically():
    lines = [
        vx("q1", "a1"),
        {"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]},
        {"text_input": "q3", "output": "a3"},
        {"textInput": "q4", "output": "a4"},
        {"input": "q5", "output": "a5"},
        {"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]},  # = line 1
    ]
    res, train, _ = run(lines)
    assert res.formats == {"contents": 1, "messages": 2, "text_input": 2, "input_output": 1}
    assert out_lines(train)[:5] == [vx(f"q{i}", f"a{i}") for i in range(1, 6)]
    assert [(w.line, w.rule) for w in res.warnings] == [(6, "duplicate")]
    assert "line 1" in res.warnings[0].message


def test_gemini_api_target_output():
    lines = [vx(f"q{i}", f"a{i}") for i in range(10)] + [pair(i) for i in range(10)]
    lines += [{"messages": [{"role": "user", "content": f"m{i}"}, {"role": "assistant", "content": "r"}]}
              for i in range(5)]
    res, train, _ = run(lines, target="gemini_api")
    out = train.decode().splitlines()
    assert out[0] == '{"text_input":"q0","output":"a0"}'
    assert out[10] == '{"text_input":"question 0","output":"answer 0"}'
    assert out[20] == '{"text_input":"m0","output":"r"}'
    assert res.train_count == 25


# ----------------------------------------------------------------------------------------------- line rules


def test_invalid_json():
    issues = fail([vx(), b'{"contents": [', b'{"input": "a", "output": "b"} trailing', b"[1, 2"]).issues
    assert [(i.line, i.rule) for i in issues] == [(2, "invalid-json"), (3, "invalid-json"), (4, "invalid-json")]
    assert all(i.file == "data.jsonl" and i.severity == "error" for i in issues)
    run([b'  {"input": "a", "output": "b"}  \r'])  # surrounding whitespace and CR are valid JSON


def test_not_utf8():
    issues = fail([b'{"input": "caf\xe9", "output": "x"}']).issues
    assert [(i.line, i.rule) for i in issues] == [(1, "not-utf8")]
    assert "0xe9" in issues[0].message
    assert rules_of([b'{"input": "\\ud800", "output": "x"}']) <= {"invalid-json", "not-utf8"}  # lone surrogate
    _, train, _ = run([{"input": "café 東京", "output": "x"}])
    assert "café 東京".encode() in train


def test_empty_line_in_middle_fails_trailing_ok():
    assert errors([vx("a"), b"", b"  ", vx("b"), b"", vx("c")]) == [(2, "empty-line"), (5, "empty-line")]
    res, _, _ = run([vx("a"), vx("b"), b"", b"\r", b""])
    assert res.train_count == 2


def test_empty_file():
    assert errors([]) == [(None, "empty-file")]
    assert errors([b"", b"  ", b"\n"]) == [(None, "empty-file")]
    assert run([vx()])[0].train_count == 1


def test_unknown_format():
    lines = [b"[1, 2]", b'"text"', {"prompt": "a", "completion": "b"}, {**vx(), "messages": []}, {"output": "x"}]
    issues = fail(lines).issues
    assert [(i.line, i.rule) for i in issues] == [(n, "unknown-format") for n in range(1, 6)]
    assert "several formats" in issues[3].message
    assert run([vx()])[0].formats == {"contents": 1}


def test_bad_structure():
    lines = [
        {"contents": [{"parts": [{"text": "x"}]}]},  # missing role
        {"contents": [{"role": "user", "parts": [{"text": 5}]}]},
        {"contents": []},
        {"messages": [{"role": "user"}]},
        {"contents": [{"role": "user", "parts": [{"fileData": {}, "text": 7}]}]},
    ]
    issues = fail(lines).issues
    assert [(i.line, i.rule) for i in issues] == [(n, "bad-structure") for n in range(1, 6)]
    assert "role" in issues[0].message and "$.contents[0].parts[0].text" in issues[1].message


def test_unknown_field_warn_drops_field():
    line = {**vx(), "id": 7, "contents": [{"role": "user", "parts": [{"text": "Hello", "lang": "en"}]},
                                          {"role": "model", "parts": [{"text": "Hi there"}], "weight": 1}]}
    res, train, _ = run([line, {"input": "a", "output": "b", "systemInstruction": {"parts": [{"text": "s"}]}}])
    assert [(w.line, w.rule, w.severity) for w in res.warnings] == [(1, "unknown-field", "warning"),
                                                                    (2, "unknown-field", "warning")]
    assert "id" in res.warnings[0].message and "contents[0].parts[0].lang" in res.warnings[0].message
    assert out_lines(train) == [vx(), vx("a", "b")]


def test_unknown_field_fail():
    assert errors([vx(), {**vx(), "id": 7}], unknown_fields="fail") == [(2, "unknown-field")]
    assert errors([{"input": "a", "output": "b", "tools": []}], unknown_fields="fail") == [(1, "unknown-field")]
    assert run([vx()], unknown_fields="fail")[0].warnings == []


def test_invalid_role():
    bad = {"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "assistant", "parts": [{"text": "b"}]}]}
    assert errors([bad]) == [(1, "invalid-role")]
    ok = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert run([ok])[0].train_count == 1


def test_role_order():
    model_first = {"contents": [{"role": "model", "parts": [{"text": "a"}]}, {"role": "user", "parts": [{"text": "b"}]},
                                {"role": "model", "parts": [{"text": "c"}]}]}
    two_users = {"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "user", "parts": [{"text": "b"}]},
                              {"role": "model", "parts": [{"text": "c"}]}]}
    late_system = {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                                {"role": "assistant", "content": "b"}]}
    issues = fail([model_first, two_users, late_system]).issues
    assert [(i.line, i.rule) for i in issues] == [(1, "role-order"), (2, "role-order"), (3, "role-order")]
    assert "contents[1]" in issues[1].message
    multi = {"contents": [{"role": r, "parts": [{"text": t}]} for r, t in
                          [("user", "a"), ("model", "b"), ("user", "c"), ("model", "d")]]}
    assert run([multi])[0].train_count == 1


def test_last_turn_not_model():
    line = {"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "model", "parts": [{"text": "b"}]},
                         {"role": "user", "parts": [{"text": "c"}]}]}
    msgs = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]}
    issues = fail([line, msgs]).issues
    assert [(i.line, i.rule) for i in issues] == [(1, "last-turn-not-model"), (2, "last-turn-not-model")]
    assert "messages[1]" in issues[1].message and "assistant" in issues[1].message
    assert run([vx()])[0].train_count == 1


def test_empty_text():
    lines = [vx("  ", "b"), vx("a", "b", system=""), {"input": "a", "output": ""},
             {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "\n"}]},
             {"contents": [{"role": "user", "parts": []}, {"role": "model", "parts": [{"text": "b"}]}]}]
    assert errors(lines) == [(n, "empty-text") for n in range(1, 6)]
    assert run([vx(" a ", "b", system="s")])[0].train_count == 1


def test_non_text_parts_pass_through_for_vertex_and_fail_for_gemini_api():
    part = {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/cat.png"}}
    line = {"contents": [{"role": "user", "parts": [{"text": "What is this?"}, part]},
                         {"role": "model", "parts": [{"text": "A cat"}]}]}
    res, train, _ = run([line])
    assert b'{"fileData":{"fileUri":"gs://b/cat.png","mimeType":"image/png"}}' in train  # sorted keys
    assert res.stats["roles"]["user"]["chars"]["total"] == len("What is this?")  # the file is not counted
    image_only = {"contents": [{"role": "user", "parts": [part]}, {"role": "model", "parts": [{"text": "A cat"}]}]}
    assert run([image_only])[0].train_count == 1  # a non-text part is content, not an empty turn
    assert errors([line] + MANY, target="gemini_api") == [(1, "non-text-part")]


def test_tools_pass_through_for_vertex_and_fail_for_gemini_api():
    tools = [{"functionDeclarations": [{"name": "f", "description": "d"}]}]
    _, train, _ = run([{**vx(), "tools": tools}])
    assert train.startswith(b'{"contents":') and b'"tools":[{"functionDeclarations"' in train
    assert errors([{**vx(), "tools": tools}] + MANY, target="gemini_api") == [(1, "tools-unsupported")]


def test_too_many_tokens():
    limit = 131_072 * 4  # ceil(chars / 4) <= 131,072
    ok = vx("u" * (limit - 10), "m" * 5, system="s" * 5)
    res, _, _ = run([ok])
    assert res.stats["roles"]["example"]["tokens"]["max"] == 131_072
    issues = fail([vx("u" * (limit - 10), "m" * 6, system="s" * 5)]).issues
    assert [(i.line, i.rule) for i in issues] == [(1, "too-many-tokens")]
    assert "131,073" in issues[0].message


def test_too_many_tokens_pair_format():
    limit = 131_072 * 4
    assert run([{"input": "u" * (limit - 1), "output": "m"}])[0].train_count == 1
    assert errors([{"input": "u" * limit, "output": "m"}]) == [(1, "too-many-tokens")]


def test_gemini_input_and_output_length():
    ok = [{"input": "i" * 40_000, "output": "o" * 5_000}] + MANY
    assert run(ok, target="gemini_api")[0].train_count == 26
    bad = [{"input": "i" * 40_001, "output": "o"}, {"input": "i", "output": "o" * 5_001}] + MANY
    assert errors(bad, target="gemini_api") == [(1, "input-too-long"), (2, "output-too-long")]


def test_gemini_multi_turn_and_system_instruction():
    multi = {"contents": [{"role": r, "parts": [{"text": t}]} for r, t in
                          [("user", "a"), ("model", "b"), ("user", "c"), ("model", "d")]]}
    sys_msg = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                            {"role": "assistant", "content": "b"}]}
    assert errors([multi, vx(system="s"), sys_msg] + MANY, target="gemini_api") == [
        (1, "multi-turn-unsupported"), (2, "system-instruction-unsupported"),
        (3, "system-instruction-unsupported")]
    assert run([vx()] + MANY, target="gemini_api")[0].train_count == 26


def test_gemini_payload_too_large():
    big = [{"input": f"{i} " + "x" * 39_990, "output": "y" * 100} for i in range(101)]  # ~4.05 MB
    issues = fail(big, target="gemini_api").issues
    assert [i.rule for i in issues] == ["payload-too-large"]
    assert issues[0].line == 100  # where the running total crossed 4,000,000 bytes
    assert run(big[:99], target="gemini_api")[0].train_bytes < 4_000_000


def test_too_few_examples():
    assert errors(MANY[:19], target="gemini_api") == [(None, "too-few-examples")]
    assert run(MANY[:20], target="gemini_api")[0].train_count == 20
    # vertex: the only example lands in validation
    one = next([pair(i)] for i in range(100) if _split_value(pair(i)) < 0.5)
    assert errors(one, validation_fraction=0.5) == [(None, "too-few-examples")]
    assert run(one)[0].train_count == 1


def _split_value(line) -> float:
    """The documented split key: first 8 bytes of sha256(normalized line) as a fraction of 2**64."""
    _, train, _ = run([line])
    return int.from_bytes(hashlib.sha256(train.rstrip(b"\n")).digest()[:8], "big") / 2**64


def test_split_follows_documented_hash():
    lines = [pair(i) for i in range(60)]
    _, _, val = run(lines, validation_fraction=0.3)
    expected_val = {enc(vx(p["input"], p["output"])).replace(b", ", b",").replace(b": ", b":")
                    for p in lines if _split_value(p) < 0.3}
    assert _lines_of(val) == expected_val


def test_file_too_large(monkeypatch):
    monkeypatch.setattr(P, "VERTEX_MAX_FILE_BYTES", 1_000)
    lines = [pair(i) for i in range(30)]  # ~100 bytes each
    issues = fail(lines).issues
    assert [i.rule for i in issues] == ["file-too-large"]
    assert 9 <= issues[0].line <= 12
    assert run(lines[:5])[0].train_bytes < 1_000


def test_validation_too_large_absolute():
    lines = [pair(i) for i in range(10_400)]
    issues = fail(lines, validation_fraction=0.5).issues
    assert [(i.line, i.rule) for i in issues] == [(None, "validation-too-large")]
    assert "5,000" in issues[0].message


def test_validation_too_large_ratio_and_pass():
    lines = [pair(i) for i in range(3_000)]
    assert errors(lines, validation_fraction=0.4) == [(None, "validation-too-large")]  # ~1200 val vs ~1800 train
    more = [pair(i) for i in range(8_000)]
    res, _, _ = run(more, validation_fraction=0.15)  # ~1200 validation, ~17 % of training: allowed
    assert 1_000 < res.validation_count < 0.3 * res.train_count


# ----------------------------------------------------------------------------------------------- duplicates


DUPS = [pair(1), pair(2), pair(1), {"messages": [{"role": "user", "content": "question 2"},
                                                  {"role": "assistant", "content": "answer 2"}]}]


def test_duplicates_warn():
    res, train, _ = run(DUPS)
    assert [(w.line, w.rule) for w in res.warnings] == [(3, "duplicate"), (4, "duplicate")]
    assert "line 1" in res.warnings[0].message and "line 2" in res.warnings[1].message
    assert res.train_count == 4 and res.dropped_duplicates == 0 and len(train.splitlines()) == 4


def test_duplicates_fail():
    assert errors(DUPS, duplicates="fail") == [(3, "duplicate"), (4, "duplicate")]


def test_duplicates_drop():
    res, train, _ = run(DUPS, duplicates="drop")
    assert res.train_count == 2 and res.dropped_duplicates == 2 and res.warnings == []
    assert out_lines(train) == [vx("question 1", "answer 1"), vx("question 2", "answer 2")]
    assert res.stats["examples"]["dropped_duplicates"] == 2


def test_no_duplicates_pass():
    res, _, _ = run([pair(i) for i in range(50)], duplicates="fail")
    assert res.warnings == [] and res.train_count == 50


def test_warnings_are_capped_per_rule():
    res, _, _ = run([pair(0)] * 8, max_errors=3)
    dup = [w for w in res.warnings if w.rule == "duplicate"]
    assert [w.line for w in dup] == [2, 3, 4, None]
    assert "4 more" in dup[-1].message


def test_digest_set_grows_and_finds_everything():
    s = dedup._DigestSet()
    rng = random.Random(3)
    keys = [rng.getrandbits(64) | 1 for _ in range(50_000)]
    assert all(s.add(k, i + 1) for i, k in enumerate(keys))
    assert not any(s.add(k, 0) for k in keys)
    assert s.first_line(keys[0]) == 1 and s.first_line(keys[-1]) == 50_000
    assert s.add(2, 1) and not s.add(2, 2)


# ----------------------------------------------------------------------------------------------- leakage


def test_normalize_prompt():
    assert normalize_prompt('  "What is  the\tCapital of FRANCE?"  ') == "what is the capital of france"
    assert normalize_prompt("¿Qué tal… «Straße»!") == "qué tal... «strasse"  # NFKC turns … into ...
    assert normalize_prompt("¡Hola!") == "hola"
    assert normalize_prompt("ｆｕｌｌ　ｗｉｄｔｈ。") == "full width"
    assert normalize_prompt("a - b") == "a - b"
    assert normalize_prompt("...") == ""


LEAK_LINES = [pair(1), {"input": "What is the capital of France?", "output": "Paris"}, pair(3),
              {"contents": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "x"}]},
                            {"role": "user", "parts": [{"text": "QUESTION  3"}]},
                            {"role": "model", "parts": [{"text": "y"}]}]}]
EVAL = ["what is the capital of france", "Question 3."]


def test_leakage_warn():
    res, _, _ = run(LEAK_LINES, eval_prompts=EVAL)
    assert res.leaked_lines == [2, 3, 4]
    assert [(w.line, w.rule) for w in res.warnings] == [(2, "leakage"), (3, "leakage"), (4, "leakage")]


def test_leakage_fail():
    assert errors(LEAK_LINES, eval_prompts=EVAL, leakage="fail") == [(2, "leakage"), (3, "leakage"), (4, "leakage")]


def test_leakage_off_and_clean_pass():
    assert run(LEAK_LINES, eval_prompts=EVAL, leakage="off")[0].leaked_lines == []
    res, _, _ = run([pair(1), pair(2)], eval_prompts=EVAL, leakage="fail")
    assert res.leaked_lines == [] and res.warnings == []


def test_leakage_checks_training_examples_only():
    lines = [{"input": f"prompt {i}", "output": "x"} for i in range(200)]
    res, _, _ = run(lines, eval_prompts=[f"prompt {i}" for i in range(200)], validation_fraction=0.3)
    assert len(res.leaked_lines) == res.train_count and res.validation_count > 0


# ----------------------------------------------------------------------------------------------- split


def _lines_of(data: bytes) -> set[bytes]:
    return set(data.splitlines())


def test_split_is_deterministic_and_independent_of_order():
    lines = [pair(i) for i in range(2_000)]
    res1, train1, val1 = run(lines, validation_fraction=0.2)
    shuffled = lines[:]
    random.Random(5).shuffle(shuffled)
    res2, train2, val2 = run(shuffled, validation_fraction=0.2)
    assert _lines_of(val1) == _lines_of(val2) and _lines_of(train1) == _lines_of(train2)
    assert res1.validation_count == res2.validation_count
    assert 0.17 < res1.validation_count / 2_000 < 0.23
    assert res1.train_count + res1.validation_count == 2_000
    assert not (_lines_of(train1) & _lines_of(val1))
    assert res1.validation_sha256 == hashlib.sha256(val1).hexdigest()
    assert res1.validation_bytes == len(val1)


def test_split_does_not_depend_on_input_format():
    as_pairs = [pair(i) for i in range(300)]
    as_msgs = [{"messages": [{"role": "user", "content": p["input"]}, {"role": "assistant", "content": p["output"]}]}
               for p in as_pairs]
    _, t1, v1 = run(as_pairs, validation_fraction=0.3)
    _, t2, v2 = run(as_msgs, validation_fraction=0.3)
    assert (t1, v1) == (t2, v2)


def test_no_split_without_fraction_and_sink_required():
    res, _, val = run([pair(i) for i in range(10)], val_sink=True)
    assert res.validation_count == 0 and val == b"" and res.validation_sha256 == hashlib.sha256(b"").hexdigest()
    res, _, _ = run([pair(1)])
    assert res.validation_sha256 is None
    with pytest.raises(ValueError, match="validation_sink"):
        prepare_dataset([enc(pair(1))], source_name="x", options=DatasetOptions(validation_fraction=0.1),
                        train_sink=io.BytesIO())


# ----------------------------------------------------------------------------------------------- a validation file


def run_validation(lines, *, train_count, **opts):
    """prepare_validation_dataset on dicts/bytes; returns (result, validation bytes)."""
    sink = io.BytesIO()
    res = prepare_validation_dataset([enc(x) for x in lines], source_name="val.jsonl",
                                     options=DatasetOptions(**opts), validation_sink=sink, train_count=train_count)
    return res, sink.getvalue()


def validation_errors(lines, **kw) -> list[tuple[str, int | None, str]]:
    with pytest.raises(DataValidationError) as info:
        run_validation(lines, **kw)
    return [(i.file, i.line, i.rule) for i in info.value.issues if i.severity == "error"]


def test_validation_file_has_no_training_minimum():
    res, data = run_validation([pair(i) for i in range(3)], train_count=30)
    assert (res.train_count, res.validation_count, res.train_bytes) == (0, 3, 0)
    assert res.validation_sha256 == hashlib.sha256(data).hexdigest() and res.validation_bytes == len(data)
    assert data == run([pair(i) for i in range(3)])[1]  # the same bytes as the same examples in a training file
    assert res.stats["examples"]["validation"] == 3 and res.stats["billable_tokens"] == 0
    one, _ = run_validation([pair(1)], train_count=1)  # one example is a valid validation set
    assert one.validation_count == 1


def test_validation_file_size_against_the_training_set():
    lines = [pair(i) for i in range(1_001)]
    assert validation_errors(lines, train_count=3_000) == [("val.jsonl", None, "validation-too-large")]  # > 900
    assert run_validation(lines, train_count=3_337)[0].validation_count == 1_001  # 30 % of 3,337 = 1,001.1
    assert run_validation(lines[:1_000], train_count=10)[0].validation_count == 1_000  # the ratio applies above 1,000
    big = [pair(i) for i in range(5_001)]
    with pytest.raises(DataValidationError, match="at most 5,000"):
        run_validation(big, train_count=1_000_000)


def test_validation_file_keeps_the_per_example_and_file_rules(monkeypatch):
    bad = [pair(1), {"contents": [{"role": "user", "parts": [{"text": "no answer"}]}]}]
    assert validation_errors(bad, train_count=10) == [("val.jsonl", 2, "last-turn-not-model")]
    assert validation_errors([b""], train_count=10) == [("val.jsonl", None, "empty-file")]
    monkeypatch.setattr(P, "VERTEX_MAX_FILE_BYTES", 1_000)
    with pytest.raises(DataValidationError, match=r"\[file-too-large\] the validation file exceeds"):
        run_validation([pair(i) for i in range(30)], train_count=1_000)


def test_validation_file_is_refused_for_the_gemini_api_before_reading():
    read = []

    def lines():
        read.append(1)
        yield enc({"text_input": "a", "output": "b"})

    with pytest.raises(DataValidationError) as info:
        prepare_validation_dataset(lines(), source_name="val.jsonl", options=DatasetOptions(target="gemini_api"),
                                   validation_sink=io.BytesIO(), train_count=100)
    assert [(i.file, i.line, i.rule) for i in info.value.issues] == [("val.jsonl", None, "validation-unsupported")]
    assert "val.jsonl: [validation-unsupported] the Gemini API takes no validation data" in str(info.value)
    assert read == []
    check_validation_target(DatasetOptions(), "val.jsonl")  # vertex takes one: no error
    with pytest.raises(ValueError, match="validation_fraction must be 0"):
        run_validation([pair(1)], train_count=10, validation_fraction=0.1)


def test_package_modules_stay_small():
    import importlib
    import inspect
    import pkgutil

    for m in pkgutil.iter_modules(D.__path__):
        lines = inspect.getsource(importlib.import_module(f"{D.__name__}.{m.name}")).count("\n")
        assert lines <= 450, (m.name, lines)


# ----------------------------------------------------------------------------------------------- determinism, hashes


def test_same_examples_same_bytes_and_sha():
    lines = [pair(i) for i in range(100)] + [vx("a", "b", system="s")]
    r1, t1, _ = run(lines)
    r2, t2, _ = run([json.dumps(json.loads(enc(x)), indent=None, separators=(", ", " : ")).encode() for x in lines])
    assert t1 == t2 and r1.train_sha256 == r2.train_sha256 == hashlib.sha256(t1).hexdigest()
    assert r1.train_bytes == len(t1)


def test_output_larger_than_write_buffer(monkeypatch):
    monkeypatch.setattr(P, "_BUFFER_BYTES", 256)
    writes = []

    class Sink:
        def write(self, b):
            writes.append(bytes(b))
            return len(b)

    lines = [pair(i) for i in range(100)]
    res = prepare_dataset([enc(x) for x in lines], source_name="x", options=DatasetOptions(), train_sink=Sink())
    data = b"".join(writes)
    assert len(writes) > 10 and res.train_sha256 == hashlib.sha256(data).hexdigest()
    assert data == run(lines)[1]


# ----------------------------------------------------------------------------------------------- errors


def test_error_collection_bounded_by_max_errors_and_stops_reading():
    consumed = []

    def source():
        for n in range(1, 1_001):
            consumed.append(n)
            yield enc(pair(n)) if n % 2 else b"{not json"

    with pytest.raises(DataValidationError) as info:
        prepare_dataset(source(), source_name="big.jsonl", options=DatasetOptions(max_errors=10),
                        train_sink=io.BytesIO())
    err = info.value
    assert err.truncated is True
    assert [(i.line, i.rule) for i in err.issues] == [(n, "invalid-json") for n in range(2, 21, 2)]
    assert len(consumed) == 20
    assert "big.jsonl:2: [invalid-json]" in str(err)


def test_all_errors_reported_when_under_limit():
    lines = [b"{bad"] * 3 + [pair(i) for i in range(5)]
    err = fail(lines)
    assert err.truncated is False and [i.line for i in err.issues] == [1, 2, 3]


def test_error_issue_list_includes_warnings():
    err = fail([pair(1), pair(1), b"{bad"])
    assert [(i.line, i.rule, i.severity) for i in err.issues] == [(2, "duplicate", "warning"),
                                                                  (3, "invalid-json", "error")]


def test_rule_table_is_complete():
    import importlib
    import inspect
    import pkgutil

    source = "".join(inspect.getsource(importlib.import_module(f"{D.__name__}.{m.name}"))
                     for m in pkgutil.iter_modules(D.__path__))
    for rule in RULES:
        assert f"``{rule}``" in D.__doc__, rule
        assert source.count(f'"{rule}"') >= 2, rule  # in RULES and raised somewhere


def test_options_are_validated():
    for bad in ({"target": "openai"}, {"validation_fraction": 1.0}, {"validation_fraction": -0.1},
                {"duplicates": "keep"}, {"unknown_fields": "drop"}, {"leakage": "maybe"}, {"max_errors": 0},
                {"epochs": 0}):
        with pytest.raises(ValueError):
            DatasetOptions(**bad)


# ----------------------------------------------------------------------------------------------- stats


def test_stats_hand_checked():
    lines = [
        {"input": "abcd", "output": "ab"},  # user 4, model 2, total 6
        vx("abcdefgh", "x", system="sys"),  # system 3, user 8, model 1, total 12
        {"messages": [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "abcde"}]},  # 3, 5: 8
    ]
    res, _, _ = run(lines, epochs=3)
    s = res.stats
    assert s["examples"] == {"train": 3, "validation": 0, "dropped_duplicates": 0, "duplicates": 0, "lines": 3}
    roles = s["roles"]
    assert roles["user"]["chars"] == {"examples": 3, "total": 15, "min": 3, "median": 4, "p95": 8, "max": 8}
    assert roles["user"]["tokens"] == {"examples": 3, "total": 4, "min": 1, "median": 1, "p95": 2, "max": 2}
    assert roles["model"]["chars"] == {"examples": 3, "total": 8, "min": 1, "median": 2, "p95": 5, "max": 5}
    assert roles["model"]["tokens"] == {"examples": 3, "total": 4, "min": 1, "median": 1, "p95": 2, "max": 2}
    assert roles["system"]["chars"] == {"examples": 1, "total": 3, "min": 3, "median": 3, "p95": 3, "max": 3}
    assert roles["system"]["tokens"]["total"] == 1
    assert roles["example"]["chars"] == {"examples": 3, "total": 26, "min": 6, "median": 8, "p95": 12, "max": 12}
    assert roles["example"]["tokens"] == {"examples": 3, "total": 7, "min": 2, "median": 2, "p95": 3, "max": 3}
    assert s["train_tokens"] == 7 and s["billable_tokens"] == 21 and s["epochs"] == 3
    json.dumps(res.to_dict())  # JSON-able


def test_stats_empty_role_and_percentile_ranks():
    res, _, _ = run([{"input": "x" * n, "output": "y"} for n in range(1, 101)])
    user = res.stats["roles"]["user"]["chars"]
    assert (user["min"], user["median"], user["p95"], user["max"]) == (1, 50, 95, 100)
    assert res.stats["roles"]["system"]["chars"] == {"examples": 0, "total": 0, "min": None, "median": None,
                                                     "p95": None, "max": None}


def test_billable_tokens_count_training_only():
    lines = [pair(i) for i in range(400)]
    res, train, _ = run(lines, validation_fraction=0.25, epochs=2)
    expected = sum(-(-sum(len(c["parts"][0]["text"]) for c in ex["contents"]) // 4) for ex in out_lines(train))
    assert res.stats["train_tokens"] == expected and res.stats["billable_tokens"] == 2 * expected
    assert res.validation_count > 50


# ----------------------------------------------------------------------------------------------- reading


def _read(data: bytes, **kw) -> list[bytes]:
    return list(iter_lines(io.BytesIO(data), **kw))


def test_iter_lines_plain():
    assert _read(b"a\nb\n") == [b"a", b"b"]
    assert _read(b"a\nb") == [b"a", b"b"]
    assert _read(b"a\r\n\nb\n\n") == [b"a\r", b"", b"b", b""]
    assert _read(b"") == [] and _read(b"x") == [b"x"]
    data = b"".join(b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(500))
    assert _read(data, chunk_size=7) == data.split(b"\n")[:-1]
    assert _read(b"short\n" + b"y" * 100 + b"\nend", chunk_size=8) == [b"short", b"y" * 100, b"end"]


class _Pipe(io.RawIOBase):
    """Non-seekable stream returning at most 3 bytes per read."""

    def __init__(self, data: bytes):
        self._data = data

    def readable(self):
        return True

    def read(self, n=-1):
        n = 3 if n is None or n < 0 else min(n, 3)
        out, self._data = self._data[:n], self._data[n:]
        return out


def test_iter_lines_gzip_detected_by_magic_bytes():
    data = b"".join(enc(pair(i)) + b"\n" for i in range(300))
    gz = gzip.compress(data)
    assert _read(gz) == data.split(b"\n")[:-1]
    assert list(iter_lines(_Pipe(gz))) == data.split(b"\n")[:-1]
    assert list(iter_lines(_Pipe(data))) == data.split(b"\n")[:-1]
    assert _read(gzip.compress(b"a\nb") + gzip.compress(b"\nc\n")) == [b"a", b"b", b"c"]  # multi-member
    res = prepare_dataset(iter_lines(io.BytesIO(gz)), source_name="data.jsonl.gz", options=DatasetOptions(),
                          train_sink=io.BytesIO())
    assert res.train_count == 300


def test_corrupt_gzip():
    gz = gzip.compress(b"".join(enc(pair(i)) + b"\n" for i in range(3000)))
    with pytest.raises(DataValidationError) as info:
        prepare_dataset(iter_lines(io.BytesIO(gz[: len(gz) // 2]), chunk_size=1024), source_name="d.gz",
                        options=DatasetOptions(), train_sink=io.BytesIO())
    assert [i.rule for i in info.value.issues] == ["corrupt-gzip"]


def test_utf8_bom_on_first_line_is_accepted():
    res, train, _ = run([b"\xef\xbb\xbf" + enc(pair(1)), enc(pair(2))])
    assert res.train_count == 2 and not train.startswith(b"\xef")


def test_lines_with_trailing_newlines_are_accepted():
    res, _, _ = run([enc(pair(1)) + b"\n", enc(pair(2)) + b"\r\n"])
    assert res.train_count == 2


def test_result_type():
    res, _, _ = run([pair(1)])
    assert isinstance(res, PrepareResult)
    assert all(isinstance(w, Issue) for w in res.warnings)


# ----------------------------------------------------------------------------------------------- less common shapes


def test_system_instruction_snake_case_alias():
    line = {"system_instruction": {"parts": [{"text": "s"}]}, **vx()}
    _, train, _ = run([line])
    assert out_lines(train) == [vx(system="s")]
    both = {"system_instruction": {"parts": [{"text": "s"}]}, **vx(system="t")}
    assert errors([both]) == [(1, "bad-structure")]


def test_multi_part_turns():
    line = {"contents": [{"role": "user", "parts": [{"text": "Hello, "}, {"text": "world"}]},
                         {"role": "model", "parts": [{"text": "Hi"}, {"text": "!"}]}]}
    res, train, _ = run([line])
    assert out_lines(train) == [line] and res.stats["roles"]["user"]["chars"]["total"] == 12
    res, train, _ = run([line] + MANY, target="gemini_api")
    assert train.splitlines()[0] == b'{"text_input":"Hello, world","output":"Hi!"}'


def test_non_text_part_in_system_instruction_and_text_with_metadata():
    line = {"systemInstruction": {"parts": [{"text": "s"}, {"inlineData": {"mimeType": "text/plain", "data": "eA=="}}]},
            "contents": [{"role": "user", "parts": [{"text": "Hello"}]},
                         {"role": "model", "parts": [{"text": "Thinking", "thought": True}, {"text": "Hi"}]}]}
    res, train, _ = run([line])
    (out,) = out_lines(train)
    assert out["systemInstruction"]["parts"][1] == {"inlineData": {"data": "eA==", "mimeType": "text/plain"}}
    assert out["contents"][1]["parts"][0] == {"text": "Thinking", "thought": True}
    assert res.stats["roles"]["model"]["chars"]["total"] == len("ThinkingHi")
    assert res.stats["roles"]["system"]["chars"]["total"] == 1


def test_fast_and_slow_paths_give_the_same_bytes():
    plain = vx("a", "b", system="s")
    with_unknown = {**plain, "id": 1}  # takes the generic path, the field is dropped
    _, t1, _ = run([plain])
    res, t2, _ = run([with_unknown])
    assert t1 == t2 and res.warnings[0].rule == "unknown-field"


@pytest.mark.parametrize(
    "text",
    ["Hello!", "  -- Hello, World?  ", "What is 2+2?", "a\x1cb  c", "...", "", "x", "(quoted) text", "tab\tsep",
     "hello.world", "Trailing space ", "ALL CAPS!!!", "#tag rest", "e.g. this"],
)
def test_ascii_leak_key_matches_normalized_first_word(text):
    assert leakage._ascii_leak_key(text) == leakage._first_word_key(normalize_prompt(text))


def test_leakage_prefilter_does_not_miss_non_ascii_or_punctuated_prompts():
    lines = [{"input": "¿Dónde está Zürich?", "output": "x"},
             {"input": "  ...What  is the CAPITAL of France??", "output": "y"}]
    res, _, _ = run(lines, eval_prompts=["dónde está zürich", "What is the capital of France"])
    assert res.leaked_lines == [1, 2]
    assert run(lines, eval_prompts=[])[0].leaked_lines == []


def test_ascii_leak_key_fuzz():
    rng = random.Random(11)
    alphabet = "ab Z9 .,!?-'\"()\t\n\x0b\x1c\x1f:;/"
    for _ in range(3_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert leakage._ascii_leak_key(text) == leakage._first_word_key(normalize_prompt(text)), repr(text)
