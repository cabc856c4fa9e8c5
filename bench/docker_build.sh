#!/usr/bin/env bash
# Build the recipe's Docker image for real and run it, with no image registry:
# Debian's podman (rootful, vfs storage, runc) on a base image made locally by
# debootstrap (Debian bookworm + python3), passed as the BASE_IMAGE build arg.
#
#   sudo bash bench/docker_build.sh [WORKDIR]     (default WORKDIR: /tmp/funasr-recipe-docker)
#
# Steps, each timed: install podman/debootstrap (apt-get) if missing; debootstrap
# the base into WORKDIR/rootfs and import it as localhost/bookworm-py (once);
# podman build; then in the image: run.sh --help, and the mini recipe's data
# stages 0-3 (corpus synthesis, data prep, mixes, jsonl) as the non-root user
# on a workspace volume WORKDIR/workspace, checking the outputs land there.
#
# Environment: PIP_FIND_LINKS (a dir of wheels, mounted into the build; default
# /opt/wheels when it exists, e.g. for a local torch CPU wheel), PIP_CERT (a CA
# bundle for a TLS-inspecting proxy; default /etc/ssl/certs/ca-certificates.crt).
# The build reaches PyPI for everything else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/funasr-recipe-docker}
image=localhost/funasr-recipe:cpu
base=localhost/bookworm-py:latest
wheels=${PIP_FIND_LINKS:-/opt/wheels}
cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
# vfs: no overlay mounts needed; ulimits: podman's defaults (nofile, nproc
# near the host's hard limits) are refused by some sandboxed kernels (gVisor).
podman=(podman --storage-driver vfs)
ulimits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

step() { echo "$(date '+%F %T') docker_build: $*" >&2; }
timed() { local t=${SECONDS}; "$@"; step "  took $((SECONDS - t)) s"; }

if ! command -v podman > /dev/null || ! command -v debootstrap > /dev/null; then
  step "installing podman and debootstrap"
  DEBIAN_FRONTEND=noninteractive timed apt-get install -y -qq --no-install-recommends \
    podman runc debootstrap netavark aardvark-dns containernetworking-plugins > /dev/null
fi

mkdir -p "${work}"
if ! "${podman[@]}" image exists "${base}"; then
  step "debootstrap bookworm + python3 into ${work}/rootfs"
  rm -rf "${work}/rootfs"
  timed debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "${work}/rootfs" http://deb.debian.org/debian > "${work}/debootstrap.log"
  rm -f "${work}"/rootfs/var/cache/apt/archives/*.deb
  step "importing it as ${base}"
  tar -C "${work}/rootfs" -c . | timed "${podman[@]}" import - "${base}" > /dev/null
fi

build_args=(--build-arg "BASE_IMAGE=${base}")
volumes=()
if [ -d "${wheels}" ]; then
  build_args+=(--build-arg PIP_FIND_LINKS=/wheels)
  volumes+=(-v "${wheels}:/wheels:ro")
fi
if [ -f "${cert}" ]; then
  build_args+=(--build-arg PIP_CERT=/certs/ca.crt)
  volumes+=(-v "${cert}:/certs/ca.crt:ro")
fi
# --format docker: the OCI format has no SHELL, and podman would run the
# RUN lines with /bin/sh instead of the Dockerfile's bash -o pipefail.
step "podman build --format docker -t ${image} ${build_args[*]} ${volumes[*]} . (log: ${work}/build.log)"
t=${SECONDS}
"${podman[@]}" build --format docker --runtime runc "${ulimits[@]}" "${build_args[@]}" \
  "${volumes[@]}" -t "${image}" "${root}" > "${work}/build.log" 2>&1 || {
    tail -n 30 "${work}/build.log" >&2; exit 1; }
step "  took $((SECONDS - t)) s"
grep -E '^torch .* funasr ' "${work}/build.log" >&2 || true
"${podman[@]}" image ls "${image}" >&2

run=("${podman[@]}" run --rm --runtime runc "${ulimits[@]}" --shm-size=1g)
step "run.sh --help in the image"
"${run[@]}" "${image}" > "${work}/help.txt"
head -n 3 "${work}/help.txt" >&2

# The workspace volume belongs to the image's non-root user (uid 1000).
ws=${work}/workspace
rm -rf "${ws}" && mkdir -p "${ws}" && chown 1000:1000 "${ws}"
step "mini recipe stages 0-3 in the image, as the non-root user, outputs on ${ws}"
timed "${run[@]}" -v "${ws}:/workspace" "${image}" \
  bash -c 'id -un; nohup bash run.sh --stop-stage 3 > /workspace/outputs/run.log 2>&1; rc=$?; tail -n 3 /workspace/outputs/run.log; exit ${rc}'
for f in outputs/exp/logs/make_corpus.log outputs/data/domain_train/wav.scp \
         outputs/dump/paraformer/stage1_train.jsonl; do
  [ -s "${ws}/${f}" ] || { step "ERROR: ${ws}/${f} missing"; exit 1; }
done
step "OK: outputs are on the volume, owned by uid $(stat -c %u "${ws}/outputs/exp")"
