#!/usr/bin/env python3
"""Write a standalone model dir: MODEL_DIR's files with CHECKPOINT's weights as model.pt.

The result loads with funasr's AutoModel(model=OUT) and needs nothing from the
training dir: what a stage ships, and what the mini recipe's pre-trained twin
becomes (a stand-in for a downloaded base model).

Example:
  local/export_model.py --model-dir exp/paraformer/twin \\
      --checkpoint exp/paraformer/pretrain/final.pt --out exp/paraformer/base
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.export import export_model


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="model dir (config, tokens, ...)")
    ap.add_argument("--checkpoint", type=Path, required=True, help="checkpoint with the weights")
    ap.add_argument("--out", type=Path, required=True, help="output model dir")
    return ap


def body(args) -> int:
    export_model(args.model_dir, args.checkpoint, args.out)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
