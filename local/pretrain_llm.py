#!/usr/bin/env python3
"""Pre-train the Nano twin's LLM as a text-only language model (mini recipe, stage 4).

Generates general and domain sentences from the mini corpus's grammars with
the LM config's own seed, removes every transcript of the --exclude text files
(all data sets: the LLM never reads a valid or test sentence), trains the
twin's Qwen3 on them as the assistant turn of the Nano chat prompt, and writes
OUT/init.pt: the twin's model.pt with the trained LLM weights, the initial
checkpoint of the twin's audio pre-training (local/train.py --init).
Also written: OUT/text and OUT/heldout_text (the corpus), OUT/log.tsv (loss
per epoch on the held-out sentences and on each --report set), OUT/lm_info.json.
A finished OUT made from the same inputs is skipped.

Example:
  local/pretrain_llm.py --model-dir exp/nano/twin --conf conf/nano/lm.yaml \\
      --prompt-conf conf/nano/train.yaml --exclude data/domain_test/text ... \\
      --report domain_valid=data/domain_valid/text --out exp/nano/lm_pretrain
"""

from __future__ import annotations

import argparse
from pathlib import Path

from funasr_recipe import cli


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser(__doc__)
    cli.add_pretrain_options(ap)
    ap.add_argument("--conf", type=Path, required=True, help="LM config (conf/nano/lm.yaml)")
    ap.add_argument("--prompt-conf", type=Path, required=True,
                    help="Nano train config whose 'prompt' section gives the user prompt")
    ap.add_argument("--exclude", type=Path, action="append", default=[],
                    help="Kaldi text file whose transcripts never enter the LM corpus "
                         "(repeatable)")
    ap.add_argument("--report", action="append", default=[], metavar="NAME=TEXT",
                    help="Kaldi text file whose LM loss is logged after every epoch "
                         "(repeatable; never trained on)")
    return ap


def body(args) -> int:
    import torch

    from funasr_recipe.lm_pretrain import load_lm_conf, pretrain
    from funasr_recipe.nano import SYSTEM_PROMPT, load_prompt

    torch.set_num_threads(max(1, args.threads))
    reports = cli.named_paths(args.report, "--report", "TEXT_FILE")
    info = pretrain(args.model_dir, load_lm_conf(args.conf), load_prompt(args.prompt_conf),
                    SYSTEM_PROMPT, args.exclude, args.out, reports)
    for name, first, last in cli.first_to_last(info, "_loss", skip=("train_loss",)):
        print(f"LM loss {name}: {first:.3f} -> {last:.3f}")
    print(f"LM corpus: {info['corpus']}; {info['llm_weights_replaced']} LLM weights "
          f"-> {args.out}/init.pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(body, build_parser()))
