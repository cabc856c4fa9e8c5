#!/usr/bin/env python3
"""Score every model's decodes and write RESULTS.md for a model family.

Reads EXP/decode_<model>_<tag>/<set>/text for every --models x --sets, scores it
against DATA/<set>/text (writing score.txt, per-utterance details, errors.txt
and, with a term list, terms.txt beside it), and writes EXP/RESULTS.md: error
rates with 95% bootstrap intervals and term recall per model, the hours and
general:domain mix each stage trained on (from the mix summary), whether each
stage changed the error significantly (paired bootstrap), B-WER/U-WER on term
and other tokens, and EXP/stage_tradeoff.png (domain against general error
per model), linked from RESULTS.md with the training curves (EXP/curves/, from
local/plot_curves.py) when present. Decodes of the same models with other
tags (other decoding options, e.g. decode_stage3_vad_itn) are scored too and
shown in a table beside --tag's. Everything comes from files: re-run it alone
at will.

Example:
  local/make_results.py --family paraformer --exp exp/paraformer \\
      --models base,stage1,stage2,stage3 --sets general_test,domain_test \\
      --terms downloads/mini_corpus/domain_terms.txt --tag default
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.normalize import LEVELS
from funasr_recipe.decoding import DEFAULT_TAG
from funasr_recipe.results import make_results

#: Where run.sh's mini corpus keeps its term list (make_corpus.py's output).
MINI_CORPUS_TERMS = Path("downloads/mini_corpus/domain_terms.txt")

log = logging.getLogger("make_results")


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
    ap.add_argument("--terms", default=None,
                    help=f"term list for term recall and B-/U-WER (one term a line); 'none': "
                         f"no term statistics; default: {MINI_CORPUS_TERMS} if it exists")
    ap.add_argument("--norm", choices=LEVELS, default="full",
                    help="normalisation before scoring (the raw score is always in score.txt)")
    ap.add_argument("--bootstrap", type=int, default=1000,
                    help="bootstrap resamples for intervals and significance")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--general-set", default="general_test",
                    help="x axis of the domain/general plot")
    ap.add_argument("--domain-set", default="domain_test",
                    help="y axis of the domain/general plot")
    ap.add_argument("--tag", default=DEFAULT_TAG,
                    help="decode tag of the main tables (EXP/decode_<model>_<tag>; "
                         "local/decode.py --print-tag) [%(default)s]")
    ap.add_argument("--no-hotwords", action="store_true",
                    help="leave out EXP/hotwords/RESULTS.md (run.sh: when this run did not "
                         "make or check the hotword comparison)")
    ap.add_argument("--out", type=Path, default=None, help="output (default: EXP/RESULTS.md)")
    return ap


def _terms(value: str | None) -> Path | None:
    if value is None:
        if MINI_CORPUS_TERMS.is_file():
            log.info("term list: %s (the mini corpus's)", MINI_CORPUS_TERMS)
            return MINI_CORPUS_TERMS
        log.info("no term list (%s does not exist): no term statistics", MINI_CORPUS_TERMS)
        return None
    return None if value.lower() == "none" else Path(value)


def body(args) -> int:
    md = make_results(args.family, args.exp, args.models.split(","), args.sets.split(","),
                      args.data, args.mix_summary, args.pretrain_data,
                      args.out or args.exp / "RESULTS.md", terms=_terms(args.terms),
                      n_resamples=args.bootstrap, seed=args.seed, norm=args.norm,
                      general_set=args.general_set, domain_set=args.domain_set, tag=args.tag,
                      hotwords=not args.no_hotwords)
    print(md)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
