"""Fun-ASR-Nano training through local/train.py outside the mini recipe: the LoRA
stage under DeepSpeed ZeRO-2 (the trainer the original workflow used for this
model), 2 CPU ranks over gloo, with the checkpoint key check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import numpy as np
import soundfile as sf
import torch

from funasr_recipe.datadir import Utt, write_datadir
from funasr_recipe.nano import build_prompt, nano_lines
from funasr_recipe.twin_nano import load_arch, make_nano_twin

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["今天天气很好", "八点开会", "你好世界", "明天见"]


@pytest.mark.slow
def test_lora_stage_under_deepspeed_keeps_every_llm_weight(tmp_path):
    twin = make_nano_twin(tmp_path / "twin", load_arch(ROOT / "conf" / "nano" / "twin.yaml"),
                          seed=0)
    utts = []
    for i in range(8):
        wav = tmp_path / "wav" / f"s-{i}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        n = int((0.8 + 0.1 * i) * 16000)
        sf.write(wav, (0.1 * np.random.default_rng(i).standard_normal(n)).astype(np.float32),
                 16000)
        utts.append(Utt(f"s-{i}", "s", str(wav), TEXTS[i % 4], n / 16000))
    write_datadir(tmp_path / "data", utts)
    lines, dropped = nano_lines(tmp_path / "data", twin, build_prompt())
    assert len(lines) == 8 and not dropped
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    conf = tmp_path / "train.yaml"
    conf.write_text(re.sub(r"train_conf\.max_epoch: \d+", "train_conf.max_epoch: 1",
                           (ROOT / "conf" / "nano" / "train.yaml").read_text()))
    out = tmp_path / "stage3"
    r = subprocess.run(
        [sys.executable, str(ROOT / "local" / "train.py"), "--family", "nano", "--conf",
         str(conf), "--section", "stage3", "--model-dir", str(twin), "--train", str(jsonl),
         "--valid", str(jsonl), "--out", str(out), "--threads", "2", "--nproc", "2",
         "--deepspeed", str(ROOT / "conf" / "deepspeed" / "zero2_fp32.json")],
        capture_output=True, text=True, timeout=600)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "++use_deepspeed=true" in log and "every LLM weight present" in log
    assert (out / "model.pt" / "mp_rank_00_model_states.pt").is_file()
    state = torch.load(out / "final.pt", map_location="cpu", weights_only=False)["state_dict"]
    base = torch.load(twin / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    lora = [k for k in state if "lora_" in k]
    assert lora and set(base) <= set(state)  # the frozen LLM saved beside the adapter
    # frozen parts unchanged, the adapter trained (B starts at zero)
    assert all(torch.equal(state[k], base[k]) for k in base if k.startswith("llm."))
    assert any(state[k].abs().sum() > 0 for k in lora if k.endswith("lora_B"))
    chain = json.loads((out / "chain.json").read_text())
    assert chain["differ"] == []
