"""House habits, checked by the test command: ruff over the whole tree, the import layering (import-linter
contracts in pyproject.toml), and no emulator import in the DAGs."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_ruff_finds_nothing():
    out = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_layers_hold():
    out = _run(str(BIN / "lint-imports"), "--no-cache", PYTHONPATH=f"{ROOT / 'plugins'}{os.pathsep}{ROOT}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout and "kept" in out.stdout, out.stdout


def test_dags_import_no_emulator():
    dag_files = sorted((ROOT / "dags").rglob("*.py"))
    assert any(p.name == "gemini_tuning_pipeline.py" for p in dag_files), f"no DAG files found: {dag_files}"
    for path in dag_files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "emulator" or n.startswith("emulator.") for n in names), f"{path}: imports {names}"
