"""``[gemini_tuning] preload_task_modules``: the plugin imports what the tasks import, only when asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gemini_tuning import plugin

pytestmark = pytest.mark.fast

PLUGINS = Path(plugin.__file__).parents[1]
PROBE = ("import sys, json; import gemini_tuning.plugin as p; "
         "print(json.dumps({'preloaded': p.PRELOADED, 'genai': 'google.genai' in sys.modules, "
         "'hook': 'airflow.providers.google.common.hooks.base_google' in sys.modules}))")


def _probe(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__GEMINI_TUNING__PRELOAD_TASK_MODULES"}
    if setting is not None:
        env["AIRFLOW__GEMINI_TUNING__PRELOAD_TASK_MODULES"] = setting
    env["PYTHONPATH"] = str(PLUGINS)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_off_by_default_the_plugin_imports_no_client():
    assert _probe(None) == {"preloaded": [], "genai": False, "hook": False}


def test_on_the_plugin_imports_every_task_module():
    got = _probe("True")
    assert got["preloaded"] == list(plugin.PRELOAD_MODULES)
    assert got["genai"] and got["hook"]


def test_a_module_that_fails_to_import_is_skipped_and_logged(monkeypatch, caplog):
    monkeypatch.setattr(plugin, "PRELOAD_MODULES", ("json", "gemini_tuning.no_such_module"))
    assert plugin.preload_task_modules(enabled=True) == ["json"]
    assert "not preloading gemini_tuning.no_such_module" in caplog.text
    assert plugin.preload_task_modules(enabled=False) == []
