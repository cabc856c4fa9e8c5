#!/usr/bin/env python3
"""CTC pre-training of the Nano twin's audio encoder (mini recipe, stage 4).

A real Fun-ASR-Nano starts from an encoder that already hears speech; the
twin's encoder learns to hear, on the general pool's audio only, with a
throw-away linear CTC head over the transcripts' units (each CJK character,
every other word). Then (adaptor_epochs > 0 in --conf) the audio adaptor gets
its head start on the frozen encoder: a CTC whose classes are rows of the LLM's
input embedding table, so that it writes at each audio slot the embedding of
what is heard there, as the LLM's copy examples hold it (--lm-conf's
copy_units; the LLM and its table are not changed). Writes OUT/init.pt: the
--init checkpoint (the twin's model.pt, or the LLM pre-training's init.pt) with
the trained encoder (and adaptor) weights, the initial checkpoint of the twin's
audio pre-training (local/train.py --init). Also written: OUT/log.tsv (train
loss and greedy CTC error rate of each --report set, every report_every
epochs), OUT/adaptor_log.tsv (the same for the adaptor), OUT/units.txt,
OUT/encoder_info.json. A finished OUT made from the same inputs is skipped.

Example:
  local/pretrain_encoder.py --model-dir exp/nano/twin --init exp/nano/lm_pretrain/init.pt \\
      --conf conf/nano/encoder.yaml --lm-conf conf/nano/lm.yaml --train-dir data/general_train \\
      --report general_valid=data/general_valid --out exp/nano/encoder_pretrain
"""

from __future__ import annotations

import argparse
from pathlib import Path

from funasr_recipe import cli


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser(__doc__)
    cli.add_pretrain_options(ap)
    ap.add_argument("--init", type=Path, default=None,
                    help="checkpoint to start from and to copy the other weights of "
                         "(default: MODEL_DIR/model.pt)")
    ap.add_argument("--conf", type=Path, required=True,
                    help="encoder pre-training config (conf/nano/encoder.yaml)")
    ap.add_argument("--lm-conf", type=Path, default=None,
                    help="the LLM pre-training config (conf/nano/lm.yaml): the adaptor writes "
                         "its copy_units (default: tokens)")
    ap.add_argument("--train-dir", type=Path, required=True, help="Kaldi data dir to train on")
    ap.add_argument("--report", action="append", default=[], metavar="NAME=DATA_DIR",
                    help="Kaldi data dir whose greedy CTC error rate is logged "
                         "(repeatable; never trained on)")
    return ap


def body(args) -> int:
    import torch

    from funasr_recipe.encoder_pretrain import load_encoder_conf, pretrain
    from funasr_recipe.lm_pretrain import load_lm_conf

    torch.set_num_threads(max(1, args.threads))
    reports = cli.named_paths(args.report, "--report", "DATA_DIR")
    init = args.init or args.model_dir / "model.pt"
    units = load_lm_conf(args.lm_conf).copy_units if args.lm_conf else "tokens"
    info = pretrain(args.model_dir, init, load_encoder_conf(args.conf), args.train_dir,
                    args.out, reports, units)
    for name, first, last in cli.first_to_last(info, "_error"):
        print(f"encoder greedy CTC error {name}: {first:.1f}% -> {last:.1f}%")
    if info["adaptor_epochs"]:
        for name, first, last in cli.first_to_last({"epochs": info["adaptor_epochs"]}, "_error"):
            print(f"adaptor greedy CTC error ({info['adaptor_units']}) {name}: "
                  f"{first:.1f}% -> {last:.1f}%")
    end = info["epochs"][-1]
    print(f"encoder: {info['train_utterances']} utterances, {info['units']} units, "
          f"{len(info['epochs']) and end['epoch']} epochs in {end['seconds']} s; "
          f"{info['encoder_weights_replaced']} encoder and {info['adaptor_weights_replaced']} "
          f"adaptor weights -> {args.out}/init.pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(body, build_parser()))
