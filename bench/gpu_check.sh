#!/usr/bin/env bash
# One command, on a machine with an NVIDIA GPU, after `bash run.sh --model nano`
# (stage 8 wrote exp/nano/export/vllm, the layout vLLM's FunASRForConditionalGeneration
# loads: local/export_vllm.py):
#
#   bash bench/gpu_check.sh [--exp exp/nano] [--data data] [--sets "general_test domain_test"]
#                           [--vllm-version 0.33.0] [--port 8000] [--language zh] [--force]
#
# 1. reads exp/nano/export/vllm/export.json: what vLLM 0.33 hard-codes that this model
#    differs in (adaptor sizes, prompt, audio token count); if anything, it says so and
#    exits 3 before installing anything (--force: serve it anyway, parity not expected),
# 2. installs vLLM (pip, into exp/nano/gpu_check/venv; nothing else is touched),
# 3. serves the export with `vllm serve exp/nano/export/vllm` (fp32, as the recipe decodes),
# 4. transcribes the test sets through its OpenAI-compatible /v1/audio/transcriptions
#    (temperature 0, one request per utterance),
# 5. prints the parity table against the recipe's funasr decode
#    (exp/nano/decode_<last stage>/<set>/text) with local/export_parity.py, and the
#    decode RTF (wall time of the requests / audio time),
# 6. measures training throughput (bench/train_throughput.py: hours of audio trained per
#    hour, Paraformer and Nano as the recipe's stage 1 trains them, twin and published sizes,
#    random weights) into exp/nano/gpu_check/train_throughput.json.
# Without a GPU it says so and exits 2: CI cannot run it.
set -euo pipefail
exp=exp/nano
data=data
sets="general_test domain_test"
vllm_version=0.33.0
port=8000
language=zh
force=false
while [ $# -gt 0 ]; do
  case "$1" in
    --exp) exp=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --sets) sets=$2; shift 2 ;;
    --vllm-version) vllm_version=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --language) language=$2; shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "ERROR: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "ERROR: no NVIDIA GPU on this machine (nvidia-smi lists none): vLLM needs one." \
       "Run bench/gpu_check.sh on a GPU machine; the CPU engines' parity is in ${exp}/RESULTS.md." >&2
  exit 2
fi
nvidia-smi -L

# ---------------------------------------------------------------- vLLM
vllm_check() {
  local model=${exp}/export/vllm work=${exp}/gpu_check
  if [ ! -f "${model}/config.json" ] || [ ! -f "${model}/export.json" ]; then
    echo "ERROR: ${model}/config.json not found: run 'bash run.sh --model nano' through stage 8 first" >&2
    return 1
  fi
  local why
  why=$(python3 -c 'import json, sys
for w in json.load(open(sys.argv[1], encoding="utf-8")).get("unservable", []): print("  - " + w)' \
    "${model}/export.json")
  if [ -n "${why}" ]; then
    echo "vLLM ${vllm_version%.*} would not decode ${model} as funasr does:" >&2
    echo "${why}" >&2
    if [ "${force}" != true ]; then
      echo "ERROR: not served (no parity to check); --force serves it anyway" >&2
      return 3
    fi
  fi
  mkdir -p "${work}"
  if [ ! -x "${work}/venv/bin/vllm" ]; then
    python3 -m venv "${work}/venv"
    "${work}/venv/bin/pip" install -q "vllm[audio]==${vllm_version}" soundfile pyyaml numpy
  fi
  "${work}/venv/bin/vllm" serve "${model}" --served-model-name recipe-nano --port "${port}" \
    --dtype float32 --max-model-len 4096 --enforce-eager > "${work}/serve.log" 2>&1 &
  local server=$!
  # shellcheck disable=SC2064  # expand now: the server's pid
  trap "kill ${server} 2>/dev/null || true" EXIT
  local up=false
  for _ in $(seq 1 180); do
    if curl -sf "http://127.0.0.1:${port}/v1/models" > /dev/null; then up=true; break; fi
    if ! kill -0 "${server}" 2>/dev/null; then break; fi
    sleep 5
  done
  if [ "${up}" != true ]; then
    echo "ERROR: vllm serve did not come up; see ${work}/serve.log" >&2
    tail -n 30 "${work}/serve.log" >&2
    kill "${server}" 2>/dev/null || true
    return 1
  fi
  local last set out
  # the funasr decode of the model that was exported: final_model -> <last stage>/model,
  # decoded by stage 6 with the default options into decode_<last stage>_default
  last=${exp}/decode_$(basename "$(dirname "$(readlink -f "${exp}/final_model")")")_default
  for set in ${sets}; do
    out=${exp}/export/decode_vllm_fp32/${set}
    "${work}/venv/bin/python" - "${data}/${set}" "${out}" "${port}" "${language}" <<'PY'
import json, sys, time, urllib.request, uuid
from pathlib import Path
import soundfile as sf
data, out, port, language = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
wavs = dict(l.split(maxsplit=1) for l in (data / "wav.scp").read_text().splitlines())
fields = {"model": "recipe-nano", "temperature": "0", "language": language,
          "response_format": "json"}
hyps, audio, t0 = {}, 0.0, time.perf_counter()
for key, wav in sorted(wavs.items()):
    audio += sf.info(wav).duration
    b = uuid.uuid4().hex
    body = "".join(f"--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                   for k, v in fields.items())
    body = (body + f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode() + Path(wav).read_bytes() \
        + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/audio/transcriptions", body,
                                 {"Content-Type": f"multipart/form-data; boundary={b}"})
    hyps[key] = json.load(urllib.request.urlopen(req, timeout=300))["text"].strip()
secs = time.perf_counter() - t0
out.mkdir(parents=True, exist_ok=True)
(out / "text").write_text("".join(f"{k} {v}\n" if v else f"{k}\n" for k, v in sorted(hyps.items())))
(out / "run.json").write_text(json.dumps({"engine": "vllm", "precision": "fp32", "seconds": secs,
    "audio_seconds": audio, "rtf": secs / audio if audio else 0.0, "threads": 1}))
print(f"{data.name}: {len(hyps)} utterances, RTF {secs / audio:.4f}")
PY
  done
  cat > "${work}/export.yaml" <<YAML
nano:
  engines:
    vllm: [fp32]
parity: {fp32_min_identical_pct: 99.0, fp32_max_error_diff: 0.2, int8_max_error_diff: 1.0, norm: full}
YAML
  # the table with the recipe's own environment (scoring as RESULTS.md)
  local parity=0
  (. ./path.sh && python local/export_parity.py --conf "${work}/export.yaml" --family nano \
    --export "${exp}/export" --reference "${last}" --data "${data}" \
    --sets "$(echo "${sets}" | tr ' ' ,)" --strict) || parity=$?
  # the server holds most of the GPU's memory: stop it before the benches
  kill "${server}" 2>/dev/null || true
  wait "${server}" 2>/dev/null || true
  return ${parity}
}

# The Paraformer decode at the published size (random weights) and the twin's, on
# the GPU: the model's batched forward on precomputed features against
# local/decode.py's pipeline, with features computed in-process (funasr) and in
# DataLoader workers (decode conf: feature_workers); hypotheses must be identical.
decode_pipeline_check() {
  echo "== decode pipeline on the GPU (bench/decode_pipeline.py)"
  if ! (. ./path.sh && python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'); then
    echo "ERROR: torch in the recipe's environment sees no CUDA device: decode bench not run" >&2
    return 1
  fi
  mkdir -p "${exp}/gpu_check"
  (. ./path.sh && python bench/decode_pipeline.py --device cuda --size twin published --utts 96 \
    --batch-size 16 --workers 4 --runs 3 --threads 4 --json "${exp}/gpu_check/decode_pipeline.json")
}

# Training throughput on the GPU: hours of audio trained per hour of wall time, for
# Paraformer (full fine-tuning) and Fun-ASR-Nano (stage 1: the adaptor), at the twin's
# size and the published one (random weights), fp32, funasr's own batches and step.
train_throughput_check() {
  echo "== training throughput on the GPU (bench/train_throughput.py)"
  if ! (. ./path.sh && python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'); then
    echo "ERROR: torch in the recipe's environment sees no CUDA device: training bench not run" >&2
    return 1
  fi
  echo "GPU memory in use before the bench: $(nvidia-smi --query-gpu=memory.used,memory.total \
    --format=csv,noheader | head -n 1)"
  mkdir -p "${exp}/gpu_check"
  (. ./path.sh && python bench/train_throughput.py --device cuda --family paraformer nano \
    --size twin published --utts 80 --batch-size 8 --warmup 2 --steps 10 --runs 3 --threads 4 \
    --json "${exp}/gpu_check/train_throughput.json")
}

# every check runs; the exit code is the first failure's
rc=0
vllm_check || rc=$?
decode_pipeline_check || { r=$?; [ "${rc}" -ne 0 ] || rc=${r}; }
train_throughput_check || { r=$?; [ "${rc}" -ne 0 ] || rc=${r}; }

exit ${rc}
