import json

import pytest

from gemini_tuning.core.issues import DataValidationError
from gemini_tuning.core.promptset import Prompt, generated_id, parse_prompt_set

pytestmark = pytest.mark.fast


def jl(*objs) -> list[bytes]:
    return [json.dumps(o).encode() for o in objs]


def parse(lines, **kw):
    return parse_prompt_set(lines, source_name="eval.jsonl", **kw)


def issues_of(lines, **kw):
    with pytest.raises(DataValidationError) as ei:
        parse(lines, **kw)
    return ei.value


def rules_lines(err):
    return [(i.rule, i.line) for i in err.issues]


# ------------------------------------------------------------------------------------------ valid

def test_parses_all_fields_in_order():
    out = parse(jl(
        {"prompt": "Capital of France?", "reference": "Paris", "metric": "contains", "tags": ["geo", "easy"],
         "id": "q1"},
        {"prompt": "2+2?", "reference": "4"},
    ))
    assert out[0] == Prompt(id="q1", prompt="Capital of France?", reference="Paris", metric="contains",
                            tags=("geo", "easy"))
    assert out[1].metric is None and out[1].tags == ()
    assert out[1].id == generated_id("2+2?", "4")
    assert out[1].id.startswith("p-") and len(out[1].id) == 14


def test_null_optional_fields_are_absent_and_tags_deduplicated():
    out = parse(jl({"prompt": "p", "reference": "r", "metric": None, "tags": ["a", "b", "a"], "id": None}))
    assert out[0].metric is None
    assert out[0].tags == ("a", "b")
    assert out[0].id == generated_id("p", "r")


def test_blank_lines_bom_and_crlf_accepted():
    lines = [b'\xef\xbb\xbf{"prompt": "p1", "reference": "r1"}\r\n', b"\n", b"   \r\n",
             b'{"prompt": "p2", "reference": "r2"}']
    out = parse(lines)
    assert [p.prompt for p in out] == ["p1", "p2"]


def test_generated_ids_stable_across_reruns_and_insertions():
    a = parse(jl({"prompt": "x", "reference": "1"}, {"prompt": "y", "reference": "2"}))
    b = parse(jl({"prompt": "new", "reference": "0"}, {"prompt": "y", "reference": "2"},
                 {"prompt": "x", "reference": "1"}))
    assert {p.prompt: p.id for p in a} == {p.prompt: p.id for p in b if p.prompt != "new"}


def test_generated_ids_unique_for_repeated_content():
    out = parse(jl({"prompt": "x", "reference": "1"}, {"prompt": "x", "reference": "1"},
                   {"prompt": "x", "reference": "1"}))
    base = generated_id("x", "1")
    assert [p.id for p in out] == [base, base + "-2", base + "-3"]


def test_generated_id_never_collides_with_a_given_id():
    base = generated_id("x", "1")
    out = parse(jl({"prompt": "x", "reference": "1"}, {"prompt": "z", "reference": "9", "id": base}))
    assert out[1].id == base
    assert out[0].id == base + "-2"
    assert len({p.id for p in out}) == 2


def test_generated_id_depends_on_reference_too():
    assert generated_id("x", "1") != generated_id("x", "2")


# ----------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("line, rule", [
    (b'{"prompt": "p", "reference": "r"', "invalid-json"),
    (b'{"prompt": "p", "reference": "r"} trailing', "invalid-json"),
    (b'["prompt", "reference"]', "not-an-object"),
    (b'"just a string"', "not-an-object"),
    (b'{"reference": "r"}', "missing-prompt"),
    (b'{"prompt": "   ", "reference": "r"}', "empty-prompt"),
    (b'{"prompt": 3, "reference": "r"}', "bad-prompt"),
    (b'{"prompt": "p"}', "missing-reference"),
    (b'{"prompt": "p", "reference": 4}', "bad-reference"),
    (b'{"prompt": "p", "reference": null}', "bad-reference"),
    (b'{"prompt": "p", "reference": " \\n "}', "empty-reference"),
    (b'{"prompt": "p", "reference": "r", "metric": "bleu"}', "unknown-metric"),
    (b'{"prompt": "p", "reference": "r", "metric": 1}', "bad-metric"),
    (b'{"prompt": "p", "reference": "r", "tags": "geo"}', "bad-tags"),
    (b'{"prompt": "p", "reference": "r", "tags": ["geo", 1]}', "bad-tags"),
    (b'{"prompt": "p", "reference": "r", "tags": ["geo", " "]}', "empty-tag"),
    (b'{"prompt": "p", "reference": "r", "id": 7}', "bad-id"),
    (b'{"prompt": "p", "reference": "r", "id": ""}', "empty-id"),
    (b'{"prompt": "p", "reference": "r", "tag": ["geo"]}', "unknown-field"),
    (b'{"prompt": "p", "reference": "caf\xe9"}', "not-utf8"),
])
def test_each_rule_reported_with_its_line_number(line, rule):
    good = b'{"prompt": "ok", "reference": "ok"}'
    err = issues_of([good, b"", line, good])
    assert rules_lines(err) == [(rule, 3)]
    assert err.issues[0].file == "eval.jsonl"
    assert f"eval.jsonl:3: [{rule}]" in str(err)


def test_unknown_metric_message_lists_valid_metrics():
    err = issues_of(jl({"prompt": "p", "reference": "r", "metric": "bleu"}))
    assert "normalized_match" in err.issues[0].message and "'bleu'" in err.issues[0].message


def test_duplicate_id_names_first_line():
    err = issues_of(jl({"prompt": "a", "reference": "r", "id": "q"}, {"prompt": "b", "reference": "r", "id": "q2"},
                       {"prompt": "c", "reference": "r", "id": "q"}))
    assert rules_lines(err) == [("duplicate-id", 3)]
    assert "line 1" in err.issues[0].message


def test_several_problems_on_one_line_all_reported():
    err = issues_of(jl({"prompt": "", "reference": 1, "metric": "nope"}))
    assert rules_lines(err) == [("empty-prompt", 1), ("bad-reference", 1), ("unknown-metric", 1)]


def test_errors_collected_across_lines():
    err = issues_of([b"{", b'{"prompt": "p", "reference": "r"}', b"[]", b'{"prompt": "p"}'])
    assert rules_lines(err) == [("invalid-json", 1), ("not-an-object", 3), ("missing-reference", 4)]
    assert err.truncated is False


def test_error_collection_is_bounded():
    err = issues_of([b"{"] * 10, max_errors=3)
    assert rules_lines(err) == [("invalid-json", 1), ("invalid-json", 2), ("invalid-json", 3)]
    assert err.truncated is True
    assert "limit reached" in str(err)


@pytest.mark.parametrize("lines", [[], [b"", b"  \n"]])
def test_empty_file(lines):
    err = issues_of(lines)
    assert rules_lines(err) == [("empty-file", None)]


def test_invalid_lines_only_is_not_reported_as_empty():
    err = issues_of([b"{"])
    assert rules_lines(err) == [("invalid-json", 1)]


def test_max_errors_must_be_positive():
    with pytest.raises(ValueError):
        parse(jl({"prompt": "p", "reference": "r"}), max_errors=0)
