#!/usr/bin/env python3
"""Fun-ASR-Nano at its published size: build, one LoRA step, merge, decode.

Shows that nothing in the recipe depends on the twin's size: the same code
(twin_nano.make_nano_twin with no size overrides = Fun-ASR-Nano-2512's
dimensions: SenseVoiceEncoderSmall 512-d 50+20 blocks, Qwen3-0.6B 28 layers,
random weights; fp32 on a CPU), funasr's FunASRNano with llm_conf.use_lora,
one optimiser step on the LoRA + adaptor weights for one utterance,
lora.merge_lora (the merge tool's code) into a standalone model dir, and
decoding one utterance from it with AutoModel. Prints the time of each step
and the peak resident memory (ru_maxrss). Not in CI: ~4 GB RAM and minutes.

  python bench/nano_full_size.py --work /tmp/nano_full [--wav some.wav]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from funasr_recipe.twin_nano import make_nano_twin


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="scratch dir (~7 GB of model files)")
    ap.add_argument("--wav", type=Path, default=None, help="16 kHz wav (default: a 5 s tone)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    from funasr import AutoModel
    from funasr_recipe.decoding import Item, decode, load_model
    from funasr_recipe.lora import merge_lora
    from funasr_recipe.nano import build_prompt

    args.work.mkdir(parents=True, exist_ok=True)
    wav = args.wav
    if wav is None:
        wav = args.work / "tone.wav"
        t = np.arange(5 * 16000) / 16000
        sf.write(str(wav), (0.1 * np.sin(2 * np.pi * 220 * t)).astype("float32"), 16000)
    times = {}
    t0 = time.perf_counter()
    # published sizes; fp32 (bf16 is no faster on a CPU)
    base = make_nano_twin(args.work / "base", {"llm_conf": {"llm_dtype": "fp32"}}, seed=0)
    times["build + save"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lora_conf = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    m = AutoModel(model=str(base), disable_update=True, device="cpu", ncpu=args.threads,
                  llm_conf={"use_lora": True, "lora_conf": lora_conf})
    model, kw = m.model, m.kwargs
    n_params = sum(p.numel() for p in model.parameters())
    trainable = [p for n, p in model.named_parameters() if p.requires_grad]
    times["load with LoRA"] = time.perf_counter() - t0

    from funasr.register import tables
    import json
    line = {"key": "u1", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"{build_prompt()}<|startofspeech|>!{wav.resolve()}<|endofspeech|>"},
        {"role": "assistant", "content": "你好世界"}],
        "speech_length": int((5000 - 25) // 10 + 1), "text_length": 2}
    jsonl = args.work / "one.jsonl"
    jsonl.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    conf = {k: v for k, v in kw["dataset_conf"].items() if k != "index_ds"}
    ds = tables.dataset_classes.get("FunASR")(str(jsonl), index_ds="FunASR", frontend=kw["frontend"],
                                              tokenizer=kw["tokenizer"], **conf)
    batch = ds.collator([ds[0]])
    batch.pop("item", None)
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    loss, _, _ = model(**batch)
    loss.backward()
    opt.step()
    times["one LoRA step"] = time.perf_counter() - t0
    # the LoRA B matrices start at zero: the step makes them non-zero, so the merge is real
    ckpt_dir = args.work / "stage"
    ckpt_dir.mkdir(exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, ckpt_dir / "model.pt")
    cfg = (base / "config.yaml").read_text(encoding="utf-8").replace("use_lora: false", "use_lora: true")
    (ckpt_dir / "config.yaml").write_text(cfg, encoding="utf-8")
    del m, model, opt
    t0 = time.perf_counter()
    merged = merge_lora(base, ckpt_dir / "model.pt", ckpt_dir / "config.yaml",
                        args.work / "merged", peft=True)
    times["merge + export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec = load_model(merged, threads=args.threads)
    res = decode(dec, [[Item("u1", str(wav), 5.0)]])
    times["load merged + decode 1 utt"] = time.perf_counter() - t0
    print(f"parameters: {n_params / 1e6:.1f} M, trainable (the LoRA; the released config freezes encoder and adaptor): "
          f"{sum(p.numel() for p in trainable) / 1e6:.2f} M, loss {float(loss):.3f}")
    for k, v in times.items():
        print(f"{k:28s} {v:7.1f} s")
    print(f"decoded: {res['u1'].get('text', '')[:60]!r}")
    print(f"peak resident memory: {peak_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
