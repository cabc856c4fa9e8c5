# shellcheck shell=bash
# Sourced by run.sh, tests/run.sh and every job: the recipe's environment.
# Creates the project's virtual environment on first use (local/setup_env.sh).
RECIPE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export RECIPE_ROOT

export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
# No model hub is ever contacted: models are local directories.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
# One thread per job unless told otherwise; training stages raise it.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-${OMP_NUM_THREADS}}
export PYTHONPATH="${RECIPE_ROOT}/local${PYTHONPATH:+:${PYTHONPATH}}"

# FUNASR_RECIPE_VENV=/path uses (and if needed creates) that venv;
# FUNASR_RECIPE_VENV=none uses the python already on PATH (e.g. in a container).
FUNASR_RECIPE_VENV=${FUNASR_RECIPE_VENV:-${RECIPE_ROOT}/.venv}
if [ "${FUNASR_RECIPE_VENV}" != none ]; then
  bash "${RECIPE_ROOT}/local/setup_env.sh" "${FUNASR_RECIPE_VENV}" || return 1 2>/dev/null || exit 1
  export VIRTUAL_ENV="${FUNASR_RECIPE_VENV}"
  export PATH="${FUNASR_RECIPE_VENV}/bin:${PATH}"
fi
