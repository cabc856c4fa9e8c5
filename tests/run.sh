#!/usr/bin/env bash
# The project's test command: sets up the environment on first use, then runs
# pytest over tests/ (extra arguments go to pytest, e.g. -m "not slow" or -k mix).
# The suite runs in FUNASR_RECIPE_TEST_JOBS pytest-xdist workers (default 2),
# a test module to a worker (the long ones first: tests/conftest.py); most
# tests use one core, the mini recipes two. "-n 0" (or FUNASR_RECIPE_TEST_JOBS=0)
# runs it in this one process, as --pdb needs.
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
exec python -m pytest -n "${FUNASR_RECIPE_TEST_JOBS:-2}" --dist loadfile --no-loadscope-reorder "$@"
