#!/usr/bin/env python3
"""Decode one Fun-ASR-Nano model on one test set with hotwords off, on, distractors
only and the whole term list; score each and compare it with 'off'.

Conditions (per utterance): off = no list; on = the terms in its transcript plus
--distractors terms not in it, shuffled (the list hotword-aware training
builds); distractors = --distractors terms not in it and nothing else (does
the model say listed words it does not hear?); all = the whole --terms list.
The prompt text is the one decode.py --hotwords gives, language and ITN from
the 'prompt:' section of --conf. Writes OUT/<condition>/{text,score.txt,
terms.txt,details,errors.txt}, OUT/hotword_lists.<condition>.tsv and
OUT/RESULTS.md: term recall, B-WER, U-WER and false alarms per condition and
the paired bootstrap of each against off; make_results.py includes that
section in RESULTS.md when OUT is EXP/hotwords.

Example:
  local/hotword_eval.py --model-dir exp/nano/final_model --data-dir data/domain_test \\
      --terms downloads/mini_corpus/domain_terms.txt --conf conf/nano/train.yaml \\
      --out exp/nano/hotwords
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli

log = logging.getLogger("hotword_eval")


def build_parser():
    from funasr_recipe.hotword_eval import CONDITIONS

    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="Fun-ASR-Nano model dir")
    ap.add_argument("--data-dir", type=Path, required=True, help="test data dir (with text)")
    ap.add_argument("--terms", type=Path, required=True, help="domain term list, one a line")
    ap.add_argument("--conf", type=Path, required=True,
                    help="train config: its 'prompt:' section (language, itn; and "
                         "hotword_distractors, hotword_seed unless given here)")
    ap.add_argument("--out", type=Path, required=True, help="output dir")
    ap.add_argument("--distractors", type=int, default=None,
                    help="distractors per list (default: the conf's prompt.hotword_distractors)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the lists (default: the conf's prompt.hotword_seed)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS),
                    help="comma-separated subset of " + ", ".join(CONDITIONS))
    ap.add_argument("--name", default=None, help="the model's name in the section")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--decode-conf", type=Path, default=None,
                    help="decoding settings (conf/nano/decode.yaml): batch size, dither, token "
                         "budget, as stage 6 decodes; none: funasr's defaults")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a decoding setting (run.sh --decode-args)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="utterances per batch [the decode conf's batch_size, else 16]")
    ap.add_argument("--n-resamples", type=int, default=1000)
    return ap


def body(args) -> int:
    from funasr_recipe.config import load_yaml
    from funasr_recipe.decoding import decode_settings, token_budget
    from funasr_recipe.errors import DataError
    from funasr_recipe.hotword_eval import CONDITIONS, run
    from funasr_recipe.modeldir import check_model_dir
    from funasr_recipe.nano import hotword_settings, prompt_settings

    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad or not conditions:
        raise DataError(f"--conditions {args.conditions}: choose from {', '.join(CONDITIONS)}")
    if "off" in conditions:  # the baseline first
        conditions = ["off"] + [c for c in conditions if c != "off"]
    conf = load_yaml(args.conf)
    prompt = prompt_settings(conf, args.conf)
    hot = hotword_settings(conf, args.conf)
    n = hot["hotword_distractors"] if args.distractors is None else args.distractors
    seed = hot["hotword_seed"] if args.seed is None else args.seed
    if n < 0:
        raise DataError(f"--distractors {n}: give 0 or more")
    dec = decode_settings(args.decode_conf, args.set)
    token_budget("nano", dec)  # a bad budget fails before the model loads
    model_dir = check_model_dir(args.model_dir, "nano")
    md = run(model_dir, args.data_dir, args.terms, args.out, prompt, n, seed, args.device,
             args.threads, args.batch_size, conditions, args.n_resamples, args.name, dec)
    print(md)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
