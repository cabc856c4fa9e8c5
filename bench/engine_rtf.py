#!/usr/bin/env python3
"""Benchmark: real-time factor of each serving engine on one test set, side by side,
with one thread and with all threads (median of --runs decodes of the whole set,
model loading excluded; every engine gets the same duration-sorted batches).

  python bench/engine_rtf.py --family paraformer --model-dir exp/paraformer/final_model \\
      --export exp/paraformer/export/onnx --data-dir data/domain_test [--runs 3]
  python bench/engine_rtf.py --family nano --model-dir exp/nano/final_model \\
      --export exp/nano/export/hf --data-dir data/domain_test

Engines and precisions come from conf/export.yaml (the stage 8 list); run the
recipe through stage 8 first. Prints one line per engine, precision and thread
count: median seconds, RTF, and whether the hypotheses equal the PyTorch ones.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from funasr_recipe.config import load_yaml  # noqa: E402
from funasr_recipe.datadir import load_datadir  # noqa: E402
from funasr_recipe.decoding import Item  # noqa: E402
from funasr_recipe.engines import run_engine  # noqa: E402
from funasr_recipe.export_plan import engine_runs  # noqa: E402
from funasr_recipe.parity import identical_keys  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=("paraformer", "nano"), required=True)
    ap.add_argument("--model-dir", type=Path, required=True, help="funasr model dir (PyTorch)")
    ap.add_argument("--export", type=Path, required=True, help="export dir of stage 8")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--conf", type=Path, default=ROOT / "conf" / "export.yaml")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}", help="thread counts to measure")
    args = ap.parse_args()
    conf = load_yaml(args.conf)
    items = [Item(u.key, u.wav, u.dur) for u in load_datadir(args.data_dir, require_text=False)]
    batch = int(conf.get("batch_size", 8))
    audio = sum(it.dur for it in items)
    print(f"{len(items)} utterances, {audio:.1f} s of audio, batch {batch}, "
          f"median of {args.runs} runs")
    print(f"{'engine':14} {'prec':5} {'threads':>7} {'seconds':>8} {'RTF':>7} identical")
    ref = None
    for threads in sorted({int(t) for t in args.threads.split(",")}):
        for engine, precision in engine_runs(conf, args.family, str(args.conf)):
            model = args.model_dir if engine == "pytorch" else args.export
            run = run_engine(engine, model, items, precision, threads, batch, args.runs)
            if engine == "pytorch" and ref is None:
                ref = run.hyps
            same = f"{len(identical_keys(ref, run.hyps))}/{len(items)}" if ref else "-"
            print(f"{engine:14} {precision:5} {threads:7d} {run.seconds:8.2f} {run.rtf:7.4f} "
                  f"{same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
