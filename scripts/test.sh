#!/usr/bin/env bash
# Sets up .venv (idempotent) and runs the tests. Two tiers (pytest markers, README "Development"):
#   scripts/test.sh [pytest args]        the fast tier: unit, emulator, dag.test() end to end, packaging, habits
#   scripts/test.sh --all [pytest args]  everything: also the real Airflow services, the Celery cluster, the browser
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -k gate). Test modules run side by side
# (pytest-xdist, one module per worker: a module's Airflow stack is reused by its tests), the longest first
# (tests/conftest.py MODULE_SECONDS); both tiers use 3 workers on 2 cores, as their Airflow stacks and dag.test()
# runs mostly wait (the fast tier: 5 min 53 s with 3, 7 min 37 s with 2, measured side by side on 2026-12-08).
# GEMINI_TUNING_TEST_WORKERS overrides the count. Every run gets a fresh temporary root, so no run's clean-up
# can remove another's files.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=0
if [ "${1:-}" = "--all" ]; then ALL=1; shift; fi
scripts/setup.sh
unset PYTHONDONTWRITEBYTECODE   # let the project's own modules be cached too
# The browser tests use Debian's Chromium (headless); install it when we can.
if [ "$ALL" = 1 ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing chromium (Debian) for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
BASETEMP="$(mktemp -d "${TMPDIR:-/tmp}/gemini-tuning-tests.XXXXXX")"
echo "==> load average before the tests: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$ALL" = 1 ]; then
  TIER=(); WORKERS=${GEMINI_TUNING_TEST_WORKERS:-3}
else
  TIER=(-m fast); WORKERS=${GEMINI_TUNING_TEST_WORKERS:-3}   # dag.test() runs wait on the emulator's jobs
fi
set +e
.venv/bin/python -m pytest -q "${TIER[@]}" -n "$WORKERS" --dist loadfile --no-loadscope-reorder --basetemp="$BASETEMP/t" --durations=15 "$@"
rc=$?
set -e
echo "==> load average after the tests: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$BASETEMP"
exit $rc
