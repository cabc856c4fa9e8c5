#!/usr/bin/env bash
# The forgetting budget against funasr's own checkpoint choice, on a finished run
# (issue 16): for a stage with a general_budget (conf/stages.yaml), decode the
# checkpoint funasr averaged without the budget (STAGE/model.pt.avg<N>, kept beside
# the budget's model.pt.budget), score both on the test sets, and compare them with
# the paired bootstrap (local/score.py --compare).
#
#   bash bench/budget_vs_unconstrained.sh [--exp exp/paraformer] [--stage stage3]
#        [--family paraformer] [--data data] [--sets "general_test domain_test"]
#
# Writes EXP/STAGE.unconstrained/{model,decode/<set>} and prints, per set, the
# budget's error rate, funasr's, and the paired difference (budget - funasr's).
# The budget's own decode is run.sh's (EXP/decode_STAGE_default/<set>/text).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=path.sh
. ./path.sh

exp=exp/paraformer stage=stage3 family=paraformer data=data sets="general_test domain_test"
while [ $# -gt 0 ]; do
  case $1 in
    --exp) exp=$2 ;; --stage) stage=$2 ;; --family) family=$2 ;; --data) data=$2 ;;
    --sets) sets=$2 ;;
    *) echo "$0: unknown option $1 (see the header)" >&2; exit 2 ;;
  esac
  shift 2
done

report=${exp}/${stage}/budget.json
[ -f "${report}" ] || { echo "$0: ${report} not found: ${stage} of ${exp} ran without a general_budget (or has not run)" >&2; exit 1; }
avgs=("${exp}/${stage}"/model.pt.avg*)
avg=${avgs[0]}
[ -f "${avg}" ] || { echo "$0: no model.pt.avg<N> in ${exp}/${stage}: funasr's own average is missing" >&2; exit 1; }
out=${exp}/${stage}.unconstrained
# the stage's own model dir has the files it was trained with (the base's, or
# base_vocab's): only the weights differ
python local/export_model.py --model-dir "${exp}/${stage}/model" --checkpoint "${avg}" --out "${out}/model"
for set in ${sets}; do
  mine=${exp}/decode_${stage}_default/${set}/text
  [ -f "${mine}" ] || { echo "$0: ${mine} not found: run stage 6 first" >&2; exit 1; }
  python local/decode.py --family "${family}" --model-dir "${out}/model" \
    --data-dir "${data}/${set}" --out "${out}/decode/${set}" \
    --decode-conf "conf/${family}/decode.yaml" --conf "conf/${family}/train.yaml" > "${out}/decode.${set}.log" 2>&1
  echo "== ${set}: HYP = ${stage} under the budget (${mine}), HYP2 = funasr's choice (${avg})"
  python local/score.py --ref "${data}/${set}/text" --hyp "${mine}" --compare "${out}/decode/${set}/text"
done
