#!/usr/bin/env python3
"""Convert a Kaldi data dir (wav.scp + text) into funasr's training jsonl.

--family paraformer writes {"key", "source", "source_len", "target",
"target_len"} lines, byte-identical to funasr's scp2jsonl for the same input,
joined by key, sorted by key, lengths read from audio headers.

--shards K (K > 1) also deals the lines round robin into K shard files,
OUT_STEM.shards/00000.jsonl ..., listed in OUT_STEM.list: funasr's list of
jsonl files. Train on the .list with dataset_conf.data_split_num: K and
funasr's trainer holds one shard's index at a time (it walks the K slices in
turn every epoch) instead of the whole set in every process and worker.

--family nano writes Fun-ASR-Nano chat lines {"key", "messages": [system,
user: PROMPT<|startofspeech|>!/abs/wav<|endofspeech|>, assistant: transcript],
"speech_length", "text_length"}: the prompt from the 'prompt:' section of
--prompt-conf, text_length counted by --model-dir's own Qwen3 tokenizer
(offline). Utterances funasr would silently drop (empty transcript, length
outside the model config's dataset_conf limits, as updated by the conf's
'common' section) are left out, logged and listed as "key reason" lines in
OUT.dropped (empty when none).

Hotword-aware training (nano): with --section STAGE the conf's
prompt.hotword_share / prompt.hotword_distractors / prompt.hotword_seed (the
'prompt:' section, then 'common' and the stage's section, then --set
prompt.KEY=VALUE) decide which lines' prompts carry a hotword list built from
--terms: the terms present in the transcript plus sampled distractors,
shuffled, in the prompt decode.py --hotwords produces. Share 0 (the default,
and every set made without --section): the lines are exactly those without it.

Examples:
  local/make_jsonl.py --family paraformer --data-dir data/domain_train \\
      --out dump/paraformer/domain_train.jsonl --nj 2
  local/make_jsonl.py --family paraformer --data-dir data/stage1_train \\
      --out dump/paraformer/stage1_train.jsonl --shards 8   # + stage1_train.list
  local/make_jsonl.py --family nano --data-dir data/domain_train \\
      --model-dir exp/nano/twin --prompt-conf conf/nano/train.yaml \\
      --out dump/nano/domain_train.jsonl
  local/make_jsonl.py --family nano --data-dir data/stage3_train \
      --model-dir exp/nano/twin --prompt-conf conf/nano/train.yaml --section stage3 \
      --terms downloads/mini_corpus/domain_terms.txt --set prompt.hotword_share=0.5 \
      --out dump/nano/stage3_train.jsonl
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.atomic import atomic_write
from funasr_recipe.errors import DataError
from funasr_recipe.jsonl import FAMILIES, iter_paraformer_lines, shard_paths, write_jsonl

log = logging.getLogger("make_jsonl")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--family", choices=FAMILIES, default="paraformer", help="model family")
    ap.add_argument("--data-dir", type=Path, required=True, help="Kaldi data dir")
    ap.add_argument("--out", type=Path, required=True, help="output jsonl")
    ap.add_argument("--nj", type=int, default=1,
                    help="parallel processes reading headers (only for a data dir without "
                         "utt2num_samples)")
    ap.add_argument("--shards", type=int, default=1,
                    help="also deal the lines round robin into K shards, OUT_STEM.shards/*.jsonl, "
                         "listed in OUT_STEM.list: give the .list as the training set with "
                         "dataset_conf.data_split_num: K and funasr holds one shard's index at "
                         "a time")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="nano only (required): model dir whose tokenizer counts text_length "
                         "and whose config gives the length limits")
    ap.add_argument("--prompt-conf", type=Path, default=None,
                    help="nano only (required): train config with the 'prompt:' section, "
                         "e.g. conf/nano/train.yaml")
    ap.add_argument("--section", default=None,
                    help="nano only: the train conf's section this set trains ('pretrain' or a "
                         "stage name): its prompt.hotword_* keys apply (default: none, only the "
                         "'prompt:' section's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="nano only: as local/train.py --set (run.sh --train-args); the "
                         "prompt.hotword_* keys apply here, funasr's keys are ignored")
    ap.add_argument("--terms", type=Path, default=None,
                    help="nano only: domain term list (one a line) the hotword lists are built "
                         "from; needed when prompt.hotword_share > 0")
    return ap


def write_lines(path: Path, lines: list[str]) -> None:
    with atomic_write(path) as f:
        for line in lines:
            f.write(line + "\n")


def nano_body(args) -> int:
    from funasr_recipe.config import load_yaml
    from funasr_recipe.modeldir import check_model_dir
    from funasr_recipe.jsonl import read_pairs
    from funasr_recipe.nano import (build_prompt, hotword_lists, hotword_settings, nano_lines,
                                    prompt_settings, term_matcher, terms_in)
    from funasr_recipe.stats import read_terms

    if args.model_dir is None or args.prompt_conf is None:
        raise DataError("--family nano needs --model-dir and --prompt-conf")
    # the files the jsonl reads (the tokenizer); run.sh checked the classes at its start,
    # and resolving them imports funasr (~10 s a process, 9 processes a run)
    model_dir = check_model_dir(args.model_dir, "nano", classes=False)
    conf = load_yaml(args.prompt_conf)
    settings = prompt_settings(conf, args.prompt_conf)
    prompt = build_prompt(settings["language"], settings["itn"])
    hot = hotword_settings(conf, args.prompt_conf, args.section, args.set)
    prompts = {}
    if hot["hotword_share"] > 0:
        if args.terms is None:
            raise DataError(f"{args.prompt_conf}: prompt.hotword_share "
                            f"{hot['hotword_share']} needs the domain term list (--terms FILE, "
                            f"run.sh --terms); or set prompt.hotword_share: 0")
        terms = read_terms(args.terms)
        _, texts = read_pairs(args.data_dir)
        lists = hotword_lists(texts, terms, hot["hotword_share"], hot["hotword_distractors"],
                              hot["hotword_seed"])
        prompts = {k: build_prompt(settings["language"], settings["itn"], words)
                   for k, words in lists.items()}
        matcher = term_matcher(terms)
        with_term = sum(1 for k in lists if terms_in(texts[k], matcher))
        log.info("%s: hotword lists (share %.2f, %d distractors, seed %d, terms %s) in %d of %d "
                 "prompts: %d with a term of the transcript, %d distractors only",
                 args.out, hot["hotword_share"], hot["hotword_distractors"], hot["hotword_seed"],
                 args.terms, len(lists), len(texts), with_term, len(lists) - with_term)
    common = conf.get("common") if isinstance(conf.get("common"), dict) else {}
    lines, dropped = nano_lines(args.data_dir, model_dir, prompt, args.nj, common, prompts)
    write_jsonl(args.out, lines, args.shards)
    dropped_path = args.out.with_name(args.out.name + ".dropped")
    write_lines(dropped_path, [f"{k} {reason}" for k, reason in dropped])
    for k, reason in dropped:
        log.warning("%s: left out '%s': %s (funasr would drop it silently)", args.data_dir, k,
                    reason)
    log.info("%s: %d lines, prompt %r; %d left out (listed in %s)", args.out, len(lines),
             prompt, len(dropped), dropped_path)
    if not lines:
        raise DataError(f"{args.data_dir}: every utterance was left out (see {dropped_path})")
    return 0


def body(args) -> int:
    if args.family == "nano":
        return nano_body(args)
    if (args.model_dir is not None or args.prompt_conf is not None or args.section is not None
            or args.set or args.terms is not None):
        raise DataError("--model-dir, --prompt-conf, --section, --set and --terms are for "
                        "--family nano only")
    n = write_jsonl(args.out, iter_paraformer_lines(args.data_dir, args.nj), args.shards)
    log.info("%s: %d lines", args.out, n)
    if args.shards > 1:
        log.info("%s: the same lines in %d shards (%s)", shard_paths(args.out)[0], args.shards,
                 shard_paths(args.out)[1])
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
