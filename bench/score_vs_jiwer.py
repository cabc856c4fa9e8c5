#!/usr/bin/env python3
"""Benchmark: the plain error rate of funasr_recipe.scoring against jiwer and
kaldialign, same utterance pairs, in one run.

  python bench/score_vs_jiwer.py [--pairs 100000] [--runs 3] [--seed 0]

Makes --pairs reference/hypothesis pairs shaped like Chinese test sets
(10-30 tokens from a 3000-token vocabulary, about 10% of tokens substituted,
deleted or inserted), as space-separated strings. Each contender gets the
strings and returns the total error count:

  ours        scoring.score(refs, hyps, tokenizer=str.split, normalizer=None), the
              strings given as {key: text} tables (made before the clock starts)
  kaldialign  kaldialign.edit_distance(ref.split(), hyp.split()) per pair
  jiwer       jiwer.process_words(refs, hyps) on the two lists

Prints each one's median wall time over --runs (alternating them), the
ratios, and checks that all three count the same number of errors.
Needs the test extra (pip install kaldialign jiwer).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from funasr_recipe.scoring import score  # noqa: E402


def make_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    refs, hyps = [], []
    for _ in range(n):
        ref = rng.choices(vocab, k=rng.randint(10, 30))
        hyp = []
        for tok in ref:
            r = rng.random()
            if r < 0.05:
                hyp.append(rng.choice(vocab))            # substitution
            elif r < 0.08:
                continue                                 # deletion
            else:
                hyp.append(tok)
            if rng.random() < 0.02:
                hyp.append(rng.choice(vocab))            # insertion
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return refs, hyps


def ours(refs: dict[str, str], hyps: dict[str, str]) -> int:
    return score(refs, hyps, tokenizer=str.split, normalizer=None).n_errors


def with_kaldialign(refs: list[str], hyps: list[str]) -> int:
    import kaldialign
    return sum(kaldialign.edit_distance(r.split(), h.split())["total"]
               for r, h in zip(refs, hyps))


def with_jiwer(refs: list[str], hyps: list[str]) -> int:
    import jiwer
    out = jiwer.process_words(refs, hyps)
    return out.substitutions + out.deletions + out.insertions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100000, help="utterance pairs (default 100000)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pairs (default 0)")
    args = ap.parse_args()
    refs, hyps = make_pairs(args.pairs, args.seed)
    n_tokens = sum(len(r.split()) for r in refs)
    print(f"{args.pairs} pairs, {n_tokens} reference tokens")
    keys = [f"utt{i:06d}" for i in range(len(refs))]
    inputs = {"ours": (dict(zip(keys, refs)), dict(zip(keys, hyps))),     # "key text" tables
              "kaldialign": (refs, hyps), "jiwer": (refs, hyps)}
    contenders = {"ours": ours, "kaldialign": with_kaldialign, "jiwer": with_jiwer}
    times: dict[str, list[float]] = {k: [] for k in contenders}
    errors: dict[str, int] = {}
    for _ in range(args.runs):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            errors[name] = fn(*inputs[name])
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in contenders:
        print(f"{name:<11} {med[name]:8.3f} s median of {args.runs} "
              f"({', '.join(f'{t:.3f}' for t in times[name])}); errors {errors[name]} "
              f"= {100.0 * errors[name] / n_tokens:.2f}%")
    for name in ("kaldialign", "jiwer"):
        print(f"{name} / ours: {med[name] / med['ours']:.2f}x")
    if len(set(errors.values())) != 1:
        print(f"ERROR: error counts differ: {errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
