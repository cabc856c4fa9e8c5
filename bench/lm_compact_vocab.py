#!/usr/bin/env python3
"""LM pre-training step of the Nano twin's LLM: softmax over the corpus's ids on
the full 151,936-row table (baseline) against the cut-down table
(``lm_pretrain.CompactVocab``, what ``softmax: corpus`` trains on).

Both run the same batches (plain and copy examples of grammar sentences) with
AdamW; prints the median CPU seconds per step over --runs runs, split into
forward, backward and optimiser, and checks that both end with the same weights.

  python bench/lm_compact_vocab.py --model-dir exp/nano/twin --steps 10 --runs 3
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))


def grammar_examples(model_dir: Path, n_examples: int):
    """The twin's tokenizer and LLM, and ``n_examples`` LM training examples:
    grammar sentences (half general, half domain), each once plain and once as
    a copy example, shuffled together as ``conf/nano/lm.yaml`` trains them.
    Returns (llm, examples, the sorted target ids)."""
    from funasr_recipe import corpus
    from funasr_recipe.checkpoint import load_state
    from funasr_recipe.lm_pretrain import chat_example, copy_example, llm_from_twin
    from funasr_recipe.nano import SYSTEM_PROMPT, build_prompt, load_tokenizer

    tok = load_tokenizer(model_dir)
    llm = llm_from_twin(model_dir, load_state(model_dir / "model.pt"))
    n = n_examples // 2
    texts = (corpus.generate_texts("general", n // 2, 5, 0.18)
             + corpus.generate_texts("domain", n - n // 2, 5, 0.18))
    prompt, rng = build_prompt(), random.Random(0)
    ex = [chat_example(tok, t, prompt, SYSTEM_PROMPT) for t in texts]
    vocab = sorted({t for _, y in ex for t in y if t != -100})
    ex += [copy_example(tok, t, prompt, SYSTEM_PROMPT, rng, 0.15, 3, vocab) for t in texts]
    random.Random(1).shuffle(ex)
    return llm, ex, vocab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True, help="a Nano twin's model dir")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from funasr_recipe.lm_pretrain import CompactVocab, collate, target_loss

    torch.set_num_threads(args.threads)
    llm0, ex, vocab = grammar_examples(args.model_dir, args.steps * args.batch_size)
    batches = [collate(ex[i:i + args.batch_size]) for i in range(0, len(ex), args.batch_size)]
    V = torch.tensor(vocab)

    def run(compact: bool):
        llm = copy.deepcopy(llm0)
        c = CompactVocab(llm, [0, *vocab, *(t for x, _ in ex for t in x)]) if compact else None
        params = c.parameters() if c else list(llm.parameters())
        opt = torch.optim.AdamW(params, lr=0.01, weight_decay=0.0)
        t = {"forward": 0.0, "backward": 0.0, "optimiser": 0.0}
        for b in batches:
            t0 = time.process_time()
            loss, _ = c.loss(*b, V) if c else target_loss(llm, *b, vocab=V)
            t1 = time.process_time()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.process_time()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            t3 = time.process_time()
            t["forward"] += t1 - t0
            t["backward"] += t2 - t1
            t["optimiser"] += t3 - t2
        if c:
            c.write_back()
        return {k: v / len(batches) for k, v in t.items()}, llm

    results = {}
    for name, compact in (("full table", False), ("compact table", True)):
        rows = [run(compact) for _ in range(args.runs)]
        results[name] = rows[-1][1]
        med = {k: statistics.median(r[0][k] for r in rows) for k in rows[0][0]}
        total = sum(med.values())
        print(f"{name}: {total:.3f} CPU s/step (forward {med['forward']:.3f}, backward "
              f"{med['backward']:.3f}, optimiser {med['optimiser']:.3f}); median of "
              f"{args.runs} runs of {len(batches)} steps, batch {args.batch_size}, "
              f"{args.threads} thread(s)")
    a, b = results["full table"].state_dict(), results["compact table"].state_dict()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"largest weight difference after training: {worst:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
