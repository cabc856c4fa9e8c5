# Disposable training container for funasr-recipe: one container per model or
# experiment, thrown away afterwards; everything worth keeping lives on the
# volume mounted at /workspace:
#   /workspace/models    base models (e.g. a downloaded paraformer-large dir)
#   /workspace/data      the user's corpora (folders of audio + .txt, lists)
#   /workspace/outputs   what the recipe writes: exp/ data/ dump/ downloads/
#
#   docker build -t funasr-recipe .
#   docker run --gpus all --shm-size=16g -it -v "$PWD/workspace:/workspace" funasr-recipe bash
#   (inside) nohup bash run.sh --data /workspace/data/domain ... > /workspace/outputs/run.log 2>&1 &
# docs/backends.md explains every flag. BASE_IMAGE picks the base: the
# default is a CUDA one for GPUs; any Debian/Ubuntu with Python 3.11-3.12 works
# (a CPU-only one too), e.g. --build-arg BASE_IMAGE=debian:bookworm-slim.
# pip options come in as build arguments pip reads from the environment:
# PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS (e.g. a local torch wheel)
# and PIP_CERT (a proxy's CA bundle); they are not kept in the image.
ARG BASE_IMAGE=nvidia/cuda:12.8.0-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
# uid/gid of the non-root user: make them the owner of the host's workspace
# dir (--build-arg USER_UID=$(id -u)) so that files written there stay yours.
ARG USER_UID=1000
ARG USER_GID=1000

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    LC_ALL=C.UTF-8

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# python3-venv for the recipe's venv; bsdextrautils has column(1), used by
# run.sh; perl runs utils/*.pl. Not version-pinned: the versions depend on
# BASE_IMAGE, which fixes them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates perl bsdextrautils \
    && rm -rf /var/lib/apt/lists/*

# The venv that path.sh uses when FUNASR_RECIPE_VENV=none: the one on PATH.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    FUNASR_RECIPE_VENV=none
RUN python3 -m venv /opt/venv

WORKDIR /opt/funasr-recipe

# Dependencies first (a layer that survives code changes): torch alone with
# the exact pin from pyproject.toml (letting pip resolve it through funasr's
# neighbours pulls other builds), then the project with everything else
# (every dependency is pinned in pyproject.toml), with DeepSpeed for
# run.sh --deepspeed.
COPY pyproject.toml README.md ./
COPY local/funasr_recipe/ local/funasr_recipe/
# hadolint ignore=DL3013
RUN torch_pin=$(grep -oE '"torch==[^"]+"' pyproject.toml | tr -d '"') \
    && test -n "${torch_pin}" \
    && pip install "${torch_pin}" \
    && pip install ".[deepspeed]" \
    && python -c "import torch, funasr, funasr_recipe; print('torch', torch.__version__, 'funasr', funasr.__version__)"

COPY . .

# The non-root user (Ubuntu 24.04 images already have "ubuntu" as uid/gid
# 1000: it makes way); the recipe's generated dirs point into the volume.
# (getent exits 2 when there is none; useradd below fails if one is left.)
RUN old_user=$(getent passwd "${USER_UID}" | cut -d: -f1 || true) \
    && if [ -n "${old_user}" ]; then userdel -r "${old_user}" 2> /dev/null || userdel "${old_user}" 2> /dev/null || true; fi \
    && old_group=$(getent group "${USER_GID}" | cut -d: -f1 || true) \
    && if [ -n "${old_group}" ]; then groupdel "${old_group}"; fi \
    && groupadd -g "${USER_GID}" asr \
    && useradd -l -m -u "${USER_UID}" -g "${USER_GID}" -s /bin/bash asr \
    && for d in exp data dump downloads; do rm -rf "${d}" && ln -s "/workspace/outputs/${d}" "${d}"; done \
    && mkdir -p /workspace/models /workspace/data /workspace/outputs \
    && chown -R asr:asr /workspace /opt/funasr-recipe
USER ${USER_UID}:${USER_GID}
ENV HOME=/home/asr
VOLUME ["/workspace"]

# A freshly mounted workspace lacks the dirs the links above point to.
ENTRYPOINT ["/bin/bash", "-c", "mkdir -p /workspace/outputs/exp /workspace/outputs/data /workspace/outputs/dump /workspace/outputs/downloads && exec \"$@\"", "--"]
CMD ["bash", "run.sh", "--help"]
