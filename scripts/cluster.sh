#!/usr/bin/env bash
# A local distributed Airflow (PostgreSQL, Redis, CeleryExecutor with 2 workers, 2 triggerers) + the emulator.
# Usage: scripts/cluster.sh up|down|status [--dir DIR] [--time-scale X]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m harness.cluster "$@"   # tests/harness/cluster.py
