#!/usr/bin/env python3
"""Score a hypothesis text file against a reference text file (Kaldi's compute-wer).

Both files are Kaldi-style "key text" tables. Each CJK character is one token
and other text is split into words, so mixed Chinese/English is scored as CER
on the Chinese and WER on the English, in one figure. Both sides are
normalised first (--norm full: full-width to half-width, numbers written out
as words with wetext, lower case, punctuation removed; --norm none gives the
raw score). A reference key missing from the hypotheses counts as all
deletions; an empty hypothesis is legal. Prints, as Kaldi does, then the
bootstrap interval (utterances resampled, seeded):

  %WER 12.34 [ 5 / 40, 1 ins, 2 del, 2 sub ]
  %SER 25.00 [ 1 / 4 ]
  Scored 4 sentences, 0 not present in hyp.
  %WER 95% CI [ 8.10, 16.90 ] (bootstrap: 1000 resamples of the utterances, seed 0)

With --terms: term recall and the error rate on term tokens (B-WER) and on
the other tokens (U-WER); see funasr_recipe/stats.py for the exact
definitions. With --compare HYP2: HYP2's score and the paired-bootstrap
probability that it is better than HYP.

Example:
  local/score.py --ref data/domain_test/text \\
      --hyp exp/paraformer/decode_stage3_default/domain_test/text \\
      --details exp/paraformer/decode_stage3_default/domain_test/details \\
      --stats exp/paraformer/decode_stage3_default/domain_test/errors.txt \\
      --terms downloads/mini_corpus/domain_terms.txt
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.errors import DataError
from funasr_recipe.tables import read_table
from funasr_recipe.normalize import LEVELS, make_scoring_normalizer
from funasr_recipe.scoring import score, write_details
from funasr_recipe.stats import (TermMatcher, bootstrap_ci, error_stats, format_error_stats,
                                 paired_results, read_terms, term_report, write_text)

log = logging.getLogger("score")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--ref", required=True, type=Path, help="reference text file (key text)")
    ap.add_argument("--hyp", required=True, type=Path,
                    help="hypothesis text file (key text; the text may be empty)")
    ap.add_argument("--norm", choices=LEVELS, default="full",
                    help="normalisation of both sides: none (raw score), basic (width, case, "
                         "punctuation) or full (basic + numbers as words)")
    ap.add_argument("--no-lowercase", action="store_true",
                    help="keep upper/lower case distinct")
    ap.add_argument("--keep-punct", action="store_true",
                    help="keep punctuation (it is then scored as tokens)")
    ap.add_argument("--no-halfwidth", action="store_true",
                    help="keep full-width ASCII forms (e.g. Ａ１，) distinct from A1,")
    ap.add_argument("--details", type=Path, default=None,
                    help="write per-utterance alignments (ref/hyp/op rows) here, in the format "
                         "of Kaldi's wer_per_utt_details.pl")
    ap.add_argument("--stats", type=Path, default=None,
                    help="write the most frequent substitutions, deletions, insertions and "
                         "per-token statistics here")
    ap.add_argument("--top", type=int, default=20,
                    help="how many of the most frequent errors of each kind --stats lists")
    ap.add_argument("--terms", type=Path, default=None,
                    help="term list (one term a line, e.g. the mini corpus's domain_terms.txt "
                         "or a hotword list): print term recall and B-WER/U-WER")
    ap.add_argument("--term-table", type=Path, default=None,
                    help="with --terms: write per-term recall here")
    ap.add_argument("--compare", type=Path, default=None, metavar="HYP2",
                    help="a second system's hypotheses: its score and the paired-bootstrap "
                         "probability that it beats --hyp")
    ap.add_argument("--bootstrap", type=int, default=1000,
                    help="bootstrap resamples for the 95%% interval (0: no interval)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
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
    normalizer = make_scoring_normalizer(args.norm, lowercase=not args.no_lowercase,
                                         remove_punctuation=not args.keep_punct,
                                         fullwidth_to_halfwidth=not args.no_halfwidth)
    matcher = TermMatcher(read_terms(args.terms), normalizer=normalizer) if args.terms else None
    want_align = any(x is not None for x in (args.details, args.stats, matcher))
    result = score(refs, hyps, normalizer=normalizer, details=want_align)
    if args.details is not None:
        write_details(args.details, result)
        log.info("wrote per-utterance alignments to %s", args.details)
    if args.stats is not None:
        write_text(args.stats, format_error_stats(error_stats(result), args.top))
        log.info("wrote error statistics to %s", args.stats)
    out = [result.summary()]
    if args.bootstrap > 0 and result.n_ref_tokens:
        ci = bootstrap_ci(result.errors, result.ref_len, args.bootstrap, args.seed)
        out.append(f"%WER 95% CI [ {ci.low:.2f}, {ci.high:.2f} ] (bootstrap: {args.bootstrap} "
                   f"resamples of the utterances, seed {args.seed})\n")
    if matcher is not None:
        report = term_report(result, matcher)
        out.append(report.summary())
        if args.term_table is not None:
            write_text(args.term_table, report.table())
    if args.compare is not None:
        other = score(refs, _read(args.compare, "second hypothesis"), normalizer=normalizer)
        paired = paired_results(result, other, max(args.bootstrap, 1), args.seed)
        verdict = "significant" if paired.significant else "not significant"
        out.append(f"HYP2 {other.summary().splitlines()[0]}\n"
                   f"HYP2 - HYP: {paired.delta.estimate:+.2f} points, 95% CI {paired.delta}; "
                   f"P(HYP2 better) = {paired.prob_b_better:.3f} ({verdict} at 95%)\n")
    sys.stdout.write("".join(out))
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
