#!/usr/bin/env bash
# The project's test command: sets up the environment on first use, then runs
# pytest over tests/ (extra arguments go to pytest, e.g. -m "not slow" or -k mix).
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
exec python -m pytest "$@"
