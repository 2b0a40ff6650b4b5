"""Shared test setup and the fixtures. Runs before anything imports Airflow or a Google client.

Helpers that are not fixtures (paths, the test project and bucket, clients of the emulator, waits, the services
harness) are in the ``harness`` package (``tests/harness/``, on pytest's ``pythonpath``): import them from there."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from harness.clients import BUCKET, PROJECT, TEST_TIME_SCALE
from harness.data import demo_rows
from harness.paths import ROOT

# Offline by construction: google-auth never probes the metadata server, no real credentials are picked up.
os.environ["NO_GCE_CHECK"] = "true"
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
for var in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
    os.environ.pop(var, None)

# Airflow: a private home and SQLite DB per test session, set before airflow is imported.
# pytest-xdist workers inherit the controller's environment: a home set by this file in another process (the
# controller, another worker) is replaced, so no two processes share a SQLite DB.
_AF_HOME = tempfile.mkdtemp(prefix="gemini-tuning-airflow-")
atexit.register(shutil.rmtree, _AF_HOME, ignore_errors=True)
if os.environ.get("GEMINI_TUNING_TEST_HOME_OWNER") not in (None, str(os.getpid())):
    for _var in ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        os.environ.pop(_var, None)
os.environ["GEMINI_TUNING_TEST_HOME_OWNER"] = str(os.getpid())
os.environ.setdefault("AIRFLOW_HOME", _AF_HOME)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__GEMINI_TUNING__OPEN_PIPELINE_DAG", "True")   # the open pipeline the tests vary
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AF_HOME}/airflow.db")
# Inputs of in-process runs: the repository's include/ (the default) and the temp dir holding tmp_path files
os.environ.setdefault("AIRFLOW__GEMINI_TUNING__INPUT_ROOTS", os.pathsep.join([str(ROOT / "include"),
                                                                               tempfile.gettempdir()]))

TIERS = ("fast", "full")

#: Modules that take long (wall seconds of one module alone on 2 cores, rounded; scheduling only, never asserted).
#: ``scripts/test.sh`` runs modules side by side (xdist ``--dist loadfile --no-loadscope-reorder``) in the order
#: collected: the longest first, so the last module to start is a short one. Unlisted modules weigh 0.
MODULE_SECONDS = {
    "tests/integration/test_cluster.py": 600,
    "tests/integration/test_gate_faults_services.py": 420,
    "tests/integration/test_ui_browser.py": 240,
    "tests/integration/test_tuning_services.py": 230,
    "tests/integration/test_airflow_services.py": 150,
    "tests/integration/test_approval_services.py": 130,
    "tests/integration/test_dag_e2e.py": 250,
    "tests/integration/test_pipelines_e2e.py": 180,
    "tests/integration/test_notifications_services.py": 90,
    "tests/integration/test_guard_rails_e2e.py": 95,
    "tests/integration/test_base_model_e2e.py": 50,
    "tests/integration/test_data_stats_e2e.py": 45,
    "tests/integration/test_packaging.py": 60,
    "tests/integration/test_report_browser.py": 30,
    "tests/integration/test_sensor.py": 45,
    "tests/integration/test_champion.py": 40,
}


def pytest_collection_modifyitems(config, items):
    """Every test is in exactly one tier (marker ``fast`` or ``full``): one without is a collection error, so a new
    test module cannot slip out of both ``scripts/test.sh`` and ``scripts/test.sh --all``. Then the longest modules
    go first (:data:`MODULE_SECONDS`; the order within a module is kept)."""
    items.sort(key=lambda item: -MODULE_SECONDS.get(item.nodeid.split("::")[0], 0))
    wrong: dict[str, set[str]] = {}
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            wrong.setdefault(item.nodeid.split("::")[0], set()).add(", ".join(tiers) or "no tier")
    if wrong:
        raise pytest.UsageError("tests need exactly one tier marker, pytest.mark.fast or pytest.mark.full (module "
                                "pytestmark): " + "; ".join(f"{f} ({', '.join(sorted(w))})" for f, w in wrong.items()))


from emulator.app import EmulatorConfig  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402


@pytest.fixture(scope="module")
def airflow_db():
    """A fresh metadata DB (SQLite) for a module of in-process Airflow runs (dag.test())."""
    from airflow.utils.db import resetdb

    resetdb()
    yield


@pytest.fixture(scope="session")
def emulator_server():
    srv = EmulatorServer(config=EmulatorConfig(time_scale=TEST_TIME_SCALE), default_bucket=BUCKET)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def emulator(emulator_server, monkeypatch):
    """The session emulator, with its env vars set and its faults and config restored after each test."""
    for key, value in emulator_server.endpoints.env().items():
        monkeypatch.setenv(key, value)
    emu = emulator_server.emulator
    saved = dict(vars(emu.config))
    yield emulator_server
    emu.faults.clear()
    emu.config.update({k: v for k, v in saved.items()})


@pytest.fixture
def gcs_client(emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(credentials=AnonymousCredentials(), project=PROJECT)


@pytest.fixture
def upload(gcs_client):
    """Uploads bytes/a file to the emulator's GCS under a unique name; returns the gs:// URI."""

    def _upload(data: bytes | str | Path, name: str | None = None) -> str:
        name = name or f"data/{uuid.uuid4().hex}.jsonl"
        blob = gcs_client.bucket(BUCKET).blob(name)
        if isinstance(data, Path):
            blob.upload_from_filename(str(data))
        else:
            blob.upload_from_string(data.encode() if isinstance(data, str) else data)
        return f"gs://{BUCKET}/{name}"

    return _upload


@pytest.fixture
def small_train_uri(upload):
    """A small Vertex training file (24 examples: 3 steps per epoch) for fast job lifecycles."""
    return upload("".join(json.dumps(r) + "\n" for r in demo_rows("train.jsonl", 24)))
