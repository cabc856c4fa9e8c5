"""A stage that passed its input on is the model before it: stage 6 copies its
hypotheses instead of decoding it again (local/same_model.py, run.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from funasr_recipe.errors import DataError
from funasr_recipe.modeldir import same_model
from funasr_recipe.stamp import mark
from funasr_recipe.tables import read_table, write_jsonl

from helpers import ROOT, tone

VOCAB = ["你", "好", "世", "界", "a", "is"]


def model_dir(root: Path, weights: bytes = b"w" * 1000) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text("model: Paraformer\n")
    (root / "model.pt").write_bytes(weights)
    (root / "tokens.json").write_text('["a"]')
    (root / "Qwen3-0.6B").mkdir()
    (root / "Qwen3-0.6B" / "tokenizer.json").write_text("{}")
    return root


def test_same_files_are_the_same_model_whatever_the_recipes_own_metadata(tmp_path):
    a = model_dir(tmp_path / "a")
    b = model_dir(tmp_path / "b")
    assert same_model(a, b)
    # what no decode reads: provenance, stamps, a LoRA stage's serving extras
    (b / "export.json").write_text('{"from_checkpoint": "other"}')
    mark(b, [b / "config.yaml"], ["x"])
    (b / "peft_adapter").mkdir()
    (b / "peft_adapter" / "adapter_model.safetensors").write_bytes(b"lora")
    (b / "peft_base_llm").mkdir()
    assert same_model(a, b) and same_model(b, a)


@pytest.mark.parametrize("change", ["weights", "config", "tokenizer", "extra", "missing"])
def test_any_file_a_decode_reads_makes_another_model(tmp_path, change):
    a = model_dir(tmp_path / "a")
    b = model_dir(tmp_path / "b")
    if change == "weights":      # one byte, at the end, same size
        (b / "model.pt").write_bytes(b"w" * 999 + b"x")
    elif change == "config":
        (b / "config.yaml").write_text("model: Paraformer \n")
    elif change == "tokenizer":
        (b / "Qwen3-0.6B" / "tokenizer.json").write_text("{ }")
    elif change == "extra":
        (b / "seg_dict").write_text("a a\n")
    else:
        (b / "tokens.json").unlink()
    assert not same_model(a, b) and not same_model(b, a)


def test_the_cli_exits_0_same_1_different_2_error(tmp_path):
    a = model_dir(tmp_path / "a")
    b = model_dir(tmp_path / "b")
    tool = [sys.executable, str(ROOT / "local" / "same_model.py")]
    assert subprocess.run([*tool, a, b]).returncode == 0
    (b / "model.pt").write_bytes(b"other")
    assert subprocess.run([*tool, a, b]).returncode == 1
    r = subprocess.run([*tool, a, tmp_path / "nothing"], capture_output=True, text=True)
    assert r.returncode == 2 and "nothing" in r.stderr and "not a model directory" in r.stderr
    with pytest.raises(DataError):
        same_model(a, tmp_path / "nothing")


@pytest.mark.slow
def test_stage6_copies_the_hypotheses_of_a_stage_that_is_its_predecessor(tmp_path):
    # base, stage1 = other weights, stage2 = stage1 file for file (the budget kept its
    # start), stage3 = base's weights again: three decodes and one copy
    data = tmp_path / "data"
    rows = []
    for s in ("general_test", "domain_test"):
        d = data / s
        d.mkdir(parents=True)
        wavs, texts = [], []
        for i, (sec, f0) in enumerate([(1.2, 150.0), (0.9, 220.0)]):
            wav = d / f"{s}{i}.wav"
            tone(wav, sec, f0, i)
            n = int(sec * 16000)
            wavs.append(f"{s}-u{i} {wav}\n")
            texts.append(f"{s}-u{i} 你好\n")
            rows.append({"key": f"{s}-u{i}", "source": str(wav), "source_len": n * 100 // 16000,
                         "target": "你好", "target_len": 2})
        (d / "wav.scp").write_text("".join(wavs))
        (d / "text").write_text("".join(texts))
        (d / "utt2spk").write_text("".join(f"{w.split()[0]} spk\n" for w in wavs))
        (d / "spk2utt").write_text("spk " + " ".join(w.split()[0] for w in wavs) + "\n")
    write_jsonl(tmp_path / "cmvn.jsonl", rows)
    (tmp_path / "tokens.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    exp = tmp_path / "exp" / "paraformer"
    twins = {}
    for seed in (1, 2):
        out = tmp_path / f"twin{seed}"
        r = subprocess.run([sys.executable, str(ROOT / "local" / "make_twin.py"),
                            "--family", "paraformer",
                            "--config", str(ROOT / "conf" / "paraformer" / "twin.yaml"),
                            "--tokens", str(tmp_path / "tokens.txt"),
                            "--cmvn-jsonl", str(tmp_path / "cmvn.jsonl"), "--seed", str(seed),
                            "--out", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        twins[seed] = out
    for m, seed in (("base", 1), ("stage1", 2), ("stage2", 2), ("stage3", 1)):
        shutil.copytree(twins[seed], exp / m / "model")
    (exp / "stage2" / "model" / "export.json").write_text('{"from_checkpoint": "stage2"}')
    assert same_model(exp / "stage1" / "model", exp / "stage2" / "model")
    assert not same_model(exp / "stage2" / "model", exp / "stage3" / "model")

    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--model", "paraformer", "--stage", "6",
                        "--stop-stage", "6", "--datadir", str(data), "--expdir",
                        str(tmp_path / "exp"), "--decode-nj", "1"], capture_output=True,
                       text=True, env=dict(os.environ, cmd_backend="local"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    decoded = {m: (exp / f"decode_{m}_default" / "log").is_dir()
               for m in ("base", "stage1", "stage2", "stage3")}
    assert decoded == {"base": True, "stage1": True, "stage2": False, "stage3": True}, out
    assert "stage2's model is stage1's, file for file" in out
    for s in ("general_test", "domain_test"):
        hyp = {m: read_table(exp / f"decode_{m}_default" / s / "text", allow_empty_value=True)
               for m in decoded}
        assert set(hyp["stage2"]) == {f"{s}-u0", f"{s}-u1"}
        assert hyp["stage2"] == hyp["stage1"] and hyp["stage3"] == hyp["base"]
    # the copy is a finished decode: a second run skips every set
    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--model", "paraformer", "--stage", "6",
                        "--stop-stage", "6", "--datadir", str(data), "--expdir",
                        str(tmp_path / "exp"), "--decode-nj", "1"], capture_output=True,
                       text=True, env=dict(os.environ, cmd_backend="local"))
    assert r.returncode == 0 and r.stdout.count("complete for the same inputs, skipped") == 8, \
        r.stdout[-3000:]
