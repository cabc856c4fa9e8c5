#!/usr/bin/env python3
"""Write a standalone model dir: MODEL_DIR's files with CHECKPOINT's weights as model.pt.

The result loads with funasr's AutoModel(model=OUT) and needs nothing from the
training dir: what a stage ships, and what the mini recipe's pre-trained twin
becomes (a stand-in for a downloaded base model).

With --stage-dir instead of --checkpoint, a training stage's model dir is
written (default OUT: STAGE_DIR/model): its chosen checkpoint (final.pt), with
a LoRA adapter folded into the LLM when the stage trained one (Fun-ASR-Nano;
plus OUT/peft_adapter/). Re-running with the same inputs does nothing.

Example:
  local/export_model.py --model-dir exp/paraformer/twin \\
      --checkpoint exp/paraformer/pretrain/final.pt --out exp/paraformer/pretrain/model
  local/export_model.py --model-dir exp/nano/base/model --stage-dir exp/nano/stage3
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.export import export_model, export_stage
from funasr_recipe.errors import DataError


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="model dir (config, tokens, ...)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint with the weights")
    src.add_argument("--stage-dir", type=Path,
                     help="a training stage's output dir: export its final.pt (LoRA merged)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output model dir (required with --checkpoint; default with "
                         "--stage-dir: STAGE_DIR/model)")
    return ap


def body(args) -> int:
    if args.stage_dir is not None:
        export_stage(args.model_dir, args.stage_dir, args.out)
        return 0
    if args.out is None:
        raise DataError("--checkpoint needs --out (the model dir to write)")
    export_model(args.model_dir, args.checkpoint, args.out)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
