#!/usr/bin/env python3
"""Audit the transcripts against a Paraformer model's vocabulary; optionally extend it.

Tokenises the --train and --test data dirs' transcripts as funasr's
CharTokenizer does for --model-dir (its tokens.json, and its seg_dict for
English words where it has one) and reports which characters and words the
model cannot emit, how many utterances and term occurrences each affects, and
per --terms term its number of training utterances. Writes the table (--out,
e.g. exp/paraformer/vocab_audit.tsv) and a summary beside it (.txt; also
printed). Exits 1, naming the worst characters/words and the options, when
the share of the --domain transcripts' characters/words the model cannot emit
exceeds max_uncovered_share (--conf).

--extend-out DIR writes DIR, a copy of the model dir whose token list (and
seg_dict) has every missing token of the training transcripts appended and
whose embedding and output layers are grown for them (new rows: the mean of
the existing ones); the limit then applies to what remains missing (tokens
only in the test sets, which training cannot teach).

Example:
  local/vocab_audit.py --model-dir exp/paraformer/base \\
      --train data/general_train data/domain_train --test data/general_test data/domain_test \\
      --domain data/domain_train data/domain_test --terms downloads/mini_corpus/domain_terms.txt \\
      --conf conf/paraformer/vocab_audit.yaml --out exp/paraformer/vocab_audit.tsv
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.atomic import atomic_write
from funasr_recipe.errors import DataError
from funasr_recipe.stats import read_terms
from funasr_recipe.vocab import (audit, audit_tsv, extend_model_dir, extension_plan, limit_error,
                                 load_conf, load_vocab, read_texts, summary)

log = logging.getLogger("vocab_audit")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="the base Paraformer model dir")
    ap.add_argument("--train", type=Path, nargs="+", required=True,
                    help="training data dirs (their text files)")
    ap.add_argument("--test", type=Path, nargs="*", default=[], help="test data dirs")
    ap.add_argument("--domain", type=Path, nargs="+", required=True,
                    help="the domain data dirs: the limit applies to their transcripts")
    ap.add_argument("--terms", default=None,
                    help="domain term list (one term a line); 'none': no term statistics")
    ap.add_argument("--conf", type=Path, default=Path("conf/paraformer/vocab_audit.yaml"),
                    help="the audit's settings (max_uncovered_share, show_worst)")
    ap.add_argument("--out", type=Path, required=True,
                    help="the audit table (TSV); the summary goes beside it as .txt")
    ap.add_argument("--extend-out", type=Path, default=None,
                    help="write the model dir with its vocabulary extended here")
    return ap


def body(args) -> int:
    conf = load_conf(args.conf)
    vocab = load_vocab(args.model_dir)
    terms = read_terms(args.terms) if args.terms and args.terms.lower() != "none" else []
    groups = {"train": read_texts(args.train)}
    if args.test:
        groups["test"] = read_texts(args.test)
    result = audit(vocab, groups, read_texts(args.domain), terms)
    with atomic_write(args.out) as f:
        f.write(audit_tsv(result))
    text = summary(result, conf["max_uncovered_share"], conf["show_worst"])
    if args.extend_out is not None:
        tokens, seg = extension_plan(result, "train")
        info = extend_model_dir(vocab, tokens, args.extend_out, seg)
        added = info["added_tokens"]
        text += (f"  extended: {len(added)} tokens added"
                 f"{' (' + ' '.join(added[:30]) + ')' if added else ''}, grew "
                 f"{', '.join(info['grown']) or 'nothing'} -> {args.extend_out}\n")
        after = audit(load_vocab(args.extend_out), groups, read_texts(args.domain), terms)
        left = after.worst(conf["show_worst"])
        text += (f"  after extension: {after.domain_uncovered} of {after.domain_units} domain "
                 f"characters/words cannot be emitted ({100.0 * after.domain_share:.2f}%)"
                 f"{'; in no training transcript: ' + ', '.join(left) if left else ''}\n")
        result = after
    with atomic_write(args.out.with_suffix(".txt")) as f:
        f.write(text)
    sys.stdout.write(text)
    if result.domain_share > conf["max_uncovered_share"]:
        raise DataError(limit_error(result, conf["max_uncovered_share"], str(args.conf),
                                    conf["show_worst"], extended=args.extend_out is not None))
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
