#!/usr/bin/env python3
"""LM pre-training step of the Nano twin's LLM: each batch as one padded tensor
(``length_groups: 1``, the baseline) against the batch computed in runs of its
examples sorted by length (``lm_pretrain.batch_step`` with 2, 3, 4 groups).

The same batches (plain and copy examples of grammar sentences, shuffled
together as ``conf/nano/lm.yaml`` trains them) on the cut-down table
(``softmax: corpus``) with AdamW; the settings alternate within each run, so
every one sees the same machine (after one untimed warm-up run); prints the
median wall seconds per step over --runs runs, the padding of each layout, and how far the trained weights of
each drift from the baseline's (summation order only: the same loss and
gradients, ``tests/test_lm_pretrain.py``).

  python bench/lm_length_groups.py --model-dir exp/nano/twin --steps 20 --runs 3 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True, help="a Nano twin's model dir")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--groups", default="1,2,3,4", help="comma-separated; the first is "
                    "the baseline")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from funasr_recipe.lm_pretrain import CompactVocab, batch_step, length_groups
    from lm_compact_vocab import grammar_examples

    torch.set_num_threads(args.threads)
    groups = [int(g) for g in args.groups.split(",")]
    llm0, ex, vocab = grammar_examples(args.model_dir, args.steps * args.batch_size)
    batches = [ex[i:i + args.batch_size] for i in range(0, len(ex), args.batch_size)]
    V = torch.tensor(vocab)
    real = sum(len(x) for x, _ in ex)
    for g in groups:
        padded = sum(len(run) * max(len(x) for x, _ in run)
                     for b in batches for run in length_groups(b, g))
        print(f"groups {g}: padded tokens {padded / real:.2f}x the real ones")

    def train(g: int):
        llm = copy.deepcopy(llm0)
        c = CompactVocab(llm, [0, *vocab, *(t for x, _ in ex for t in x)])
        params = c.parameters()
        opt = torch.optim.AdamW(params, lr=0.01, weight_decay=0.0)
        llm.train()
        t0 = time.perf_counter()
        for b in batches:
            opt.zero_grad(set_to_none=True)
            batch_step(llm, b, g, c, V)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
        seconds = (time.perf_counter() - t0) / len(batches)
        c.write_back()
        return seconds, llm.state_dict()

    train(groups[0])                         # warm-up (allocator, kernels), not timed
    times: dict[int, list[float]] = {g: [] for g in groups}
    states = {}
    for _ in range(args.runs):
        for g in groups:
            s, states[g] = train(g)
            times[g].append(s)
    base = statistics.median(times[groups[0]])
    for g in groups:
        med = statistics.median(times[g])
        drift = max(float((states[g][k] - v).abs().max()) for k, v in states[groups[0]].items())
        print(f"groups {g}: {med * 1000:.1f} ms/step (median of {args.runs}: "
              f"{', '.join(f'{t * 1000:.1f}' for t in times[g])}), {base / med:.2f}x the "
              f"baseline; weights after {len(batches)} steps within {drift:.1e} of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
