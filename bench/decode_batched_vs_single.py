#!/usr/bin/env python3
"""Benchmark: batched decoding (local/decode.py's path) against funasr's
AutoModel.generate called one utterance at a time, same model, same test set,
same threads, in one run.

  python bench/decode_batched_vs_single.py --model-dir exp/paraformer/final_model \\
      --data-dir data/domain_test [--batch-size 16] [--runs 3] [--threads 1]

Prints the median wall time of each over --runs (the model loaded once,
alternating the two), the throughput ratio, and how many hypotheses agree.
Also the time the one-at-a-time path spends reading audio and computing
features (funasr computes fbank per utterance in both paths, so batching
cannot speed that part up): single / that time bounds any batching gain.
Run the mini recipe (bash run.sh) first to have a model and a test set.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from funasr_recipe.datadir import load_datadir  # noqa: E402
from funasr_recipe.decoding import Item, decode, duration_batches, load_model  # noqa: E402
from funasr_recipe.scoring import score  # noqa: E402
from funasr_recipe.text import join_cjk  # noqa: E402


def timed_frontend(model_class) -> list[float]:
    """Accumulate the time the model's ``inference`` spends in funasr's audio
    loading and fbank (the module-level functions it calls) into ``[seconds]``."""
    import importlib
    mod = importlib.import_module(model_class.__module__)
    acc = [0.0]
    for name in ("load_audio_text_image_video", "extract_fbank"):
        orig = getattr(mod, name)

        def wrapped(*a, _orig=orig, **k):
            t = time.perf_counter()
            try:
                return _orig(*a, **k)
            finally:
                acc[0] += time.perf_counter() - t
        setattr(mod, name, wrapped)
    return acc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    items = [Item(u.key, u.wav, u.dur) for u in load_datadir(args.data_dir, require_text=False)]
    audio = sum(it.dur for it in items)
    model = load_model(args.model_dir, threads=args.threads)
    front_t = timed_frontend(type(model.model))
    single_t, batched_t, single_front = [], [], []
    for _ in range(args.runs):
        front_t[0] = 0.0
        t = time.perf_counter()
        single = {}
        for it in items:
            res = model.generate(input=it.wav, batch_size=1)
            single[it.key] = join_cjk(res[0]["text"]) if res else ""
        single_t.append(time.perf_counter() - t)
        single_front.append(front_t[0])
        t = time.perf_counter()
        batched = {k: join_cjk(r.get("text", "")) for k, r in
                   decode(model, duration_batches(items, args.batch_size)).items()}
        batched_t.append(time.perf_counter() - t)
    same = sum(single[k] == batched[k] for k in single)
    ms, mb = statistics.median(single_t), statistics.median(batched_t)
    print(f"{len(items)} utterances, {audio:.1f} s of audio, threads {args.threads}, "
          f"batch size {args.batch_size}, runs {args.runs}")
    print(f"one at a time (AutoModel.generate): median {ms:.2f} s, {audio / ms:.1f} s audio/s")
    print(f"batched by duration               : median {mb:.2f} s, {audio / mb:.1f} s audio/s")
    mf = statistics.median(single_front)
    print(f"throughput ratio: {ms / mb:.1f}x; identical hypotheses: {same} / {len(items)}")
    print(f"one at a time, audio reading + fbank: median {mf:.2f} s ({100 * mf / ms:.0f}%): "
          f"no batching can exceed {ms / mf:.1f}x with funasr's per-utterance features")
    refs = {u.key: u.text for u in load_datadir(args.data_dir) if u.text is not None}
    if refs:
        for name, hyps in (("one at a time", single), ("batched", batched)):
            r = score(refs, hyps)
            print(f"error rate against the reference, {name}: {r.wer:.2f}% "
                  f"({r.n_errors} / {r.n_ref_tokens})")
    for k in sorted(single):
        if single[k] != batched[k]:
            print(f"  differs: {k}: single '{single[k]}' batched '{batched[k]}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
