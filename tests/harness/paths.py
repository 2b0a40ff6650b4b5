"""Where things are: the repository and the test data folders, found from this file (right wherever the repository
is checked out)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DEMO = ROOT / "include" / "demo"
DAGS = ROOT / "dags"
PLUGINS = ROOT / "plugins"

#: recorded API answers and other inputs of the unit tests
UNIT_DATA = TESTS / "unit" / "data"
#: pipeline files (good and ``broken/``) of the pipelines tests
PIPELINE_FILES = TESTS / "unit" / "pipeline_files"

#: DAG files the Airflow stacks of the integration tests load (linked into a stack's DAG folder, or parsed by path)
INTEGRATION = TESTS / "integration"
SERVICE_DAGS = INTEGRATION / "service_dags"
FAULT_DAGS = INTEGRATION / "fault_dags"
SENSOR_DAGS = INTEGRATION / "sensor_dags"
TOY_DAGS = INTEGRATION / "toy_dags"
