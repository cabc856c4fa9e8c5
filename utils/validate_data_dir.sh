#!/usr/bin/env bash
# Checks a Kaldi-style data directory the way Kaldi's own validate_data_dir.sh
# does with --no-feats (feats.scp is never needed or checked here).
#
#   utils/validate_data_dir.sh [--no-feats] [--no-text] [--no-spk-sort] DATA_DIR
#
# A thin wrapper: the rules are written once, in local/funasr_recipe/datadir_rules.py
# (validate_datadir; the list is in the comment above RESERVED_WORDS there), and
# run here through local/validate_data_dir.py in the recipe's environment
# (path.sh). Required: utt2spk, spk2utt, wav.scp and (unless --no-text) text;
# checked when present: text, segments, utt2dur, utt2num_samples.
# Prints "Successfully validated data-directory DIR" and exits 0, or prints
# the first problem (file, line, key) on stderr and exits 1.
set -euo pipefail
export LC_ALL=C

me=$(basename "$0")
usage="Usage: $me [--no-feats] [--no-text] [--no-spk-sort] DATA_DIR
  --no-feats     accepted for Kaldi compatibility (feats.scp is never checked)
  --no-text      do not require a text file (it is still checked if present)
  --no-spk-sort  do not require utt2spk to be sorted by speaker as well
e.g.: $me data/train"

no_text=false
no_spk_sort=false
data=
while (($# > 0)); do
  case "$1" in
    --no-feats) ;;
    --no-text) no_text=true ;;
    --no-spk-sort) no_spk_sort=true ;;
    -h | --help) echo "$usage"; exit 0 ;;
    -*) echo "$me: ERROR: unknown option $1" >&2; echo "$usage" >&2; exit 1 ;;
    *)
      if [[ -n "$data" ]]; then
        echo "$me: ERROR: expected one DATA_DIR, got '$data' and '$1'" >&2
        echo "$usage" >&2
        exit 1
      fi
      data=$1
      ;;
  esac
  shift
done
if [[ -z "$data" ]]; then
  echo "$usage" >&2
  exit 1
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../path.sh
. "${root}/path.sh" || exit 1
opts=()
[[ "$no_text" == true ]] && opts+=(--no-text)
[[ "$no_spk_sort" == true ]] && opts+=(--no-spk-sort)
python "${root}/local/validate_data_dir.py" "${opts[@]}" -- "$data" > /dev/null || exit 1
echo "$me: Successfully validated data-directory $data"
