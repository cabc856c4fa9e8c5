#!/usr/bin/env bash
# One command, on a machine with an NVIDIA GPU, after `bash run.sh --model nano`
# (stage 8 wrote exp/nano/export/hf):
#
#   bash bench/gpu_check.sh [--exp exp/nano] [--data data] [--sets "general_test domain_test"]
#                           [--vllm-version 0.33.0] [--port 8000]
#
# 1. installs vLLM (pip, into exp/nano/gpu_check/venv; nothing else is touched),
# 2. serves the Hugging Face export with `vllm serve exp/nano/export/hf`,
# 3. transcribes the test sets through its OpenAI-compatible
#    /v1/audio/transcriptions (greedy, temperature 0), one request per utterance,
# 4. prints the parity table against the recipe's funasr decode
#    (exp/nano/decode_<last stage>/<set>/text) with local/export_parity.py, and the
#    decode RTF (wall time of the requests / audio time).
# Without a GPU it says so and exits 2: CI cannot run it.
set -euo pipefail
exp=exp/nano
data=data
sets="general_test domain_test"
vllm_version=0.33.0
port=8000
while [ $# -gt 0 ]; do
  case "$1" in
    --exp) exp=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --sets) sets=$2; shift 2 ;;
    --vllm-version) vllm_version=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "ERROR: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "ERROR: no NVIDIA GPU on this machine (nvidia-smi lists none): vLLM needs one." \
       "Run bench/gpu_check.sh on a GPU machine; the CPU engines' parity is in ${exp}/RESULTS.md." >&2
  exit 2
fi
hf=${exp}/export/hf
if [ ! -f "${hf}/config.json" ]; then
  echo "ERROR: ${hf}/config.json not found: run 'bash run.sh --model nano' through stage 8 first" >&2
  exit 1
fi
nvidia-smi -L
work=${exp}/gpu_check
mkdir -p "${work}"
if [ ! -x "${work}/venv/bin/vllm" ]; then
  python3 -m venv "${work}/venv"
  "${work}/venv/bin/pip" install -q "vllm==${vllm_version}" soundfile pyyaml numpy
fi
"${work}/venv/bin/vllm" serve "${hf}" --served-model-name recipe-nano --port "${port}" \
  --dtype float32 --max-model-len 4096 > "${work}/serve.log" 2>&1 &
server=$!
trap 'kill ${server} 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:${port}/v1/models" > /dev/null && break
  kill -0 ${server} 2>/dev/null || { echo "ERROR: vllm serve exited; see ${work}/serve.log" >&2; tail -n 30 "${work}/serve.log" >&2; exit 1; }
  sleep 5
done
last=$(ls -d "${exp}"/decode_stage* 2>/dev/null | sort | tail -n 1)
for set in ${sets}; do
  out=${exp}/export/decode_vllm_fp32/${set}
  PYTHONPATH=local "${work}/venv/bin/python" - "${data}/${set}" "${out}" "${port}" <<'PY'
import json, sys, time, urllib.request, uuid
from pathlib import Path
import soundfile as sf
data, out, port = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
wavs = dict(l.split(maxsplit=1) for l in (data / "wav.scp").read_text().splitlines())
hyps, audio, t0 = {}, 0.0, time.perf_counter()
for key, wav in sorted(wavs.items()):
    audio += sf.info(wav).duration
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nrecipe-nano\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"temperature\"\r\n\r\n0\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + Path(wav).read_bytes() + f"\r\n--{b}--\r\n".encode()
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
python3 local/export_parity.py --conf "${work}/export.yaml" --family nano --export "${exp}/export" \
  --reference "${last}" --data "${data}" --sets "$(echo ${sets} | tr ' ' ,)" --strict

# ---------------------------------------------------------------- decode pipeline (h17, issue 17)
# The Paraformer decode at the published size (random weights) and the twin's, on
# the GPU: the model's batched forward on precomputed features against
# local/decode.py's pipeline, with features computed in-process (funasr) and in
# DataLoader workers (decode conf: feature_workers); hypotheses must be identical.
echo "== decode pipeline on the GPU (bench/decode_pipeline.py)"
python3 bench/decode_pipeline.py --device cuda --size twin published --utts 96 --batch-size 16 \
  --workers 4 --runs 3 --threads 4 --json "${work}/decode_pipeline.json"
