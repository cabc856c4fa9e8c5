#!/usr/bin/env python3
"""Score every model's decodes and write RESULTS.md for a model family.

Reads EXP/decode_<model>/<set>/text for every --models x --sets, scores it
against DATA/<set>/text (writing score.txt and per-utterance details beside
it), and writes a table of error rates with the hours each stage trained on
(from the mix summary). Everything comes from files: re-run it alone at will.

Example:
  local/make_results.py --family paraformer --exp exp/paraformer \\
      --models base,stage1,stage2,stage3 --sets general_test,domain_test
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.results import make_results


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--family", default="paraformer", help="model family (for the title)")
    ap.add_argument("--exp", type=Path, required=True, help="the family's experiment dir")
    ap.add_argument("--models", required=True, help="comma-separated model names")
    ap.add_argument("--sets", default="general_test,domain_test", help="comma-separated test sets")
    ap.add_argument("--data", type=Path, default=Path("data"), help="data dirs")
    ap.add_argument("--mix-summary", type=Path, default=Path("data/mix_summary.tsv"),
                    help="stage mix table")
    ap.add_argument("--pretrain-data", type=Path, default=None,
                    help="data dir the base model was pre-trained on (mini recipe)")
    ap.add_argument("--out", type=Path, default=None, help="output (default: EXP/RESULTS.md)")
    return ap


def body(args) -> int:
    md = make_results(args.family, args.exp, args.models.split(","), args.sets.split(","),
                      args.data, args.mix_summary, args.pretrain_data,
                      args.out or args.exp / "RESULTS.md")
    print(md)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
