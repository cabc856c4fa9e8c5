#!/usr/bin/env python3
"""Score a hypothesis text file against a reference text file (Kaldi's compute-wer).

Both files are Kaldi-style "key text" tables. Each CJK character is one token
and other text is split into words, so mixed Chinese/English is scored as CER
on the Chinese and WER on the English, in one figure. Both sides are
normalised first (full-width to half-width, lower case, punctuation removed)
unless switched off. A reference key missing from the hypotheses counts as all
deletions; an empty hypothesis is legal. Prints, as Kaldi does:

  %WER 12.34 [ 5 / 40, 1 ins, 2 del, 2 sub ]
  %SER 25.00 [ 1 / 4 ]
  Scored 4 sentences, 0 not present in hyp.

Example:
  local/score.py --ref data/test/text --hyp exp/decode_test/text \\
      --details exp/decode_test/wer_details/per_utt
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.io import DataError, read_table
from funasr_recipe.scoring import score, write_details
from funasr_recipe.text import make_normalizer

log = logging.getLogger("score")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--ref", required=True, type=Path, help="reference text file (key text)")
    ap.add_argument("--hyp", required=True, type=Path,
                    help="hypothesis text file (key text; the text may be empty)")
    ap.add_argument("--details", type=Path, default=None,
                    help="write per-utterance alignments here, in the format of Kaldi's "
                         "wer_per_utt_details.pl")
    ap.add_argument("--no-lowercase", action="store_true",
                    help="keep upper/lower case distinct")
    ap.add_argument("--keep-punct", action="store_true",
                    help="keep punctuation (it is then scored as tokens)")
    ap.add_argument("--no-halfwidth", action="store_true",
                    help="keep full-width ASCII forms (e.g. Ａ１，) distinct from A1,")
    return ap


def _read(path: Path, what: str) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist or is not a file")
    table = read_table(path, allow_empty_value=True)
    if not table:
        log.warning("%s file %s is empty", what, path)
    return table


def body(args) -> int:
    refs = _read(args.ref, "reference")
    hyps = _read(args.hyp, "hypothesis")
    empty = [k for k, v in refs.items() if not v]
    if empty:
        log.warning("%d reference(s) in %s are empty, their hypothesis tokens all count as "
                    "insertions: %s", len(empty), args.ref, " ".join(empty[:5]))
    normalizer = make_normalizer(lowercase=not args.no_lowercase,
                                 remove_punct=not args.keep_punct,
                                 fullwidth_to_halfwidth=not args.no_halfwidth)
    result = score(refs, hyps, normalizer=normalizer, details=args.details is not None)
    if args.details is not None:
        write_details(args.details, result)
        log.info("wrote per-utterance details to %s", args.details)
    sys.stdout.write(result.summary())
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
