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
model=paraformer      # model family: paraformer
data=                 # domain data: folder of audio + .txt, list (.jsonl/.csv/.xlsx) or wav.scp;
                      # empty: the embedded mini corpus
general=              # general data, same forms as --data (needed with --data)
text=                 # with --data wav.scp: its text file
general_text=         # with --general wav.scp: its text file
heldout_spk=          # file of speaker ids kept out of training (mini corpus: its own list)
corpus_conf=conf/corpus.yaml   # mini corpus settings
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
Options (default in brackets):
  --stage N             first stage to run [${stage}]
  --stop-stage N        last stage to run [${stop_stage}]
  --model NAME          model family: paraformer [${model}]
  --data PATH           domain data: folder of audio + same-named .txt, a .jsonl/.json/
                        .csv/.tsv/.xlsx list, or a wav.scp (with --text) [mini corpus]
  --general PATH        general data, same forms (required with --data) [mini corpus]
  --text FILE           text file for a --data wav.scp [${text}]
  --general-text FILE   text file for a --general wav.scp [${general_text}]
  --heldout-spk FILE    speakers kept out of training [mini corpus list]
  --corpus-conf FILE    mini corpus settings [${corpus_conf}]
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

cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  log "Error: unexpected arguments: $*"; log "${help_message}"; exit 1
fi
case "${model}" in
  paraformer) ;;
  *) log "Error: --model ${model}: unknown model family (paraformer)"; exit 1 ;;
esac
if [ -n "${data}" ] && [ -z "${general}" ]; then
  log "Error: --data needs --general (the general pool mixed in by the stage plan)"; exit 1
fi

logdir=${expdir}/logs
mkdir -p "${logdir}"
stage_names=$(python -c 'import sys; from funasr_recipe.mixing import load_plan
print(" ".join(s.name for s in load_plan(sys.argv[1]).stages))' "${stage_plan}")

# Run one job through ${train_cmd}; on failure show the end of its log and stop.
run_job() {
  local logfile=$1; shift
  if ! ${train_cmd} "${logfile}" "$@"; then
    log "Error: job failed; last lines of ${logfile}:"
    tail -n 20 "${logfile}" >&2
    exit 1
  fi
}
# A stage's outputs are complete when its marker holds the same signature.
is_done() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
mark_done() { echo "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }

if [ -z "${data}" ]; then
  data=${corpus_dir}/domain
  general=${corpus_dir}/general
  heldout_spk=${heldout_spk:-${corpus_dir}/heldout_speakers.txt}
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
        --out "${datadir}/${pool}_all" "${opts[@]}"
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
  for set in general_train general_valid general_test domain_train domain_valid domain_test \
             $(for s in ${stage_names}; do echo "${s}_train"; done); do
    out=${dumpdir}/${model}/${set}.jsonl
    sig=$(cat "${datadir}/${set}/wav.scp" "${datadir}/${set}/text" | sha256sum | cut -c1-16)
    if is_done "${out}.done" "${sig}" && [ -f "${out}" ]; then
      log "  ${out}: complete, skipped"
      continue
    fi
    run_job "${logdir}/jsonl_${model}_${set}.log" \
      python local/make_jsonl.py --family "${model}" --data-dir "${datadir}/${set}" \
        --out "${out}" --nj "${nj}"
    mark_done "${out}.done" "${sig}"
    log "  ${out}: $(wc -l < "${out}") lines"
  done
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
