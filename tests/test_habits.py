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


_FIELD_BASES = {"NamedTuple", "TypedDict", "BaseModel", "_Model", "Struct"}  # annotated attributes are fields
_ENUM_BASES = {"Enum", "IntEnum", "StrEnum", "Flag", "IntFlag"}


def _last_name(node: ast.expr) -> str:
    """``dataclasses.dataclass(frozen=True)`` -> ``dataclass``; ``Generic[T]`` -> ``Generic``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Subscript):
        node = node.value
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def _is_constructor_field(stmt: ast.stmt) -> bool:
    """A public annotated class attribute that is a constructor argument (not a ClassVar, not ``init=False``)."""
    if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)) or stmt.target.id.startswith("_"):
        return False
    if _last_name(stmt.annotation) == "ClassVar":
        return False
    value = stmt.value
    return not (isinstance(value, ast.Call) and _last_name(value) == "field"
                and any(k.arg == "init" and getattr(k.value, "value", True) is False for k in value.keywords))


def test_every_public_class_documents_its_arguments():
    """Every public top-level class of the package has a docstring, and each of its constructor arguments a
    ``:param name:`` (or ``:ivar name:``) line in the class or ``__init__`` docstring: the ``__init__`` (else
    ``__new__``) arguments, or the fields of a dataclass, NamedTuple, TypedDict, pydantic model (``_Model``) or
    msgspec Struct, subclasses of those included. ``*args`` / ``**kwargs`` are forwarded, not documented here; Enum
    members and Protocol methods are not arguments."""
    classes = []
    for path in sorted((ROOT / "plugins" / "gemini_tuning").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes += [(path, node) for node in tree.body if isinstance(node, ast.ClassDef)]
    field_bases, grown = set(_FIELD_BASES), True
    while grown:  # a subclass of a model is a model
        grown = False
        for _, node in classes:
            if node.name not in field_bases and any(_last_name(b) in field_bases for b in node.bases):
                field_bases.add(node.name)
                grown = True
    missing = []
    for path, node in classes:
        if node.name.startswith("_"):
            continue
        where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
        doc = ast.get_docstring(node) or ""
        if not doc.strip():
            missing.append(f"{where}: no docstring")
        bases = {_last_name(b) for b in node.bases}
        if bases & _ENUM_BASES or "Protocol" in bases:
            continue
        funcs = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
        ctor = funcs.get("__init__") or funcs.get("__new__")
        if ctor is not None:
            doc += "\n" + (ast.get_docstring(ctor) or "")
            names = [a.arg for a in ctor.args.posonlyargs + ctor.args.args + ctor.args.kwonlyargs][1:]  # no self
        elif any(_last_name(d) == "dataclass" for d in node.decorator_list) or bases & field_bases:
            names = [s.target.id for s in node.body if _is_constructor_field(s)]
        else:
            names = []
        missing += [f"{where}.{name}" for name in names
                    if not re.search(rf":(param|ivar)\s+([^\s:]+\s+)?{re.escape(name)}:", doc)]
    assert not missing, (f"{len(missing)} public class(es) / argument(s) without a docstring / `:param name:` line "
                         "(in the class or __init__ docstring):\n" + "\n".join(missing))
