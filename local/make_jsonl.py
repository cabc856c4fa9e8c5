#!/usr/bin/env python3
"""Convert a Kaldi data dir (wav.scp + text) into funasr's training jsonl.

--family paraformer writes {"key", "source", "source_len", "target",
"target_len"} lines, byte-identical to funasr's scp2jsonl for the same input,
joined by key, sorted by key, lengths read from audio headers.

Example:
  local/make_jsonl.py --family paraformer --data-dir data/domain_train \\
      --out dump/paraformer/domain_train.jsonl --nj 2
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.io import atomic_write
from funasr_recipe.jsonl import FAMILIES, paraformer_lines

log = logging.getLogger("make_jsonl")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--family", choices=FAMILIES, default="paraformer", help="model family")
    ap.add_argument("--data-dir", type=Path, required=True, help="Kaldi data dir")
    ap.add_argument("--out", type=Path, required=True, help="output jsonl")
    ap.add_argument("--nj", type=int, default=1, help="parallel processes reading headers")
    return ap


def body(args) -> int:
    lines = paraformer_lines(args.data_dir, args.nj)
    with atomic_write(args.out) as f:
        for line in lines:
            f.write(line + "\n")
    log.info("%s: %d lines", args.out, len(lines))
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
