#!/usr/bin/env python3
"""CTC pre-training of the Nano twin's audio encoder (mini recipe, stage 4).

A real Fun-ASR-Nano starts from an encoder that already hears speech; the
twin's encoder learns to hear, on the general pool's audio only, with a
throw-away linear CTC head over the transcripts' units (each CJK character,
every other word). Writes OUT/init.pt: the --init checkpoint (the twin's
model.pt, or the LLM pre-training's init.pt) with the trained encoder weights,
the initial checkpoint of the twin's audio pre-training (local/train.py
--init). Also written: OUT/log.tsv (train loss and greedy CTC error rate of
each --report set, every report_every epochs), OUT/units.txt,
OUT/encoder_info.json. A finished OUT made from the same inputs is skipped.

Example:
  local/pretrain_encoder.py --model-dir exp/nano/twin --init exp/nano/lm_pretrain/init.pt \\
      --conf conf/nano/encoder.yaml --train-dir data/general_train \\
      --report general_valid=data/general_valid --out exp/nano/encoder_pretrain
"""

from __future__ import annotations

import argparse
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.resources import allocated_cpus


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser(__doc__)
    ap.add_argument("--model-dir", type=Path, required=True, help="the Nano twin's model dir")
    ap.add_argument("--init", type=Path, default=None,
                    help="checkpoint to start from and to copy the other weights of "
                         "(default: MODEL_DIR/model.pt)")
    ap.add_argument("--conf", type=Path, required=True,
                    help="encoder pre-training config (conf/nano/encoder.yaml)")
    ap.add_argument("--train-dir", type=Path, required=True, help="Kaldi data dir to train on")
    ap.add_argument("--report", action="append", default=[], metavar="NAME=DATA_DIR",
                    help="Kaldi data dir whose greedy CTC error rate is logged "
                         "(repeatable; never trained on)")
    ap.add_argument("--threads", type=int, default=allocated_cpus(),
                    help="torch threads (default: the job's CPU allocation, here %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="output dir")
    return ap


def body(args) -> int:
    import torch

    from funasr_recipe.encoder_pretrain import load_encoder_conf, pretrain

    torch.set_num_threads(max(1, args.threads))
    reports = cli.named_paths(args.report, "--report", "DATA_DIR")
    init = args.init or args.model_dir / "model.pt"
    info = pretrain(args.model_dir, init, load_encoder_conf(args.conf), args.train_dir,
                    args.out, reports)
    first, last = info["epochs"][0], info["epochs"][-1]
    for key in first:
        if key.endswith("_error"):
            print(f"encoder greedy CTC error {key[:-6]}: {first[key]:.1f}% -> {last[key]:.1f}%")
    print(f"encoder: {info['train_utterances']} utterances, {info['units']} units, "
          f"{len(info['epochs']) and last['epoch']} epochs in {last['seconds']} s; "
          f"{info['encoder_weights_replaced']} encoder weights -> {args.out}/init.pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(body, build_parser()))
