"""House habits, checked by the test command: ruff over the whole tree, the import layering (import-linter
contracts in pyproject.toml), no emulator import in the DAGs, and the tests' own layout: helpers imported from the
``harness`` package (no ``sys.path`` edits), unit tests in folders that mirror the package, unique module names."""

from __future__ import annotations

import ast
import os
import re
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


#: How a test module finds its helpers: by a normal import from ``harness`` (or the module under test), never by
#: editing ``sys.path``, importing ``conftest`` or loading a file by its path. Checked on the text, so code that a
#: test runs in a subprocess (``python -c "..."``) counts too.
_IMPORT_HACKS = {
    "a sys.path edit": re.compile(r"sys\.path\.(insert|append|extend|remove)\(|sys\.path(\[[^]]*\])?\s*\+?=[^=]"
                                  r"|site\.addsitedir\("),
    "an import of conftest": re.compile(r"(from|import)\s+(tests\.)?conftest\b"),
    "an import by file path": re.compile(r"spec_from_file_location|SourceFileLoader|\brunpy\.run_path\(|load_source\("),
}


def test_tests_import_helpers_from_the_harness_package():
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}"
                      for what, pattern in _IMPORT_HACKS.items() if pattern.search(line)]
    assert not found, "import helpers from tests/harness (the `harness` package) instead:\n" + "\n".join(found)


def test_unit_tests_mirror_the_package():
    """``tests/unit/<a>/<b>/`` tests ``plugins/gemini_tuning/<a>/<b>/`` (tests of the package's top-level modules sit
    in ``tests/unit/`` itself); ``harness/`` tests ``tests/harness``; ``data/`` and ``pipeline_files/`` hold inputs."""
    unit, package = ROOT / "tests" / "unit", ROOT / "plugins" / "gemini_tuning"
    assert (package / "__init__.py").is_file()
    wrong = []
    for folder in sorted(p for p in unit.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        rel = folder.relative_to(unit)
        if rel.parts[0] in ("data", "pipeline_files") or rel == Path("harness"):
            continue
        if not (package / rel / "__init__.py").is_file():
            wrong.append(str(rel))
    assert not wrong, f"tests/unit folders that are no subpackage of plugins/gemini_tuning: {wrong}"


def test_test_module_names_are_unique():
    """pytest imports test modules by their base name (rootdir-relative ``prepend`` mode, no ``__init__.py``)."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {k: v for k, v in seen.items() if len(v) > 1}
