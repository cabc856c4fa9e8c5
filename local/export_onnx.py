#!/usr/bin/env python3
"""Export a funasr Paraformer model dir to ONNX for funasr-onnx and sherpa-onnx.

Runs funasr's own exporter (AutoModel.export(type="onnx", quantize=True)) and
writes OUT in the layout both runtimes load: model.onnx (fp32),
model_quant.onnx (int8), config.yaml, am.mvn, tokens.json, tokens.txt (for
sherpa-onnx) and the metadata sherpa-onnx reads from the ONNX model. The
encoder's output for padded frames is zeroed inside the graph, as in the
recipe's PyTorch decode, so batched runtime decodes equal single ones.
Skipped when OUT already holds an export of the same model files.

Example:
  local/export_onnx.py --model-dir exp/paraformer/final_model --out exp/paraformer/export/onnx
  python -c 'from funasr_onnx import Paraformer; print(Paraformer("exp/paraformer/export/onnx")(["a.wav"]))'
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.config import load_yaml
from funasr_recipe.export_onnx import export_paraformer_onnx


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="funasr Paraformer model dir")
    ap.add_argument("--out", type=Path, required=True, help="output dir (the runtime layout)")
    ap.add_argument("--train-conf", type=Path, default=None,
                    help="train config whose decode.dither the runtime config takes [0.0]")
    ap.add_argument("--no-quantize", action="store_true", help="do not write model_quant.onnx")
    return ap


def body(args) -> int:
    dither = 0.0
    if args.train_conf:
        dither = float((load_yaml(args.train_conf).get("decode") or {}).get("dither", 0.0))
    export_paraformer_onnx(args.model_dir, args.out, dither=dither,
                           quantize=not args.no_quantize)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
