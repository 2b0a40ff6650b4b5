#!/usr/bin/env bash
# Creates ./.venv with the pinned requirements. Idempotent: does nothing when the requirements are unchanged.
# Usage: scripts/setup.sh            (runtime + test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 14) else "Python 3.10-3.13 is required")'
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
if ! { [ -x .venv/bin/python ] && [ "$(cat .venv/.installed 2>/dev/null)" = "$want" ]; }; then
  echo "==> creating .venv and installing pinned requirements (uv)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
  .venv/bin/python -m uv pip install -q --compile-bytecode --python .venv/bin/python -r requirements-dev.txt
  echo "$want" > .venv/.installed
  echo "==> .venv ready"
fi
# Bytecode once: Airflow starts many Python processes, and some environments set PYTHONDONTWRITEBYTECODE.
if [ ! -f .venv/.compiled ]; then
  echo "==> compiling .venv bytecode (once)"
  .venv/bin/python -m compileall -q -j 0 .venv/lib >/dev/null 2>&1 || true
  touch .venv/.compiled
fi
# The repository root (``emulator``) and tests/ (the ``harness`` package, for the scripts) on the venv's path, by
# absolute path: rewritten on every run, so it stays right after the repository moves. Not plugins/: the packaging
# test checks the installed wheel, not the source tree (pytest and the scripts put plugins/ on the path themselves).
purelib=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$PWD" "$PWD/tests" > "$purelib/gemini_tuning_dev.pth"
