#!/usr/bin/env python3
"""Check a model directory before the recipe uses it: exit 0 and say what it is,
or exit 1 with one ERROR line naming the file, the key, its value and what is
accepted.

Checks that the directory is local and of the family asked for (a Fun-ASR-Nano
dir passed as Paraformer is named as one), holds the files the family needs,
that every class its config.yaml names (model, encoder, adaptor, CTC decoder,
predictor, frontend, specaug, tokenizers, dataset, index_ds, batch sampler,
prompt class, preprocessors, optimizer, scheduler) is registered in the
installed funasr, and that every file config.yaml and configuration.json name
exists (tokens.json, am.mvn, seg_dict, multilingual.tiktoken, Qwen3-0.6B/...).
Problems the recipe fixes itself when it trains (the released Fun-ASR-Nano
config's dataset: FunASRNano) are listed as such.

Example:
  local/check_model_dir.py --family paraformer --model-dir models/paraformer-large
  local/check_model_dir.py --family nano --model-dir models/Fun-ASR-Nano-2512
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.modeldir import FAMILIES, inspect_model_dir


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--family", required=True, choices=sorted(FAMILIES), help="model family")
    ap.add_argument("--model-dir", type=Path, required=True, help="the local model directory")
    return ap


def body(args) -> int:
    md = inspect_model_dir(args.model_dir, args.family)
    print(f"{md.path}: a complete {args.family} model dir (model: {md.config.get('model')}); "
          f"every class and file it names is there")
    for note in md.notes:
        print(f"  fixed when training: {note}")
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
