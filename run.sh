#!/usr/bin/env bash
# funasr-recipe: staged general/domain fine-tuning of funasr models.
# With no options it runs the mini recipe on a corpus it synthesises itself.
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
SECONDS=0

# ---------------------------------------------------------------- options
stage=0               # first stage to run
stop_stage=100        # last stage to run
model=paraformer      # model family: paraformer or nano (Fun-ASR-Nano)
base_model=           # local model dir to fine-tune; empty: the mini recipe's tiny twin
data=                 # domain data: folder of audio + .txt, list (.jsonl/.csv/.xlsx) or wav.scp;
                      # empty: the embedded mini corpus
general=              # general data, same forms as --data (needed with --data)
text=                 # with --data wav.scp: its text file
general_text=         # with --general wav.scp: its text file
heldout_spk=          # file of speaker ids kept out of training (mini corpus: its own list)
corpus_conf=conf/corpus.yaml   # mini corpus settings
train_conf=           # training settings [conf/<model>/train.yaml]
twin_conf=            # tiny twin architecture [conf/<model>/twin.yaml]
test_sets="general_test domain_test"   # sets decoded and scored
terms=                # domain term list for term recall (mini corpus: its own list)
train_threads=$(nproc)  # torch threads for training
ngpu=0                # GPUs per training job (0: CPU); N > 1 trains with torchrun (DDP)
train_nproc=1         # CPU-only: training processes (DDP over gloo) when ngpu=0
num_nodes=1           # Slurm: nodes per training job; N > 1: srun starts torchrun on each
deepspeed=            # DeepSpeed config (conf/deepspeed/*.json): ZeRO 1/2 via funasr's trainer
decode_nj=2           # parallel decoding jobs per set
timestamps=false      # true: decoding also writes timestamps
vad=false             # true: segment long recordings with silero-vad when decoding
hotwords=             # nano: comma-separated hotwords or a file, one a line
language=             # nano: output language for the prompt (empty: the train conf's)
itn=                  # true/false: inverse text normalisation (empty: the family's default)
stage_plan=conf/stages.yaml    # general:domain mixing per stage (hours)
split_ratios=8:1:1    # train:valid:test
split_seed=0          # seed of the split
skip_bad=false        # true: leave bad input items out (listed in data/*/dropped.tsv)
resample=false        # true: convert non-16 kHz/mono audio instead of rejecting it
nj=2                  # parallel jobs for data preparation
corpus_dir=downloads/mini_corpus   # where the mini corpus is synthesised
datadir=data          # Kaldi data dirs
dumpdir=dump          # jsonl for training
expdir=exp            # models, logs, results

help_message=$(cat <<EOF
Usage: $0 [options]
Stages:
  0  synthesise the mini corpus (only without --data)
  1  data preparation: folder/list -> Kaldi data dirs, train:valid:test split
  2  staged general/domain mixes (hours), one training data dir per stage
  3  jsonl for the model family (dump/<model>/<set>.jsonl)
  4  base model: check --base-model, or make the tiny twin and pre-train it on
     the general pool (mini recipe) -> exp/<model>/base
  5  fine-tuning stages chained through ++init_param -> exp/<model>/<stage>/final.pt;
     the last stage exported as a standalone model dir exp/<model>/final_model
  6  decode the test sets with the base model and every stage's model
  7  score, and write exp/<model>/RESULTS.md
Options (default in brackets):
  --stage N             first stage to run [${stage}]
  --stop-stage N        last stage to run [${stop_stage}]
  --model NAME          model family: paraformer or nano [${model}]
  --base-model DIR      local model dir to fine-tune (a downloaded paraformer-large or
                        Fun-ASR-Nano-2512)
                        [tiny twin pre-trained by the recipe]
  --data PATH           domain data: folder of audio + same-named .txt, a .jsonl/.json/
                        .csv/.tsv/.xlsx list, or a wav.scp (with --text) [mini corpus]
  --general PATH        general data, same forms (required with --data) [mini corpus]
  --text FILE           text file for a --data wav.scp [${text}]
  --general-text FILE   text file for a --general wav.scp [${general_text}]
  --heldout-spk FILE    speakers kept out of training [mini corpus list]
  --corpus-conf FILE    mini corpus settings [${corpus_conf}]
  --train-conf FILE     training settings [conf/<model>/train.yaml]
  --twin-conf FILE      tiny twin architecture [conf/<model>/twin.yaml]
  --test-sets "A B"     sets decoded and scored [${test_sets}]
  --terms FILE          domain terms, one a line, for term recall in RESULTS.md
                        [mini corpus: its domain_terms.txt; own data: none]
  --train-threads N     torch threads for training [${train_threads}]
  --ngpu N              GPUs per training job, through \${cuda_cmd}; N > 1: torchrun DDP [${ngpu}]
  --train-nproc N       without GPUs: training processes, DDP over gloo [${train_nproc}]
  --num-nodes N         nodes per training job (cmd_backend=slurm), --ngpu GPUs each;
                        srun starts one torchrun per node [${num_nodes}]
  --deepspeed FILE      train with DeepSpeed, ZeRO stage and precision from FILE, e.g.
                        conf/deepspeed/zero2_bf16.json [off: DDP]
  --decode-nj N         parallel decoding jobs per set [${decode_nj}]
  --timestamps BOOL     also write timestamps when decoding [${timestamps}]
  --vad BOOL            segment long recordings with silero-vad when decoding [${vad}]
  --hotwords LIST|FILE  nano: hotwords given to the model's prompt when decoding [${hotwords}]
  --language NAME       nano: output language in the prompt, e.g. 中文 [train conf's prompt]
  --itn BOOL            inverse text normalisation of the output [nano: train conf; paraformer: false]
  --stage-plan FILE     general:domain mixing plan [${stage_plan}]
  --split-ratios A:B:C  train:valid:test [${split_ratios}]
  --split-seed N        split seed [${split_seed}]
  --skip-bad BOOL       drop bad items (listed in dropped.tsv) instead of stopping [${skip_bad}]
  --resample BOOL       convert non-16 kHz/mono audio instead of rejecting it [${resample}]
  --nj N                parallel jobs [${nj}]
  --corpus-dir DIR      where the mini corpus goes [${corpus_dir}]
  --datadir DIR         data dirs [${datadir}]
  --dumpdir DIR         jsonl [${dumpdir}]
  --expdir DIR          experiments and logs [${expdir}]
EOF
)

cmdline="$0 $*"
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  log "Error: unexpected arguments: $*"; log "${help_message}"; exit 1
fi
case "${model}" in
  paraformer|nano) ;;
  *) log "Error: --model ${model}: unknown model family (paraformer, nano)"; exit 1 ;;
esac
if [ -n "${data}" ] && [ -z "${general}" ]; then
  log "Error: --data needs --general (the general pool mixed in by the stage plan)"; exit 1
fi

train_conf=${train_conf:-conf/${model}/train.yaml}
twin_conf=${twin_conf:-conf/${model}/twin.yaml}
logdir=${expdir}/logs
mkdir -p "${logdir}"
# The run's own log (also when started with nohup and no terminal).
run_log=${logdir}/run_$(date '+%Y%m%d-%H%M%S').log
exec > >(tee -a "${run_log}") 2>&1
log "${cmdline}"
log "this run's log: ${run_log}"
if [ "${ngpu}" -gt 0 ]; then
  train_job=("${cuda_cmd}" --gpu "${ngpu}")
  train_opts=(--device cuda --nproc "${ngpu}")
else
  train_job=("${train_cmd}")
  train_opts=(--device cpu --nproc "${train_nproc}")
fi
if [ "${num_nodes}" -gt 1 ]; then
  if [ "${cmd_backend}" != slurm ]; then
    log "Error: --num-nodes ${num_nodes} needs cmd_backend=slurm (cmd.sh): a multi-node" \
        "job is a Slurm allocation"; exit 1
  fi
  train_job+=(--num-nodes "${num_nodes}")
  train_opts+=(--num-nodes "${num_nodes}")
fi
[ -z "${deepspeed}" ] || train_opts+=(--deepspeed "${deepspeed}")
mexp=${expdir}/${model}
stage_names=$(python local/mix_stages.py --plan "${stage_plan}" --list-stages) || exit 1

# Run one job through ${train_cmd}; on failure show the end of its log and stop.
run_job() {
  local logfile=$1; shift
  run_job_with "${train_cmd}" "${logfile}" "$@"
}
run_job_with() {
  local cmd=$1 logfile=$2; shift 2
  if ! ${cmd} "${logfile}" "$@"; then
    log "Error: job failed; last lines of ${logfile}:"
    tail -n 20 "${logfile}" >&2
    exit 1
  fi
}
# The mini recipe's tiny twin of the family's model (make_twin.py skips an identical one).
make_twin() {
  local opts=()
  [ "${model}" = paraformer ] && opts=(--tokens "${corpus_dir}/vocabulary.txt"
                                       --cmvn-jsonl "${dumpdir}/${model}/general_train.jsonl")
  run_job "${mexp}/logs/make_twin.log" \
    python local/make_twin.py --family "${model}" --config "${twin_conf}" "${opts[@]}" \
      --out "${mexp}/twin"
}
# Whether the stage in dir $1 trained LoRA weights (funasr's saved config says so).
uses_lora() {
  [ -f "$1/config.yaml" ] && python -c 'import sys, yaml
c = yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}
sys.exit(0 if (c.get("llm_conf") or {}).get("use_lora") else 1)' "$1/config.yaml"
}
# Training curves of every stage so far -> ${mexp}/curves/ (cheap; after each stage).
plot_curves() {
  run_job "${mexp}/logs/curves.log" python local/plot_curves.py --exp "${mexp}"
  log "  training curves: ${mexp}/curves/curves.png, summary: ${mexp}/curves/summary.txt"
}
# A stage's outputs are complete when its marker holds the same signature.
is_done() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
mark_done() { echo "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }

if [ -z "${data}" ]; then
  data=${corpus_dir}/domain
  general=${corpus_dir}/general
  heldout_spk=${heldout_spk:-${corpus_dir}/heldout_speakers.txt}
  terms=${terms:-${corpus_dir}/domain_terms.txt}
fi

# ---------------------------------------------------------------- stages
if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ] && [ "${data}" = "${corpus_dir}/domain" ]; then
  log "Stage 0: synthesise the mini corpus into ${corpus_dir} (log: ${logdir}/make_corpus.log)"
  # make_corpus.py itself skips the work when the corpus is complete for the same settings
  run_job "${logdir}/make_corpus.log" \
    python local/make_corpus.py --config "${corpus_conf}" --out "${corpus_dir}" --nj "${nj}"
  grep -E '(skip|complete|utterances)' "${logdir}/make_corpus.log" | tail -n 3 || true
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: data preparation -> ${datadir}/{general,domain}_{train,valid,test} (logs: ${logdir}/prepare_*.log)"
  opts=()
  [ "${skip_bad}" = true ] && opts+=(--skip-bad)
  [ "${resample}" = true ] && opts+=(--resample)
  for pool in general domain; do
    if [ ${pool} = general ]; then src=${general}; txt=${general_text}; else src=${data}; txt=${text}; fi
    sig="src=$(realpath "${src}") text=${txt} ratios=${split_ratios} seed=${split_seed} heldout=${heldout_spk} opts=${opts[*]:-}"
    if [ -f "${src}/manifest.json" ]; then sig+=" manifest=$(sha256sum < "${src}/manifest.json" | cut -c1-16)"; fi
    marker=${datadir}/.${pool}.done
    if is_done "${marker}" "${sig}"; then
      log "  ${pool}: complete, skipped (remove ${marker} to redo)"
      continue
    fi
    run_job "${logdir}/prepare_${pool}.log" \
      python local/prepare_data.py --in "${src}" ${txt:+--text "${txt}"} \
        --out "${datadir}/${pool}_all" --nj "${nj}" "${opts[@]}"
    run_job "${logdir}/split_${pool}.log" \
      python local/split_data.py --src "${datadir}/${pool}_all" --out-prefix "${datadir}/${pool}" \
        --ratios "${split_ratios}" --seed "${split_seed}" ${heldout_spk:+--heldout-spk "${heldout_spk}"}
    for part in all train valid test; do
      utils/validate_data_dir.sh --no-feats "${datadir}/${pool}_${part}" > /dev/null
    done
    grep -E 'utterances' "${logdir}/split_${pool}.log" | sed 's/^.*INFO: /  /'
    mark_done "${marker}" "${sig}"
  done
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: staged general/domain mixes from ${stage_plan} (log: ${logdir}/mix_stages.log)"
  sig="plan=$(sha256sum < "${stage_plan}" | cut -c1-16) g=$(cat "${datadir}/.general.done" | sha256sum | cut -c1-16) d=$(cat "${datadir}/.domain.done" | sha256sum | cut -c1-16)"
  marker=${datadir}/.mix.done
  if is_done "${marker}" "${sig}"; then
    log "  mixes complete, skipped (remove ${marker} to redo)"
  else
    run_job "${logdir}/mix_stages.log" \
      python local/mix_stages.py --plan "${stage_plan}" --general "${datadir}/general_train" \
        --domain "${datadir}/domain_train" --out-prefix "${datadir}/" \
        --summary "${datadir}/mix_summary.tsv"
    mark_done "${marker}" "${sig}"
  fi
  column -t -s $'\t' "${datadir}/mix_summary.tsv"
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: ${model} jsonl -> ${dumpdir}/${model}/ (logs: ${logdir}/jsonl_${model}_*.log)"
  mkdir -p "${dumpdir}/${model}"
  jsonl_opts=()
  if [ "${model}" = nano ]; then
    # text_length counts the model's own tokens: the base model's tokenizer (mini
    # recipe: the twin's, which is the real Qwen3 one)
    tok_dir=${base_model:-${mexp}/twin}
    [ -n "${base_model}" ] || make_twin
    jsonl_opts=(--model-dir "${tok_dir}" --prompt-conf "${train_conf}")
  fi
  for set in general_train general_valid general_test domain_train domain_valid domain_test \
             $(for s in ${stage_names}; do echo "${s}_train"; done); do
    out=${dumpdir}/${model}/${set}.jsonl
    sig=$(cat "${datadir}/${set}/wav.scp" "${datadir}/${set}/text" | sha256sum | cut -c1-16)
    [ "${model}" = nano ] && sig+=" $(realpath "${tok_dir}") $(sha256sum < "${train_conf}" | cut -c1-16)"
    if is_done "${out}.done" "${sig}" && [ -f "${out}" ]; then
      log "  ${out}: complete, skipped"
      continue
    fi
    run_job "${logdir}/jsonl_${model}_${set}.log" \
      python local/make_jsonl.py --family "${model}" --data-dir "${datadir}/${set}" \
        --out "${out}" --nj "${nj}" "${jsonl_opts[@]}"
    mark_done "${out}.done" "${sig}"
    log "  ${out}: $(wc -l < "${out}") lines"
  done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  if [ -n "${base_model}" ]; then
    log "Stage 4: check the base model ${base_model}"
    python -c 'import sys; from funasr_recipe.modeldir import check_model_dir
from funasr_recipe.io import DataError
try: check_model_dir(sys.argv[1], sys.argv[2])
except DataError as e: sys.exit(f"ERROR: {e}")' "${base_model}" "${model}"
  else
    log "Stage 4: tiny ${model} twin, pre-trained on the general pool -> ${mexp}/base (logs: ${mexp}/logs/)"
    make_twin
    run_job_with "${train_job[*]}" "${mexp}/logs/pretrain.log" \
      python local/train.py --family "${model}" --conf "${train_conf}" --section pretrain \
        --model-dir "${mexp}/twin" --train "${dumpdir}/${model}/general_train.jsonl" \
        --valid "${dumpdir}/${model}/general_valid.jsonl" --out "${mexp}/pretrain" \
        --threads "${train_threads}" "${train_opts[@]}"
    grep -E "skipped|chain check" "${mexp}/logs/pretrain.log" | sed 's/^.*INFO[]:]* -* */  /' || true
    plot_curves
    run_job "${mexp}/logs/export_base.log" \
      python local/export_model.py --model-dir "${mexp}/twin" \
        --checkpoint "${mexp}/pretrain/final.pt" --out "${mexp}/base"
  fi
fi
base_model=${base_model:-${mexp}/base}

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  init=${base_model}/model.pt
  for s in ${stage_names}; do
    log "Stage 5: fine-tune ${s} from ${init} (log: ${mexp}/logs/train_${s}.log)"
    run_job_with "${train_job[*]}" "${mexp}/logs/train_${s}.log" \
      python local/train.py --family "${model}" --conf "${train_conf}" --section "${s}" \
        --model-dir "${base_model}" --init "${init}" \
        --train "${dumpdir}/${model}/${s}_train.jsonl" \
        --valid "${dumpdir}/${model}/domain_valid.jsonl" \
        --extra-valid "general=${dumpdir}/${model}/general_valid.jsonl" \
        --out "${mexp}/${s}" --threads "${train_threads}" "${train_opts[@]}"
    grep -E "skipped|chain check" "${mexp}/logs/train_${s}.log" | sed 's/^.*INFO[]:]* -* */  /' || true
    plot_curves
    init=${mexp}/${s}/final.pt
    if uses_lora "${mexp}/${s}"; then
      # a LoRA stage decodes (and ships) as a model dir with the adapter folded in
      log "  ${s} trained LoRA: merged into ${mexp}/${s}/merged (+ peft_adapter/)"
      run_job "${mexp}/logs/merge_${s}.log" \
        python local/merge_lora.py --model-dir "${base_model}" --checkpoint "${init}" \
          --out "${mexp}/${s}/merged"
    fi
  done
  last=${s}
  log "Stage 5: export the last stage as a standalone model dir ${mexp}/final_model"
  if uses_lora "${mexp}/${last}"; then
    run_job "${mexp}/logs/export_final.log" \
      python local/merge_lora.py --model-dir "${base_model}" --checkpoint "${init}" \
        --out "${mexp}/final_model"
  else
    run_job "${mexp}/logs/export_final.log" \
      python local/export_model.py --model-dir "${base_model}" --checkpoint "${init}" \
        --out "${mexp}/final_model"
  fi
fi

models="base ${stage_names}"
# The model dir and weights each model decodes with.
model_dir_of() {
  if [ "$1" != base ] && uses_lora "${mexp}/$1"; then echo "${mexp}/$1/merged"; else echo "${base_model}"; fi
}
checkpoint_of() {
  if [ "$1" = base ]; then echo "${base_model}/model.pt"
  elif uses_lora "${mexp}/$1"; then echo "${mexp}/$1/merged/model.pt"
  else echo "${mexp}/$1/final.pt"; fi
}

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  dec_opts=()
  [ "${timestamps}" = true ] && dec_opts+=(--timestamps)
  [ "${vad}" = true ] && dec_opts+=(--vad)
  [ -n "${hotwords}" ] && dec_opts+=(--hotwords "${hotwords}")
  [ -n "${language}" ] && dec_opts+=(--language "${language}")
  [ -n "${itn}" ] && dec_opts+=(--itn "${itn}")
  for m in ${models}; do
    ckpt=$(checkpoint_of "${m}")
    mdir=$(model_dir_of "${m}")
    for set in ${test_sets}; do
      out=${mexp}/decode_${m}/${set}
      sig="$(realpath "${ckpt}") $(stat -L -c %s.%Y "${ckpt}") $(sha256sum < "${datadir}/${set}/wav.scp" | cut -c1-16) $(sha256sum < "${train_conf}" | cut -c1-16) ${dec_opts[*]:-}"
      if is_done "${out}/.done" "${sig}" && [ -f "${out}/text" ]; then
        log "Stage 6: ${out} complete, skipped"
        continue
      fi
      log "Stage 6: decode ${set} with ${m} -> ${out}/text (logs: ${out}/log/decode.*.log)"
      rm -f "${out}"/text.*
      if ! ${decode_cmd} JOB=1:"${decode_nj}" "${out}/log/decode.JOB.log" \
          python local/decode.py --family "${model}" --model-dir "${mdir}" \
            --checkpoint "${ckpt}" --data-dir "${datadir}/${set}" --out "${out}" \
            --conf "${train_conf}" --nj "${decode_nj}" --job JOB "${dec_opts[@]}"; then
        log "Error: decoding failed; see ${out}/log/"; exit 1
      fi
      sort -m "${out}"/text.* > "${out}/text.tmp" && mv "${out}/text.tmp" "${out}/text"
      if [ "${timestamps}" = true ]; then
        sort -m "${out}"/timestamps.* > "${out}/timestamps.tmp" && mv "${out}/timestamps.tmp" "${out}/timestamps"
      fi
      rm -f "${out}"/text.[0-9]* "${out}"/timestamps.[0-9]*
      mark_done "${out}/.done" "${sig}"
    done
  done
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  log "Stage 7: score and write ${mexp}/RESULTS.md (log: ${mexp}/logs/results.log)"
  plot_curves
  pretrain_opt=()
  [ "${base_model}" = "${mexp}/base" ] && pretrain_opt=(--pretrain-data "${datadir}/general_train")
  run_job "${mexp}/logs/results.log" \
    python local/make_results.py --family "${model}" --exp "${mexp}" \
      --models "$(echo ${models} | tr ' ' ,)" --sets "$(echo ${test_sets} | tr ' ' ,)" \
      --data "${datadir}" --mix-summary "${datadir}/mix_summary.tsv" "${pretrain_opt[@]}" \
      --terms "${terms:-none}"
  sed -n '/^| model/,$p' "${mexp}/RESULTS.md"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
