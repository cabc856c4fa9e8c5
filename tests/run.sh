#!/usr/bin/env bash
# The project's test command: sets up the environment on first use, then runs
# pytest over tests/ (extra arguments go to pytest, e.g. -m "not slow" or -k mix).
# The suite runs in FUNASR_RECIPE_TEST_JOBS pytest-xdist workers (default 2),
# a test module to a worker (the long ones first: tests/conftest.py); most
# tests use one core, the mini recipes two. "-n 0" (or FUNASR_RECIPE_TEST_JOBS=0)
# runs it in this one process, as --pdb needs; so does a Python without
# pytest-xdist (FUNASR_RECIPE_VENV=none), said so.
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
workers=(-n "${FUNASR_RECIPE_TEST_JOBS:-2}" --dist loadfile --no-loadscope-reorder)
if ! python -c 'import xdist' 2> /dev/null; then
  echo "tests/run.sh: pytest-xdist is not installed: the tests run in one process" >&2
  workers=()
fi
exec python -m pytest "${workers[@]}" "$@"
