#!/usr/bin/env python3
"""Generate a tiny, randomly initialised twin of a published model directory.

The twin has the same classes and config schema as the real model, only
small, so the whole recipe runs offline on a CPU. It is a complete model
directory: `AutoModel(model=DIR)` and `funasr-train ++model=DIR` use it like a
downloaded one. Re-running with the same inputs does nothing.

Example:
  python local/make_twin.py --family paraformer --config conf/paraformer/twin.yaml \\
      --tokens downloads/mini_corpus/vocabulary.txt \\
      --cmvn-jsonl dump/paraformer/general_train.jsonl --out exp/paraformer/twin
  python local/make_twin.py --family nano --config conf/nano/twin.yaml --out exp/nano/twin
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.errors import DataError
from funasr_recipe.modeldir import FAMILIES


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--family", required=True, choices=sorted(FAMILIES),
                   help="model family to twin (required)")
    p.add_argument("--config", required=True, type=Path,
                   help="the twin's architecture config, e.g. conf/paraformer/twin.yaml (required)")
    p.add_argument("--tokens", type=Path, default=None,
                   help="paraformer only: vocabulary file, one token a line; <blank> <s> </s> "
                        "<unk> are added (required for paraformer; nano always uses the real "
                        "Qwen3 tokenizer)")
    p.add_argument("--cmvn-jsonl", type=Path, default=None,
                   help="paraformer only: Paraformer jsonl whose audio gives the am.mvn "
                        "statistics (default: none, identity CMVN)")
    p.add_argument("--cmvn-max-utts", type=int, default=2000,
                   help="paraformer only: use at most this many utterances for the CMVN "
                        "statistics (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the initial weights (default: %(default)s)")
    p.add_argument("--out", required=True, type=Path,
                   help="output model directory (required)")
    return p


def body(args) -> int:
    from funasr_recipe import twin_common, twin_nano, twin_paraformer

    arch = twin_common.load_arch(args.config)
    if args.family == "nano":
        if args.tokens is not None or args.cmvn_jsonl is not None:
            raise DataError("--tokens and --cmvn-jsonl are for paraformer only: the nano "
                            "twin uses the real Qwen3 tokenizer and no CMVN")
        out = twin_nano.make_nano_twin(args.out, arch, seed=args.seed)
    else:
        if args.tokens is None:
            raise DataError("--family paraformer needs --tokens (the vocabulary file)")
        tokens = twin_paraformer.read_token_file(args.tokens)
        out = twin_paraformer.make_paraformer_twin(
            args.out, tokens, args.cmvn_jsonl, arch, seed=args.seed,
            cmvn_max_utts=args.cmvn_max_utts)
    logging.info("twin model directory: %s", out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
