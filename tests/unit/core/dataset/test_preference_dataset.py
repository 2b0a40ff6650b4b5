"""Preference (DPO) data (``core.dataset.preference``): each rule of the Vertex format (reference §1b/§1c), the
conversion of ``{prompt, chosen, rejected}``, line numbers in the shared ``file:line: [rule]`` form."""

from __future__ import annotations

import io
import json

import pytest

from gemini_tuning.core.dataset.lines import LongLine, iter_lines
from gemini_tuning.core.dataset.preference import PREFERENCE_RULES, convert_preference_lines, validate_preference_lines
from gemini_tuning.core.issues import DataValidationError

pytestmark = pytest.mark.fast

# the docs' example, verbatim (§1b)
DOCS = ('{"system_instruction": {"parts": [{"text": "You are a chat bot."}]}, "contents": [{"role": "user", "parts": '
        '[{"text": "What is my favorite fruit?"}]}], "completions": [{"score": 1, "completion": {"role": "model", '
        '"parts": [{"text": "Apple! Apple! Apple!"}]}}, {"score": 0, "completion": {"role": "model", "parts": '
        '[{"text": "Your favorite fruit is apple."}]}}]}')


def ex(**over):
    d = json.loads(DOCS)
    d.update(over)
    return d


def turn(role, text="hi"):
    return {"role": role, "parts": [{"text": text}]}


def comp(score, text="ok", role="model"):
    return {"score": score, "completion": turn(role, text)}


def lines(*objs):
    return [o if isinstance(o, bytes) else (o if isinstance(o, str) else json.dumps(o)).encode() for o in objs]


def issues_of(*objs, convert=False):
    with pytest.raises(DataValidationError) as err:
        if convert:
            convert_preference_lines(lines(*objs), source_name="pref.jsonl", sink=io.BytesIO())
        else:
            validate_preference_lines(lines(*objs), source_name="pref.jsonl")
    return err.value.issues


def rules(*objs, **kw):
    return [(i.line, i.rule) for i in issues_of(*objs, **kw) if i.severity == "error"]


def test_the_docs_example_is_valid_and_written_canonically():
    sink = io.BytesIO()
    res = validate_preference_lines(lines(DOCS, DOCS.replace("Apple!", "Pear!")), source_name="p", sink=sink)
    assert res.count == 2 and res.formats == {"preference": 2} and not res.warnings
    first = json.loads(sink.getvalue().splitlines()[0])
    assert first == json.loads(DOCS) and list(first) == ["system_instruction", "contents", "completions"]
    assert res.stats["max_example_tokens"] > 0 and res.bytes == len(sink.getvalue())


def test_float_scores_and_multi_turn_contents_ending_with_user_are_fine():
    e = ex(contents=[turn("user"), turn("model"), turn("user")], completions=[comp(1.0), comp(0.0)])
    assert validate_preference_lines(lines(e), source_name="p").count == 1


@pytest.mark.parametrize("example, rule", [
    (ex(completions=[comp(1)]), "completion-count"),
    (ex(completions=[comp(1), comp(0), comp(0)]), "completion-count"),
    (ex(completions=[comp(1), comp(1)]), "completion-score"),
    (ex(completions=[comp(0), comp(0)]), "completion-score"),
    (ex(completions=[comp(1), comp(0.5)]), "completion-score"),
    (ex(completions=[comp(1), comp(True)]), "completion-score"),
    (ex(completions=[comp(1), comp("0")]), "completion-score"),
    (ex(completions=[comp(1), {"score": 0, "completion": [turn("model"), turn("model")]}]),
     "completion-not-single-turn"),
    (ex(completions=[comp(1), comp(0, role="user")]), "invalid-role"),
    (ex(contents=[turn("user"), turn("model")]), "last-turn-not-user"),
    (ex(contents=[turn("model"), turn("user")]), "role-order"),
    (ex(contents=[turn("user"), turn("user")]), "role-order"),
    (ex(contents=[turn("assistant")]), "invalid-role"),
    (ex(contents=[]), "bad-structure"),
    (ex(contents=[{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}]),
     "non-text-part"),
    (ex(contents=[{"role": "user", "parts": [{"text": "x", "fileData": {}}]}]), "non-text-part"),
    (ex(completions=[comp(1, "  "), comp(0)]), "empty-text"),
    (ex(contents=[turn("user", "")]), "empty-text"),
    (ex(system_instruction={"parts": [{"text": " "}]}), "empty-text"),
    (ex(completions=[comp(1), {"score": 0}]), "bad-structure"),
    (ex(completions="both"), "bad-structure"),
    ({"contents": [turn("user")]}, "bad-structure"),
    ([1, 2], "unknown-format"),
    ({"foo": 1}, "unknown-format"),
    ({"prompt": "p", "chosen": "a", "rejected": "b"}, "unknown-format"),       # validate takes the Vertex format
])
def test_each_rule(example, rule):
    assert (1, rule) in rules(example)
    assert rule in PREFERENCE_RULES


def test_the_token_limit_counts_the_input_and_the_longest_completion():
    """§1b: "The sum of maximum input and maximum completion token counts must be <= 128K" (131,072), with the
    core's estimate ceil(chars / 4)."""
    limit_chars = 131_072 * 4
    si_chars = len("You are a chat bot.")
    ok = ex(contents=[turn("user", "u" * (limit_chars - si_chars - 100))],
            completions=[comp(1, "a" * 100), comp(0, "b" * 10)])
    assert validate_preference_lines(lines(ok), source_name="p").stats["max_example_tokens"] == 131_072
    over = ex(contents=[turn("user", "u" * (limit_chars - si_chars - 100))],
              completions=[comp(1, "a" * 10), comp(0, "b" * 101)])
    (issue,) = issues_of(over)
    assert issue.rule == "too-many-tokens" and "131,073" in issue.message and "131,072" in issue.message


def test_line_numbers_and_the_shared_issue_format():
    bad = ex(completions=[comp(1), comp(1)])
    issues = issues_of(DOCS, "", DOCS, "{not json", bad, b"\xff\xfe", "")
    assert [(i.line, i.rule) for i in issues] == [(2, "empty-line"), (4, "invalid-json"), (5, "completion-score"),
                                                  (6, "not-utf8")]
    assert str(issues[2]).startswith("pref.jsonl:5: [completion-score]")


def test_whole_file_and_reader_rules():
    assert [(i.line, i.rule) for i in issues_of("", "  ")] == [(None, "empty-file")]
    data = DOCS.encode() + b"\n" + b"x" * (len(DOCS) + 50) + b"\n"
    long = list(iter_lines(io.BytesIO(data), max_line_bytes=len(DOCS)))
    assert isinstance(long[1], LongLine)
    with pytest.raises(DataValidationError) as err:
        validate_preference_lines(long, source_name="p")
    assert [(i.line, i.rule) for i in err.value.issues] == [(2, "line-too-long")]


def test_max_errors_stops_reading():
    bad = json.dumps(ex(completions=[comp(1)]))
    with pytest.raises(DataValidationError) as err:
        validate_preference_lines(lines(*[bad] * 10), source_name="p", max_errors=3)
    assert len(err.value.issues) == 3 and err.value.truncated


def test_unknown_fields_are_warnings_and_dropped():
    sink = io.BytesIO()
    res = validate_preference_lines(lines(ex(extra=1)), source_name="p", sink=sink)
    assert [(w.line, w.rule) for w in res.warnings] == [(1, "unknown-field")]
    assert "extra" not in json.loads(sink.getvalue())


def test_the_camel_case_alias_of_the_system_instruction():
    e = ex()
    e["systemInstruction"] = e.pop("system_instruction")
    sink = io.BytesIO()
    validate_preference_lines(lines(e), source_name="p", sink=sink)
    assert "system_instruction" in json.loads(sink.getvalue())


# ---------------------------------------------------------------------------------------------- conversion
def test_prompt_chosen_rejected_converts_to_the_docs_format():
    sink = io.BytesIO()
    res = convert_preference_lines(lines({"system": "You are a chat bot.", "prompt": "What is my favorite fruit?",
                                          "chosen": "Apple! Apple! Apple!",
                                          "rejected": "Your favorite fruit is apple."}),
                                   source_name="p", sink=sink)
    assert json.loads(sink.getvalue()) == json.loads(DOCS)
    assert res.formats == {"prompt_chosen_rejected": 1} and res.count == 1


def test_conversational_pairs_and_native_lines_pass_through():
    conv = {"prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"},
                       {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}],
            "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": "bad"}]}
    sink = io.BytesIO()
    res = convert_preference_lines(lines(conv, DOCS), source_name="p", sink=sink)
    first, second = (json.loads(x) for x in sink.getvalue().splitlines())
    assert first["system_instruction"] == {"parts": [{"text": "sys"}]}
    assert [t["role"] for t in first["contents"]] == ["user", "model", "user"]
    assert first["completions"] == [comp(1, "good"), comp(0, "bad")]
    assert second == json.loads(DOCS) and res.formats == {"prompt_chosen_rejected": 1, "preference": 1}


@pytest.mark.parametrize("line, rule", [
    ({"prompt": "p", "chosen": "a"}, "bad-structure"),
    ({"prompt": "p", "chosen": "", "rejected": "b"}, "empty-text"),
    ({"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}],
      "rejected": "b"}, "completion-not-single-turn"),
    ({"prompt": "p", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}, "invalid-role"),
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "chosen": "a",
      "rejected": "b"}, "last-turn-not-user"),
    ({"prompt": [{"role": "tool", "content": "q"}], "chosen": "a", "rejected": "b"}, "invalid-role"),
    ({"prompt": 3, "chosen": "a", "rejected": "b"}, "bad-structure"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "system": 1}, "bad-structure"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "contents": []}, "unknown-format"),
])
def test_conversion_errors_name_the_input_line(line, rule):
    assert (2, rule) in rules(DOCS, line, convert=True)


def test_conversion_warns_on_extra_fields():
    sink = io.BytesIO()
    res = convert_preference_lines(lines({"prompt": "p", "chosen": "a", "rejected": "b", "id": 7}),
                                   source_name="p", sink=sink)
    assert [(w.line, w.rule) for w in res.warnings] == [(1, "unknown-field")]
