#!/usr/bin/env python3
"""CPU time of a Fun-ASR-Nano training step with the LLM's output layer at every
position (funasr 1.4.16 as shipped) and only at labelled positions
(funasr_recipe.target_logits, what local/train.py runs).

Process CPU time (time.process_time), so other jobs on a shared machine do not
inflate it; same batches, same weights, every parameter trainable, forward +
backward. Prints the loss of both (equal) and the CPU seconds per step.

  python bench/nano_target_logits.py --model-dir exp/nano/twin \\
      --jsonl dump/nano/general_train.jsonl --steps 6
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from funasr import AutoModel
    from funasr.register import tables

    from funasr_recipe.target_logits import patch_funasr_nano

    am = AutoModel(model=args.model_dir, disable_update=True, device="cpu")
    model, kw = am.model, am.kwargs
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    conf = dict(kw["dataset_conf"], batch_type="example", batch_size=args.batch_size)
    ds = tables.dataset_classes.get(kw.get("dataset", "FunASR"))(
        args.jsonl, frontend=kw["frontend"], tokenizer=kw["tokenizer"], is_training=False, **conf)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=False,
                                         collate_fn=ds.collator)
    batches = []
    for b in loader:
        batches.append(b)
        if len(batches) == args.steps + 1:
            break

    def run(tag: str) -> None:
        import copy
        losses, cpu = [], 0.0
        for i, b in enumerate(batches):
            b = copy.deepcopy(b)
            t0 = time.process_time()
            loss, stats, _ = model(**b)
            loss.backward()
            dt = time.process_time() - t0
            model.zero_grad(set_to_none=True)
            if i:  # the first step warms up
                cpu += dt
                losses.append(float(loss))
        n_pos = sum(int(b["input_ids"].numel()) for b in batches[1:])
        n_lab = sum(int((b["labels_ids"] >= 0).sum()) for b in batches[1:])
        print(f"{tag}: {cpu / args.steps:.3f} CPU s/step over {args.steps} steps of "
              f"{args.batch_size} ({n_pos} positions, {n_lab} labelled); "
              f"mean loss {sum(losses) / len(losses):.6f}")

    run("all positions (funasr as shipped)")
    undo = patch_funasr_nano()
    try:
        run("labelled positions only        ")
    finally:
        undo()


if __name__ == "__main__":
    main()
