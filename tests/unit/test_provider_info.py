"""``provider_info`` lists what the code has: every module and option it names exists, and every operator, trigger
and ``[gemini_tuning]`` option the code has is listed; the dict passes Airflow's own provider_info schema."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

from gemini_tuning.provider_info import get_provider_info

pytestmark = pytest.mark.fast

PACKAGE = Path(importlib.import_module("gemini_tuning").__file__).parent
INFO = get_provider_info()


def _modules(kind: str) -> set[str]:
    return {m for entry in INFO[kind] for m in entry["python-modules"]}


def _defining(package: str, base: type) -> set[str]:
    """Modules of ``package`` that define a public, concrete subclass of ``base``."""
    out = set()
    for path in sorted((PACKAGE / package.split(".", 1)[1].replace(".", "/")).glob("*.py")):
        name = f"{package}.{path.stem}"
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == name and issubclass(cls, base) and not cls.__name__.startswith("_")
                    and "Base" not in cls.__name__ and not inspect.isabstract(cls)):
                out.add(name)
    return out


def test_it_passes_airflows_provider_info_schema():
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(INFO, schema)


def test_every_listed_module_imports_and_every_integration_is_declared():
    names = {i["integration-name"] for i in INFO["integrations"]}
    for kind in ("operators", "sensors", "hooks", "triggers"):
        for entry in INFO[kind]:
            assert entry["integration-name"] in names, (kind, entry)
            for module in entry["python-modules"]:
                importlib.import_module(module)


def test_every_operator_and_trigger_module_is_listed():
    from airflow.sdk import BaseOperator
    from airflow.triggers.base import BaseTrigger

    assert _defining("gemini_tuning.operators", BaseOperator) == _modules("operators")
    assert _defining("gemini_tuning.triggers", BaseTrigger) == _modules("triggers")


def test_the_config_section_is_every_gemini_tuning_option_the_code_reads():
    read = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        read |= set(re.findall(r'setting\(\s*"([a-z_]+)"', text))
        read |= set(re.findall(r'"gemini_tuning",\s*"([a-z_]+)"', text))
    assert read, "no option found: the patterns above no longer match how the code reads settings"
    assert read == set(INFO["config"]["gemini_tuning"]["options"])
