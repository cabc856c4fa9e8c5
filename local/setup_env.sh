#!/usr/bin/env bash
# Create or refresh the recipe's Python virtual environment.
#
#   local/setup_env.sh [VENV_DIR]     (default: .venv beside this repo's run.sh)
#
# Idempotent and safe to run concurrently (a lock serialises installs): when
# the venv already matches pyproject.toml it returns at once. torch is
# installed first, alone, with the exact pin from pyproject.toml: on these
# machines that is a local CPU wheel, while letting pip resolve torch through
# funasr's neighbours (accelerate, peft, silero-vad) pulls GBs of CUDA wheels.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-${root}/.venv}
stamp="${venv}/.funasr-recipe-installed"
want=$(cat "${root}/pyproject.toml" "${root}/local/setup_env.sh" | sha256sum | cut -c1-16)

up_to_date() { [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; }
up_to_date && exit 0

mkdir -p "$(dirname "${venv}")"
exec 9>"${venv}.lock"
flock 9
up_to_date && exit 0   # another process finished the install while we waited

python=${PYTHON:-python3}
if ! "${python}" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
  echo "ERROR: ${python} is $("${python}" -V 2>&1); the recipe needs Python 3.11-3.12 (numpy 2.4)" \
       "(set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
echo "$(date '+%F %T') setting up ${venv} (first run only: about 2 minutes)" >&2
[ -x "${venv}/bin/python" ] || "${python}" -m venv "${venv}"
pip=("${venv}/bin/python" -m pip --disable-pip-version-check -q)
torch_pin=$(grep -oE '"torch==[^"]+"' "${root}/pyproject.toml" | tr -d '"')
"${pip[@]}" install "${torch_pin}"
"${pip[@]}" install -e "${root}[test]"
# [tool.funasr-recipe] no-deps in pyproject.toml: packages whose declared pins
# conflict with the project's (installed without their dependencies)
mapfile -t nodeps < <("${venv}/bin/python" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb")).get("tool", {}).get("funasr-recipe", {}).get("no-deps", [])))' "${root}/pyproject.toml")
[ "${#nodeps[@]}" -eq 0 ] || [ -z "${nodeps[0]}" ] || "${pip[@]}" install --no-deps "${nodeps[@]}"
echo "${want}" > "${stamp}"
echo "$(date '+%F %T') ${venv} ready" >&2
