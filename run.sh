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
decode_conf=          # decoding settings [conf/<model>/decode.yaml]
train_args=           # one-off training overrides "k=v k2=v2" (funasr keys, every training
                      # stage; "stage1:k=v" that stage only, "pretrain:k=v" the twin's pre-training)
decode_args=          # one-off decoding overrides "k=v ..." (keys of the decode conf)
lm_conf=conf/nano/lm.yaml      # nano mini recipe: text-only pre-training of the twin's LLM
encoder_conf=conf/nano/encoder.yaml  # nano mini recipe: CTC pre-training of the twin's encoder
test_sets="general_test domain_test"   # sets decoded and scored
terms=                # domain term list for term recall (mini corpus: its own list)
# torch threads for training: the CPUs this process may use (GNU nproc prints
# OMP_NUM_THREADS when it is set, as path.sh sets it for every job: not counted);
# each training job asks the backend for as many CPUs
train_threads=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
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
decode_tag=           # name of the decode options: decode dirs are decode_<model>_<tag>
                      # (empty: derived from the options, 'default' when all are defaults)
extend_vocab=false    # paraformer: true adds tokens the transcripts need to the base model's vocabulary
stage_plan=conf/stages.yaml    # general:domain mixing per stage (hours)
split_ratios=8:1:1    # train:valid:test
split_seed=0          # seed of the split
skip_bad=false        # true: leave bad input items out (listed in data/*/dropped.tsv)
resample=false        # true: convert non-16 kHz/mono audio instead of rejecting it
use_utt2dur=false     # true: a wav.scp input's durations from the utt2dur beside it (no audio
                      # file opened; sample rate and channels not checked: local/prepare_data.py)
nj=2                  # parallel jobs for data preparation
jsonl_shards=1        # K > 1: each stage's training jsonl also in K shards, read one a slice
                      # (funasr's data_split_num: a training job holds one shard's index)
corpus_dir=downloads/mini_corpus   # where the mini corpus is synthesised
datadir=data          # Kaldi data dirs
dumpdir=dump          # jsonl for training
expdir=exp            # models, logs, results
export_conf=conf/export.yaml   # stage 8: engines, precisions, parity thresholds

help_message=$(cat <<EOF
Usage: $0 [options]
Stages:
  0  synthesise the mini corpus (only without --data)
  1  data preparation: folder/list -> Kaldi data dirs, train:valid:test split
  2  staged general/domain mixes (hours), one training data dir per stage
  3  jsonl for the model family (dump/<model>/<set>.jsonl)
  4  base model: check --base-model, or make the tiny twin and pre-train it on
     the general pool (mini recipe) -> exp/<model>/base
  5  (paraformer) vocabulary audit -> exp/<model>/vocab_audit.tsv; then
     fine-tuning stages chained through ++init_param -> exp/<model>/<stage>/final.pt;
     the last stage exported as a standalone model dir exp/<model>/final_model
  6  decode the test sets with the base model and every stage's model
  7  score, and write exp/<model>/RESULTS.md and exp/<model>/error_browser/<set>.html
  8  export final_model for serving engines (paraformer: ONNX for funasr-onnx and
     sherpa-onnx, fp32 + int8; nano: Hugging Face transformers, and vLLM's layout),
     decode the test sets through each engine, parity table vs the PyTorch decode
     -> RESULTS.md
Relative paths in options are taken from the directory you run $0 from
(defaults in brackets are relative to the recipe's own directory).
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
  --decode-conf FILE    decoding settings (batch size, dither) [conf/<model>/decode.yaml]
  --train-args "K=V .." one-off funasr overrides for every training stage, e.g.
                        "train_conf.max_epoch=2 optim_conf.lr=0.0001" (no spaces in values);
                        STAGE:K=V for one stage ("stage3:optim_conf.lr=0.0001",
                        "pretrain:train_conf.max_epoch=12"), over the unscoped ones
  --decode-args "K=V .." one-off decoding overrides, e.g. "batch_size=4"
  --lm-conf FILE        nano mini recipe: text-only pre-training of the twin's LLM [${lm_conf}]
  --encoder-conf FILE   nano mini recipe: CTC pre-training of the twin's encoder [${encoder_conf}]
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
  --decode-tag TAG      decode dirs are exp/<model>/decode_<model>_<tag>/<set> [derived from the
                        decoding options: 'default', or e.g. 'vad_itn'; RESULTS.md compares tags]
  --extend-vocab BOOL   paraformer: before stage 5, add the characters/words the transcripts
                        need and the base model cannot emit to its vocabulary (growing its
                        embedding and output layers) and train from that copy; without it
                        the vocabulary audit stops when too many are missing
                        (conf/paraformer/vocab_audit.yaml) [${extend_vocab}]
  --stage-plan FILE     general:domain mixing plan [${stage_plan}]
  --split-ratios A:B:C  train:valid:test [${split_ratios}]
  --split-seed N        split seed [${split_seed}]
  --skip-bad BOOL       drop bad items (listed in dropped.tsv) instead of stopping [${skip_bad}]
  --resample BOOL       convert non-16 kHz/mono audio instead of rejecting it [${resample}]
  --use-utt2dur BOOL    a wav.scp input's durations from the utt2dur beside it, no audio
                        file opened (millions of files, network file systems) [${use_utt2dur}]
  --nj N                parallel jobs [${nj}]
  --jsonl-shards K      K > 1: stage 3 also writes each stage's training jsonl as K shards
                        (dump/<model>/<stage>_train.list), and stage 5 trains from the list,
                        one shard a slice (dataset_conf.data_split_num K): for sets of
                        millions of lines [${jsonl_shards}]
  --corpus-dir DIR      where the mini corpus goes [${corpus_dir}]
  --datadir DIR         data dirs [${datadir}]
  --dumpdir DIR         jsonl [${dumpdir}]
  --expdir DIR          experiments and logs [${expdir}]
  --export-conf FILE    stage 8 engines, precisions and parity thresholds [${export_conf}]
EOF
)

cmdline="$0 $*"
# Relative paths given on the command line are relative to the caller's working
# directory (run.sh itself works in its own directory).
caller_pwd=$PWD
given_opts=" "
for a in "$@"; do case "${a}" in --*) given_opts+="${a%%=*} " ;; esac; done
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
for opt in data general text general_text heldout_spk corpus_conf train_conf twin_conf decode_conf terms \
           lm_conf encoder_conf base_model stage_plan deepspeed corpus_dir datadir dumpdir expdir hotwords; do
  case "${given_opts}" in *" --${opt//_/-} "*) ;; *) continue ;; esac
  val=${!opt}
  [ -n "${val}" ] && [ "${val#/}" = "${val}" ] || continue
  # --hotwords is a list or a file: only an existing file is a path
  [ "${opt}" != hotwords ] || [ -f "${caller_pwd}/${val}" ] || continue
  printf -v "${opt}" '%s' "${caller_pwd}/${val}"
done

if [ $# -ne 0 ]; then
  log "Error: unexpected arguments: $*"; log "${help_message}"; exit 1
fi
case "${model}" in
  paraformer|nano) ;;
  *) log "Error: --model ${model}: unknown model family (paraformer, nano)"; exit 1 ;;
esac
if [ "${extend_vocab}" = true ] && [ "${model}" != paraformer ]; then
  log "Error: --extend-vocab true: Paraformer only (Fun-ASR-Nano's Qwen3 tokenizer has no unknown words)"; exit 1
fi
case "${jsonl_shards}" in
  ''|*[!0-9]*|0) log "Error: --jsonl-shards '${jsonl_shards}': a whole number, 1 (no shards) or more"; exit 1 ;;
esac
if [ -n "${data}" ] && [ -z "${general}" ]; then
  log "Error: --data needs --general (the general pool mixed in by the stage plan)"; exit 1
fi

train_conf=${train_conf:-conf/${model}/train.yaml}
twin_conf=${twin_conf:-conf/${model}/twin.yaml}
decode_conf=${decode_conf:-conf/${model}/decode.yaml}
# --train-args/--decode-args: words K=V, each passed on as --set K=V
train_set=(); read -ra kvs_train <<< "${train_args}"; for kv in "${kvs_train[@]}"; do train_set+=(--set "${kv}"); done
decode_set=(); read -ra kvs <<< "${decode_args}"; for kv in "${kvs[@]}"; do decode_set+=(--set "${kv}"); done
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
# The backend reserves what the job uses (slurm.conf: --cpus-per-task, queue.conf: -pe smp).
train_job+=(--num-threads "${train_threads}")
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
# A wrong --base-model, or a stage plan the train config has no sections for, is
# found now, not after the data stages.
if [ -n "${base_model}" ] && ! python local/check_model_dir.py --family "${model}" \
    --model-dir "${base_model}"; then
  log "Error: --base-model ${base_model} is not a usable ${model} model dir (see above)"; exit 1
fi
plan_opts=()
[ -n "${base_model}" ] || plan_opts=(--pretrain)
if ! stage_names=$(python local/check_plan.py --plan "${stage_plan}" --train-conf "${train_conf}" \
    "${plan_opts[@]}" "${train_set[@]}"); then
  log "Error: the stage plan ${stage_plan} and the train config ${train_conf} disagree (see above)"
  exit 1
fi
# Every model is a model dir ${mexp}/<name>/model: "base" (a link to --base-model, or
# to the mini recipe's pre-trained twin) and each fine-tuning stage's export.
own_base=false
if [ -z "${base_model}" ]; then
  own_base=true
else
  mkdir -p "${mexp}/base"
  ln -sfn "$(realpath "${base_model}")" "${mexp}/base/model"
fi

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
# Training curves of every stage so far -> ${mexp}/curves/ (cheap; after each stage).
plot_curves() {
  run_job "${mexp}/logs/curves.log" python local/plot_curves.py --exp "${mexp}"
  log "  training curves: ${mexp}/curves/curves.png, summary: ${mexp}/curves/summary.txt"
}
# The one skip test (local/stamp.py): a step is skipped when its output is complete
# and its stamp records the same inputs (text, lists, configs and checkpoints by
# content, audio by size and time) and options; otherwise it says what changed.
#   is_done OUT --inputs ... --opts ... [--outputs ...]; mark_done OUT (same arguments)
is_done() {
  local why
  why=$(python local/stamp.py check --clear --out "$@") && return 0
  [ -z "${why}" ] || log "  ${why}"
  return 1
}
mark_done() { python local/stamp.py mark --out "$@"; }

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
    durs=()   # --use-utt2dur: the Kaldi utt2dur beside a wav.scp input
    if [ "${use_utt2dur}" = true ] && [ -n "${txt}" ]; then
      durs=(--utt2dur "$(dirname -- "${src}")/utt2dur")
    elif [ "${use_utt2dur}" = true ]; then
      log "  ${pool}: --use-utt2dur applies to a wav.scp input; ${src:-the mini corpus}: every header is read"
    elif [ -n "${txt}" ] && [ -s "$(dirname -- "${src}")/utt2dur" ]; then
      log "  ${pool}: every audio header is read; --use-utt2dur true would take the durations from $(dirname -- "${src}")/utt2dur instead (no file opened, sample rate and channels not checked)"
    fi
    # inputs: the folder or list (+ the audio it named last time), --text, held-out list
    sig=(--inputs "${src}" ${txt:+"${txt}"} ${heldout_spk:+"${heldout_spk}"} "${durs[@]:1}"
           "audio-of:${datadir}/${pool}_all/wav.scp"
         --opts "ratios=${split_ratios}" "seed=${split_seed}" "skip_bad=${skip_bad}"
           "resample=${resample}" "utt2dur=${#durs[@]}")
    outs=(--outputs "${datadir}/${pool}_train" "${datadir}/${pool}_valid" "${datadir}/${pool}_test")
    if is_done "${datadir}/${pool}_all" "${sig[@]}" "${outs[@]}"; then
      log "  ${pool}: complete for the same inputs, skipped"
      continue
    fi
    run_job "${logdir}/prepare_${pool}.log" \
      python local/prepare_data.py --in "${src}" ${txt:+--text "${txt}"} "${durs[@]}" \
        --out "${datadir}/${pool}_all" --nj "${nj}" "${opts[@]}"
    run_job "${logdir}/split_${pool}.log" \
      python local/split_data.py --src "${datadir}/${pool}_all" --out-prefix "${datadir}/${pool}" \
        --ratios "${split_ratios}" --seed "${split_seed}" ${heldout_spk:+--heldout-spk "${heldout_spk}"}
    # utils/validate_data_dir.sh's rules, the pool's four dirs in one process
    python local/validate_data_dir.py --no-feats "${datadir}/${pool}_"{all,train,valid,test} > /dev/null
    grep -E 'utterances' "${logdir}/split_${pool}.log" | sed 's/^.*INFO: /  /'
    # --skip-bad: how many items were left out; files ignored or normalised; where each is listed
    grep -E '^(dropped|ignored|normalised|durations) ' "${logdir}/prepare_${pool}.log" | sed 's/^/  /' || true
    mark_done "${datadir}/${pool}_all" "${sig[@]}"
  done
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: staged general/domain mixes from ${stage_plan} (log: ${logdir}/mix_stages.log)"
  sig=(--inputs "${stage_plan}" "${datadir}/general_train" "${datadir}/domain_train")
  outs=(--outputs)
  for s in ${stage_names}; do outs+=("${datadir}/${s}_train"); done
  if is_done "${datadir}/mix_summary.tsv" "${sig[@]}" "${outs[@]}"; then
    log "  mixes complete for the same inputs, skipped"
  else
    run_job "${logdir}/mix_stages.log" \
      python local/mix_stages.py --plan "${stage_plan}" --general "${datadir}/general_train" \
        --domain "${datadir}/domain_train" --out-prefix "${datadir}/" \
        --summary "${datadir}/mix_summary.tsv"
    mark_done "${datadir}/mix_summary.tsv" "${sig[@]}"
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
  # One set's jsonl (run in the background, nj at a time: each job mostly starts
  # python and loads the tokenizer; a failed job stops the stage).
  jsonl_set() {
    local set=$1 out=${dumpdir}/${model}/${1}.jsonl sig set_opts stage_train kv k
    sig=(--inputs "${datadir}/${set}" "audio-of:${datadir}/${set}/wav.scp")
    # nano: the prompt (train conf) and the tokenizer counting text_length
    [ "${model}" = nano ] && sig+=("${train_conf}" "${tok_dir}/config.yaml" "${tok_dir}/Qwen3-0.6B")
    # nano, a stage's training set: its prompts may carry hotword lists (the stage's
    # prompt.hotword_* keys, --train-args; built from the term list)
    set_opts=()
    stage_train=false
    [ "${set%_train}" != "${set}" ] && echo " ${stage_names} " | grep -q " ${set%_train} " \
      && stage_train=true
    # a stage's training set: also in shards when asked
    if [ "${stage_train}" = true ] && [ "${jsonl_shards}" -gt 1 ]; then
      set_opts+=(--shards "${jsonl_shards}")
    fi
    if [ "${model}" = nano ] && [ "${stage_train}" = true ]; then
      set_opts+=(--section "${set%_train}")
      # only --train-args' prompt.* items for this stage (unscoped or "<stage>:")
      # shape the jsonl (the rest are funasr's)
      for kv in "${kvs_train[@]}"; do
        k=${kv%%=*}
        case "${k}" in *:*) [ "${k%%:*}" = "${set%_train}" ] || continue ;; esac
        k=${k#*:}
        [ "${k#prompt.}" = "${k}" ] || set_opts+=(--set "${kv}")
      done
      if [ -n "${terms}" ] && [ "${terms}" != none ]; then
        set_opts+=(--terms "${terms}"); sig+=("${terms}")
      fi
    fi
    if is_done "${out}" "${sig[@]}" --opts "${set_opts[@]/#/opt=}"; then
      log "  ${out}: complete for the same inputs, skipped"
      return 0
    fi
    run_job "${logdir}/jsonl_${model}_${set}.log" \
      python local/make_jsonl.py --family "${model}" --data-dir "${datadir}/${set}" \
        --out "${out}" --nj "${nj}" "${jsonl_opts[@]}" "${set_opts[@]}"
    mark_done "${out}" "${sig[@]}" --opts "${set_opts[@]/#/opt=}"
    grep -o 'hotword lists .*' "${logdir}/jsonl_${model}_${set}.log" | sed "s|^|  ${set}: |" || true
    log "  ${out}: $(wc -l < "${out}") lines"
  }
  pids=()
  for set in general_train general_valid general_test domain_train domain_valid domain_test \
             $(for s in ${stage_names}; do echo "${s}_train"; done); do
    jsonl_set "${set}" &
    pids+=($!)
    if [ ${#pids[@]} -ge "${nj}" ]; then
      wait "${pids[0]}" || { kill "${pids[@]:1}" 2>/dev/null; exit 1; }
      pids=("${pids[@]:1}")
    fi
  done
  for pid in "${pids[@]}"; do wait "${pid}" || { kill "${pids[@]}" 2>/dev/null; exit 1; }; done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  if [ ${own_base} = false ]; then
    log "Stage 4: check the base model ${base_model}"
    python local/check_model_dir.py --family "${model}" --model-dir "${base_model}"
  else
    log "Stage 4: tiny ${model} twin, pre-trained on the general pool -> ${mexp}/base/model (logs: ${mexp}/logs/)"
    make_twin
    pretrain_init=()
    if [ "${model}" = nano ] && [ "${data}" = "${corpus_dir}/domain" ]; then
      # A real Qwen3 has read the domain's language; the twin's LLM reads grammar
      # sentences of both pools first (never a data set's transcript), text only.
      log "  the twin's LLM: text-only pre-training -> ${mexp}/lm_pretrain (log: ${mexp}/logs/pretrain_llm.log)"
      excl=()
      for pool in general domain; do
        for part in train valid test; do excl+=(--exclude "${datadir}/${pool}_${part}/text"); done
      done
      run_job "${mexp}/logs/pretrain_llm.log" \
        python local/pretrain_llm.py --model-dir "${mexp}/twin" --conf "${lm_conf}" \
          --prompt-conf "${train_conf}" "${excl[@]}" --threads "${train_threads}" \
          --report "general_valid=${datadir}/general_valid/text" \
          --report "domain_valid=${datadir}/domain_valid/text" --out "${mexp}/lm_pretrain"
      grep -E '^LM ' "${mexp}/logs/pretrain_llm.log" | sed 's/^/  /' || true
      pretrain_init=(--init "${mexp}/lm_pretrain/init.pt")
    fi
    if [ "${model}" = nano ]; then
      # A real encoder hears speech; the twin's learns to, with CTC, on the general pool only,
      # and its adaptor gets a head start: it learns to write what the LLM learnt to copy.
      log "  the twin's encoder: CTC pre-training on ${datadir}/general_train -> ${mexp}/encoder_pretrain (log: ${mexp}/logs/pretrain_encoder.log)"
      run_job "${mexp}/logs/pretrain_encoder.log" \
        python local/pretrain_encoder.py --model-dir "${mexp}/twin" "${pretrain_init[@]}" \
          --conf "${encoder_conf}" --lm-conf "${lm_conf}" --train-dir "${datadir}/general_train" \
          --report "general_valid=${datadir}/general_valid" \
          --report "domain_valid=${datadir}/domain_valid" \
          --threads "${train_threads}" --out "${mexp}/encoder_pretrain"
      grep -E '^(encoder|adaptor) ' "${mexp}/logs/pretrain_encoder.log" | sed 's/^/  /' || true
      pretrain_init=(--init "${mexp}/encoder_pretrain/init.pt")
    fi
    run_job_with "${train_job[*]}" "${mexp}/logs/pretrain.log" \
      python local/train.py --family "${model}" --conf "${train_conf}" --section pretrain \
        --model-dir "${mexp}/twin" "${pretrain_init[@]}" \
        --train "${dumpdir}/${model}/general_train.jsonl" \
        --valid "${dumpdir}/${model}/general_valid.jsonl" --out "${mexp}/pretrain" \
        --threads "${train_threads}" "${train_opts[@]}" "${train_set[@]}"
    grep -E "skipped|chain check|set aside|torn checkpoint" "${mexp}/logs/pretrain.log" | sed -E 's/^.*(INFO|WARNING)[]:]* -* */  /' || true
    plot_curves
    run_job "${mexp}/logs/export_base.log" \
      python local/export_model.py --model-dir "${mexp}/twin" --stage-dir "${mexp}/pretrain"
    mkdir -p "${mexp}/base"
    ln -sfn ../pretrain/model "${mexp}/base/model"
  fi
fi
base_model=${mexp}/base/model

# Vocabulary audit (paraformer, issue 16): before fine-tuning, the transcripts against
# the base model's tokens (and seg_dict); --extend-vocab true: train from a copy with
# the missing tokens added (${mexp}/base_vocab), which every later stage then uses.
if [ "${model}" = paraformer ] && [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: vocabulary audit against ${base_model} -> ${mexp}/vocab_audit.tsv (log: ${mexp}/logs/vocab_audit.log)"
  audit_opts=()
  [ "${extend_vocab}" = true ] && audit_opts=(--extend-out "${mexp}/base_vocab")
  test_dirs=()
  for set in ${test_sets}; do test_dirs+=("${datadir}/${set}"); done
  run_job "${mexp}/logs/vocab_audit.log" \
    python local/vocab_audit.py --model-dir "${base_model}" \
      --train "${datadir}/general_train" "${datadir}/domain_train" --test "${test_dirs[@]}" \
      --domain "${datadir}/domain_train" "${datadir}/domain_test" --terms "${terms:-none}" \
      --conf "conf/${model}/vocab_audit.yaml" --out "${mexp}/vocab_audit.tsv" "${audit_opts[@]}"
  sed 's/^/  /' "${mexp}/vocab_audit.txt"
fi
[ "${extend_vocab}" = true ] && base_model=${mexp}/base_vocab

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  init=${base_model}/model.pt
  for s in ${stage_names}; do
    log "Stage 5: fine-tune ${s} from ${init} (log: ${mexp}/logs/train_${s}.log)"
    train_list=${dumpdir}/${model}/${s}_train.jsonl
    [ "${jsonl_shards}" -gt 1 ] && train_list=${dumpdir}/${model}/${s}_train.list
    run_job_with "${train_job[*]}" "${mexp}/logs/train_${s}.log" \
      python local/train.py --family "${model}" --conf "${train_conf}" --section "${s}" \
        --model-dir "${base_model}" --init "${init}" \
        --train "${train_list}" \
        --valid "${dumpdir}/${model}/domain_valid.jsonl" \
        --extra-valid "general=${dumpdir}/${model}/general_valid.jsonl" --plan "${stage_plan}" \
        --out "${mexp}/${s}" --threads "${train_threads}" "${train_opts[@]}" "${train_set[@]}"
    grep -E "skipped|chain check|set aside|torn checkpoint|forgetting budget|chosen epochs" "${mexp}/logs/train_${s}.log" | sed -E 's/^.*(INFO|WARNING)[]:]* -* */  /' || true
    plot_curves
    init=${mexp}/${s}/final.pt
    # the stage as a standalone model dir (a LoRA stage with its adapter folded in)
    log "  ${s}: model dir ${mexp}/${s}/model (log: ${mexp}/logs/export_${s}.log)"
    run_job "${mexp}/logs/export_${s}.log" \
      python local/export_model.py --model-dir "${base_model}" --stage-dir "${mexp}/${s}"
  done
  last=${s}
  if [ -d "${mexp}/final_model" ] && [ ! -L "${mexp}/final_model" ]; then
    prev=${mexp}/final_model.prev-$(date '+%Y%m%d-%H%M%S')
    mv "${mexp}/final_model" "${prev}"
    log "  an earlier ${mexp}/final_model (a copy, not a link) set aside as ${prev}"
  fi
  ln -sfn "${last}/model" "${mexp}/final_model"
  log "Stage 5: the last stage's model dir is ${mexp}/final_model -> ${last}/model"
fi

models="base ${stage_names}"

if [ ${stop_stage} -ge 6 ]; then
  dec_opts=()
  [ "${timestamps}" = true ] && dec_opts+=(--timestamps)
  [ "${vad}" = true ] && dec_opts+=(--vad)
  [ -n "${hotwords}" ] && dec_opts+=(--hotwords "${hotwords}")
  [ -n "${language}" ] && dec_opts+=(--language "${language}")
  [ -n "${itn}" ] && dec_opts+=(--itn "${itn}")
  dec_opts+=("${decode_set[@]}")
  # nano: the prompt the model was trained with (train conf); decoding settings apart
  dec_confs=("${decode_conf}")
  # a hotword file's content, not only its name, decides whether a decode is stale
  [ -f "${hotwords}" ] && dec_confs+=("${hotwords}")
  [ "${model}" = nano ] && dec_confs+=("${train_conf}") && dec_opts+=(--conf "${train_conf}")
  # decodes with other options sit side by side: decode_<model>_<tag>
  if [ -z "${decode_tag}" ]; then
    if ! decode_tag=$(python local/decode.py --family "${model}" --decode-conf "${decode_conf}" \
                        "${dec_opts[@]}" --print-tag); then
      log "Error: the decoding options are not valid: see above"; exit 1
    fi
  fi
  case "${decode_tag}" in
    */*|.|..|"") log "Error: --decode-tag '${decode_tag}': one directory name component"; exit 1 ;;
  esac
  log "decode tag: ${decode_tag} (decode dirs: ${mexp}/decode_<model>_${decode_tag})"
fi

# sig: the stamp of model ${mdir}'s decode of test set $1 into ${out}
decode_sig() {
  sig=(--inputs "${mdir}" "${datadir}/$1" "audio-of:${datadir}/$1/wav.scp" "${dec_confs[@]}"
       --opts "${dec_opts[@]/#/opt=}" --outputs "${out}/text")
}

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  prev_m=
  for m in ${models}; do
    mdir=${mexp}/${m}/model
    # a stage that passed its input on (forgetting budget, on_over_budget: start)
    # is the model before it, file for file: its hypotheses are copied, not decoded again
    same_as=
    if [ -n "${prev_m}" ]; then
      rc=0; python local/same_model.py "${mexp}/${prev_m}/model" "${mdir}" || rc=$?
      [ ${rc} -eq 0 ] && same_as=${prev_m}
      [ ${rc} -ge 2 ] && { log "Error: comparing ${mexp}/${prev_m}/model with ${mdir} failed"; exit 1; }
    fi
    prev_m=${m}
    # the sets still to decode with this model, decoded in one job array: each
    # job loads the model once and decodes its part of every set
    todo=(); io=()
    for set in ${test_sets}; do
      out=${mexp}/decode_${m}_${decode_tag}/${set}
      decode_sig "${set}"
      if is_done "${out}" "${sig[@]}"; then
        log "Stage 6: ${out} complete for the same inputs, skipped"
        continue
      fi
      rm -f "${out}"/text.*
      src=${mexp}/decode_${same_as}_${decode_tag}/${set}
      if [ -n "${same_as}" ] && [ -f "${src}/text" ]; then
        mkdir -p "${out}"
        cp "${src}/text" "${out}/text"
        [ "${timestamps}" = true ] && cp "${src}/timestamps" "${out}/timestamps"
        mark_done "${out}" "${sig[@]}"
        log "Stage 6: ${m}'s model is ${same_as}'s, file for file: ${out}/text copied from ${src}"
        continue
      fi
      todo+=("${set}"); io+=(--data-dir "${datadir}/${set}" --out "${out}")
    done
    [ ${#todo[@]} -eq 0 ] && continue
    logs=${mexp}/decode_${m}_${decode_tag}/log
    log "Stage 6: decode ${todo[*]} with ${m} -> ${mexp}/decode_${m}_${decode_tag}/<set>/text (logs: ${logs}/decode.*.log)"
    if ! ${decode_cmd} JOB=1:"${decode_nj}" "${logs}/decode.JOB.log" \
        python local/decode.py --family "${model}" --model-dir "${mdir}" "${io[@]}" \
          --decode-conf "${decode_conf}" --nj "${decode_nj}" --job JOB "${dec_opts[@]}"; then
      log "Error: decoding failed; see ${logs}/"; exit 1
    fi
    for set in "${todo[@]}"; do
      out=${mexp}/decode_${m}_${decode_tag}/${set}
      sort -m "${out}"/text.* > "${out}/text.tmp" && mv "${out}/text.tmp" "${out}/text"
      if [ "${timestamps}" = true ]; then
        sort -m "${out}"/timestamps.* > "${out}/timestamps.tmp" && mv "${out}/timestamps.tmp" "${out}/timestamps"
      fi
      rm -f "${out}"/text.[0-9]* "${out}"/timestamps.[0-9]*
      decode_sig "${set}"
      mark_done "${out}" "${sig[@]}"
    done
  done
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  log "Stage 7: score and write ${mexp}/RESULTS.md (log: ${mexp}/logs/results.log)"
  plot_curves
  # error browser (issue 16): one page per test set, the first and last model side by side
  for set in ${test_sets}; do
    hyps=()
    for m in $(echo ${models} | tr ' ' '\n' | sed -n '1p;$p' | uniq); do
      hyps+=(--hyp "${m}=${mexp}/decode_${m}_${decode_tag}/${set}/text")
    done
    run_job "${mexp}/logs/error_browser_${set}.log" \
      python local/error_browser.py --data "${datadir}/${set}" --terms "${terms:-none}" \
        "${hyps[@]}" --out "${mexp}/error_browser/${set}.html"
    log "  error browser: ${mexp}/error_browser/${set}.html"
  done
  # hotwords (issue 16): the final model on the domain test set with hotwords off, on
  # (its terms + distractors), distractors only and the whole term list; RESULTS.md
  # includes the section (local/hotword_eval.py)
  hot_opt=(--no-hotwords)   # RESULTS.md shows a hotword comparison only if this run made or checked it
  if [ "${model}" = nano ] && [ -n "${terms}" ] && [ "${terms}" != none ] \
      && echo " ${test_sets} " | grep -q " domain_test "; then
    hot_opt=()
    hdir=${mexp}/hotwords
    hmodel=${stage_names##* }
    # the decode settings stage 6 decodes with (token budget, batch size, dither)
    sig=(--inputs "${mexp}/${hmodel}/model" "${datadir}/domain_test" "${terms}" "${train_conf}"
         "${decode_conf}" "audio-of:${datadir}/domain_test/wav.scp"
         --opts "opt=--decode-conf" "${decode_set[@]/#/opt=}" --outputs "${hdir}/RESULTS.md")
    if is_done "${hdir}" "${sig[@]}"; then
      log "  hotword comparison ${hdir}: complete for the same inputs, skipped"
    else
      log "  hotword comparison: ${hmodel} on domain_test, hotwords off/on/distractors/all -> ${hdir} (log: ${mexp}/logs/hotword_eval.log)"
      run_job "${mexp}/logs/hotword_eval.log" \
        python local/hotword_eval.py --model-dir "${mexp}/${hmodel}/model" \
          --data-dir "${datadir}/domain_test" --terms "${terms}" --conf "${train_conf}" \
          --decode-conf "${decode_conf}" "${decode_set[@]}" \
          --out "${hdir}" --name "${hmodel}" --threads "${train_threads}"
      mark_done "${hdir}" "${sig[@]}"
    fi
  fi
  pretrain_opt=()
  [ ${own_base} = true ] && pretrain_opt=(--pretrain-data "${datadir}/general_train")
  run_job "${mexp}/logs/results.log" \
    python local/make_results.py --family "${model}" --exp "${mexp}" \
      --models "$(echo ${models} | tr ' ' ,)" --sets "$(echo ${test_sets} | tr ' ' ,)" \
      --data "${datadir}" --mix-summary "${datadir}/mix_summary.tsv" "${pretrain_opt[@]}" \
      --terms "${terms:-none}" --tag "${decode_tag}" "${hot_opt[@]}"
  sed -n '/^| model/,$p' "${mexp}/RESULTS.md"
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  # The exports of final_model, decoded through each engine and compared with
  # the PyTorch decode of the same model (the last stage's, stage 6).
  xdir=${mexp}/export
  last_stage=${stage_names##* }
  log "Stage 8: export ${mexp}/final_model for serving engines -> ${xdir}/ (logs: ${mexp}/logs/export_*.log)"
  case "${model}" in
    paraformer)
      engine_model=${xdir}/onnx
      run_job "${mexp}/logs/export_onnx.log" \
        python local/export_onnx.py --model-dir "${mexp}/final_model" --out "${engine_model}" \
          --train-conf "${train_conf}" ;;
    nano)
      engine_model=${xdir}/hf
      run_job "${mexp}/logs/export_hf.log" \
        python local/export_hf.py --model-dir "${mexp}/final_model" --out "${engine_model}" \
          --train-conf "${train_conf}" --base-model "${base_model}" ;;
  esac
  if ! artefacts=$(python local/export_runs.py --conf "${export_conf}" --family "${model}" --artefacts); then
    log "Error: ${export_conf}: see above"; exit 1
  fi
  for artefact in ${artefacts}; do
    # vllm: the layout vLLM's FunASRForConditionalGeneration loads (served by bench/gpu_check.sh)
    sig=(--inputs "${mexp}/final_model" "${train_conf}" --opts "artefact=${artefact}"
         --outputs "${xdir}/${artefact}/export.json")
    if is_done "${xdir}/${artefact}" "${sig[@]}"; then
      log "  ${artefact} layout: complete for the same inputs, skipped"
      continue
    fi
    log "  ${artefact} layout -> ${xdir}/${artefact} (log: ${mexp}/logs/export_${artefact}.log)"
    run_job "${mexp}/logs/export_${artefact}.log" \
      python "local/export_${artefact}.py" --model-dir "${mexp}/final_model" \
        --out "${xdir}/${artefact}" --train-conf "${train_conf}"
    mark_done "${xdir}/${artefact}" "${sig[@]}"
  done
  if ! runs=$(python local/export_runs.py --conf "${export_conf}" --family "${model}"); then
    log "Error: ${export_conf}: see above"; exit 1
  fi
  # one stamp signature per (engine run, set), for is_done and mark_done alike
  engine_sig() {
    sig=(--inputs "${m}" "${datadir}/$1" "audio-of:${datadir}/$1/wav.scp"
         "${export_conf}" "${dec_confs[@]}" --opts "engine=${engine}" "precision=${precision}"
         "prompt=${hotwords}|${language}|${itn}" "decode_args=${decode_args}" --outputs "${rdir}/$1/text")
  }
  for run in ${runs}; do
    engine=${run%%:*}
    precision=${run##*:}
    rdir=${xdir}/decode_${engine}_${precision}
    m=${engine_model}
    [ "${engine}" = pytorch ] && m=${mexp}/final_model   # the reference, for its RTF
    # nano: the prompt options the reference decode (stage 6) had
    eng_opts=()
    if [ "${engine}" = transformers ]; then
      [ -n "${hotwords}" ] && eng_opts+=(--hotwords "${hotwords}")
      [ -n "${language}" ] && eng_opts+=(--language "${language}")
      [ -n "${itn}" ] && eng_opts+=(--itn "${itn}")
      # each utterance's token budget, as the reference decode had it
      eng_opts+=(--decode-conf "${decode_conf}" "${decode_set[@]}")
    fi
    # the run's pending test sets in one job: the engine loads the model once
    pending=() pairs=()
    for set in ${test_sets}; do
      engine_sig "${set}"
      if is_done "${rdir}/${set}" "${sig[@]}"; then
        log "  ${engine} ${precision} ${set}: complete for the same inputs, skipped"
        continue
      fi
      pending+=("${set}")
      pairs+=(--data-dir "${datadir}/${set}" --out "${rdir}/${set}")
    done
    [ ${#pending[@]} -eq 0 ] && continue
    log "  decode ${pending[*]} through ${engine} (${precision}) -> ${rdir}/ (log: ${rdir}/log/decode.log)"
    run_job_with "${decode_cmd}" "${rdir}/log/decode.log" \
      python local/engine_decode.py --engine "${engine}" --precision "${precision}" \
        --model "${m}" --conf "${export_conf}" "${pairs[@]}" "${eng_opts[@]}"
    for set in "${pending[@]}"; do
      engine_sig "${set}"
      mark_done "${rdir}/${set}" "${sig[@]}"
    done
  done
  run_job "${mexp}/logs/export_parity.log" \
    python local/export_parity.py --conf "${export_conf}" --family "${model}" --export "${xdir}" \
      --reference "${mexp}/decode_${last_stage}_${decode_tag}" --data "${datadir}" \
      --sets "$(echo ${test_sets} | tr ' ' ,)" --results "${mexp}/RESULTS.md"
  sed -n '/^| set | engine/,/^$/p' "${mexp}/RESULTS.md"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
