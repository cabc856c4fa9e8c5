#!/usr/bin/env python3
"""Convert a funasr Fun-ASR-Nano model dir to Hugging Face transformers' Fun-ASR-Nano.

Writes OUT with config.json (fun_asr_nano), model.safetensors,
generation_config.json (greedy), the Qwen3 tokenizer, chat_template.jinja
(its default prompt is the one the model was trained with: the 'prompt'
section of --train-conf) and the processor files, so that
FunAsrNanoForConditionalGeneration.from_pretrained(OUT) loads offline. A
model that does not map (adaptor downsample_rate != 1, use_low_frame_rate,
CMVN) is not converted: OUT/export.json says why, and no parity is claimed.
With --base-model the base model is converted too, into OUT/../hf_base.

Example:
  local/export_hf.py --model-dir exp/nano/final_model --train-conf conf/nano/train.yaml \\
      --out exp/nano/export/hf
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.config import load_yaml
from funasr_recipe.export_hf import export_nano_hf

log = logging.getLogger("export_hf")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="funasr Fun-ASR-Nano model dir")
    ap.add_argument("--out", type=Path, required=True, help="output dir")
    ap.add_argument("--train-conf", type=Path, required=True,
                    help="train config: its 'prompt' section is the export's default prompt")
    ap.add_argument("--base-model", type=Path, default=None,
                    help="also convert this (base) model dir, into OUT/../hf_base")
    return ap


def body(args) -> int:
    from funasr_recipe.nano import prompt_settings

    prompt = prompt_settings(load_yaml(args.train_conf), str(args.train_conf))
    for model_dir, out in [(args.model_dir, args.out)] + (
            [(args.base_model, args.out.parent / "hf_base")] if args.base_model else []):
        info = export_nano_hf(model_dir, out, prompt)
        if info.get("refused"):
            log.warning("%s: not converted (%s); see %s", model_dir, "; ".join(info["refused"]),
                        out / "export.json")
        else:
            log.info("converted %s -> %s (default prompt %r)", model_dir, out,
                     info["default_prompt"])
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
