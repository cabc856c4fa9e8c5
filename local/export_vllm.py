#!/usr/bin/env python3
"""Write a funasr Fun-ASR-Nano model dir in the layout vLLM's FunASRForConditionalGeneration loads.

OUT gets config.json (Qwen3 config + architectures + audio_encoder_conf),
model.safetensors (funasr's own weight names, without the CTC head), the Qwen3
tokenizer with <|AUDIO|>, preprocessor_config.json (FunASRFeatureExtractor) and
processor_config.json (FunASRProcessor), and export.json, which lists what
vLLM 0.33 hard-codes that this model differs in ('unservable': adaptor sizes,
prompt, audio token count): for such a model no parity is claimed.
bench/gpu_check.sh serves OUT with `vllm serve` on a GPU machine.

Example:
  local/export_vllm.py --model-dir exp/nano/final_model --train-conf conf/nano/train.yaml \\
      --out exp/nano/export/vllm
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.config import load_yaml
from funasr_recipe.export_vllm import export_nano_vllm

log = logging.getLogger("export_vllm")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="funasr Fun-ASR-Nano model dir")
    ap.add_argument("--out", type=Path, required=True, help="output dir")
    ap.add_argument("--train-conf", type=Path, required=True,
                    help="train config: its 'prompt' section is the prompt the model was trained "
                         "with (compared with the one vLLM sends)")
    return ap


def body(args) -> int:
    from funasr_recipe.nano import prompt_settings

    prompt = prompt_settings(load_yaml(args.train_conf), str(args.train_conf))
    info = export_nano_vllm(args.model_dir, args.out, prompt)
    log.info("wrote %s (%d weights, %s)", args.out, info["weights"], ", ".join(info["dtypes"]))
    for why in info["unservable"]:
        log.warning("vLLM %s would not decode it as funasr does: %s", info["vllm"], why)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
