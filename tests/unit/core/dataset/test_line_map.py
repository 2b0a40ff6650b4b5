"""The prepare step keeps, for each training example it writes, the source file's line: Vertex reports dropped
examples by their 1-based index in the file it was given, and the report names the user's own lines."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemini_tuning.core.dataset import DatasetOptions, line_ranges, prepare_dataset, source_lines

pytestmark = pytest.mark.fast


def example(i: int) -> dict:
    return {"input": f"question {i}", "output": f"answer {i}"}


def test_each_written_training_example_maps_back_to_its_source_line():
    # a duplicate that is dropped and a validation split: the written file's n-th example is not the source's n-th
    # line
    source = [example(0), example(1), example(2), example(1), *[example(i) for i in range(3, 40)]]
    lines = [x if isinstance(x, bytes) else json.dumps(x).encode() for x in source]
    train, val = io.BytesIO(), io.BytesIO()
    res = prepare_dataset(lines, source_name="data.jsonl", options=DatasetOptions(validation_fraction=0.2,
                                                                                  duplicates="drop"),
                          train_sink=train, validation_sink=val)
    written = [json.loads(x) for x in train.getvalue().splitlines()]
    assert len(res.train_lines) == res.train_count == len(written) and res.validation_count > 0
    mapping = source_lines(line_ranges(res.train_lines), range(1, len(written) + 2))
    for index, ex in enumerate(written, 1):
        src = json.loads(lines[mapping[index] - 1])
        assert ex["contents"][0]["parts"][0]["text"] == src["input"], index
    assert mapping[len(written) + 1] is None                          # past the end of the written file
    assert 4 not in res.train_lines                                   # the dropped duplicate of line 2
    assert "train_lines" not in res.to_dict()                         # not in XCom: one number per example
    json.dumps(res.to_dict())


@given(st.lists(st.integers(1, 10_000), unique=True).map(sorted))
def test_ranges_round_trip(lines):
    ranges = line_ranges(lines)
    assert sum(c for _, c in ranges) == len(lines)
    assert list(source_lines(ranges, range(1, len(lines) + 1)).values()) == lines
    # runs are maximal: two neighbouring runs never touch
    assert all(a[0] + a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
