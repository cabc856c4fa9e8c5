#!/usr/bin/env python3
"""Fold a Fun-ASR-Nano stage's LoRA into its LLM: a standalone model dir, plus a PEFT adapter.

Reads the LoRA settings (r, lora_alpha, target_modules) from the config.yaml
funasr saved in the stage's output dir (default: the checkpoint's directory),
folds W' = W + (lora_alpha / r) * B @ A into every LoRA module of the
checkpoint, drops the lora_A/lora_B keys and writes OUT: MODEL_DIR's files
(config.yaml with llm_conf.use_lora: false, Qwen3-0.6B/, ...) and the merged
weights as model.pt. It loads with AutoModel(model=OUT) and needs nothing from
the training dir. Unless --no-peft, OUT/peft_adapter/ holds the same adapter
in peft's format (adapter_config.json + adapter_model.safetensors) and
OUT/peft_base_llm/ the LLM it was trained on as a Hugging Face Qwen3 dir with
its weights (config.json, model.safetensors, tokenizer): the adapter's
base_model_name_or_path points there (the model dir's Qwen3-0.6B/ holds no
weights). PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(
OUT/peft_base_llm), OUT/peft_adapter) gives the merged LLM's logits.

Example:
  local/merge_lora.py --model-dir exp/nano/stage2/model \\
      --checkpoint exp/nano/stage3/final.pt --out exp/nano/stage3/model
  (what local/export_model.py --stage-dir exp/nano/stage3 does for a LoRA stage)
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.lora import merge_lora
from funasr_recipe.modeldir import check_model_dir


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True,
                    help="the Nano model dir the stage trained from (config, Qwen3-0.6B/, ...)")
    ap.add_argument("--checkpoint", type=Path, required=True,
                    help="the stage's checkpoint with lora_A/lora_B weights (e.g. OUT/final.pt)")
    ap.add_argument("--train-config", type=Path, default=None,
                    help="config.yaml funasr saved for the stage; None: the one in "
                         "CHECKPOINT's directory")
    ap.add_argument("--out", type=Path, required=True, help="output model dir")
    ap.add_argument("--no-peft", action="store_true",
                    help="do not write OUT/peft_adapter/")
    return ap


def body(args) -> int:
    model_dir = check_model_dir(args.model_dir, "nano")
    train_config = args.train_config or args.checkpoint.parent / "config.yaml"
    merge_lora(model_dir, args.checkpoint, train_config, args.out, peft=not args.no_peft)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
