#!/usr/bin/env bash
# Sets up .venv (idempotent) and runs the pipeline end to end on the local emulator. No Google Cloud account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
unset PYTHONDONTWRITEBYTECODE   # let the project's own modules be cached too
exec .venv/bin/python scripts/demo.py
