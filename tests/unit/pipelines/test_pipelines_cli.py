"""``python -m gemini_tuning.pipelines check``: exit codes and output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from harness.paths import PIPELINE_FILES, ROOT

pytestmark = pytest.mark.fast

FILES = PIPELINE_FILES


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gemini_tuning.pipelines", "check", *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": "plugins"}, capture_output=True, text=True, timeout=60)


def test_broken_folder_exits_1_and_prints_every_error():
    from gemini_tuning.pipelines.loader import load_folder

    out = check(str(FILES / "broken"))
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "2 pipelines OK, 10 files with errors"
    expected = [str(e) for fe in load_folder(FILES / "broken").errors for e in fe.errors]
    assert lines[:-1] == expected and len(expected) == 10
    assert any(line.endswith("syntax_error.yaml:4: : YAML syntax error: did not find expected ',' or '}' "
                             "(while parsing a flow mapping)") for line in lines)
    assert any("out_of_range.yaml:11: policy.gate.min_score: " in line for line in lines)


def test_good_folder_exits_0(tmp_path):
    for name in ("good_a.yaml", "good_b.yaml"):
        shutil.copy(FILES / "broken" / name, tmp_path / name)
    out = check(str(tmp_path), str(tmp_path / "missing"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "2 pipelines OK, 0 files with errors"


def test_demo_pipelines_folder_has_the_demo_files():
    out = check("--json", "pipelines")
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    ids = {p["id"] for p in data["pipelines"]}
    assert {"router", "replies"} <= ids
    assert not [e for e in data["errors"] if os.path.basename(e["file"]) in ("router.yaml", "replies.yaml")]


def test_json_output():
    out = check("--json", str(FILES / "broken"))
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert [p["id"] for p in data["pipelines"]] == ["good_a", "good_b"]
    assert len(data["errors"]) == 10
    first = {e["field"]: e for e in data["errors"]}["policy.gate.min_score"]
    assert first["line"] == 11 and first["file"].endswith("out_of_range.yaml") and "less than" in first["rule"]


def test_usage_error_exits_2():
    out = subprocess.run([sys.executable, "-m", "gemini_tuning.pipelines"], cwd=ROOT, capture_output=True,
                         env={**os.environ, "PYTHONPATH": "plugins"}, text=True, timeout=60)
    assert out.returncode == 2
