"""The mini recipe end to end at reduced size (ESPnet's mini_an4 pattern).

The same run.sh and code path as `bash run.sh`, with a smaller corpus and a
couple of epochs (configs derived from conf/ by changing only sizes), in a
temporary directory. Asserts that every stage's outputs exist, that the
checkpoint chain was verified stage by stage, and that a re-run skips.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

pytestmark = pytest.mark.slow


def reduced_configs(tmp: Path) -> dict[str, Path]:
    corpus = yaml.safe_load((ROOT / "conf" / "corpus.yaml").read_text())
    corpus.update(num_general=240, num_domain=150)
    train = yaml.safe_load((ROOT / "conf" / "paraformer" / "train.yaml").read_text())
    train["pretrain"]["train_conf.max_epoch"] = 3
    for stage in train["stages"].values():
        stage["train_conf.max_epoch"] = 1
    nano = yaml.safe_load((ROOT / "conf" / "nano" / "train.yaml").read_text())
    nano["pretrain"]["train_conf.max_epoch"] = 1
    for stage in nano["stages"].values():
        stage["train_conf.max_epoch"] = 1
    paths = {"corpus": tmp / "corpus.yaml", "train": tmp / "train.yaml",
             "nano": tmp / "nano_train.yaml"}
    paths["corpus"].write_text(yaml.safe_dump(corpus, allow_unicode=True))
    paths["train"].write_text(yaml.safe_dump(train, allow_unicode=True))
    paths["nano"].write_text(yaml.safe_dump(nano, allow_unicode=True))
    return paths


def run_recipe(tmp: Path, conf: dict[str, Path], *extra: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "run.sh"), "--corpus-conf", str(conf["corpus"]),
           "--train-conf", str(conf["train"]), "--corpus-dir", str(tmp / "corpus"),
           "--datadir", str(tmp / "data"), "--dumpdir", str(tmp / "dump"),
           "--expdir", str(tmp / "exp"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp,
                          env=dict(os.environ, CI="true"))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mini")
    conf = reduced_configs(tmp)
    r = run_recipe(tmp, conf)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return tmp, conf, r


def test_data_stages(recipe):
    tmp, _, r = recipe
    for pool in ("general", "domain"):
        for part in ("train", "valid", "test"):
            d = tmp / "data" / f"{pool}_{part}"
            assert (d / "wav.scp").stat().st_size > 0
            v = subprocess.run(["bash", str(ROOT / "utils" / "validate_data_dir.sh"),
                                "--no-feats", str(d)], capture_output=True, text=True)
            assert v.returncode == 0, v.stderr
    assert "general:domain(h)" in r.stdout  # the mix table is printed
    for s in ("stage1", "stage2", "stage3"):
        assert (tmp / "dump" / "paraformer" / f"{s}_train.jsonl").stat().st_size > 0


def test_chain_was_verified(recipe):
    tmp, _, _ = recipe
    exp = tmp / "exp" / "paraformer"
    prev = (exp / "base" / "model" / "model.pt").resolve()
    for s in ("stage1", "stage2", "stage3"):
        chain = json.loads((exp / s / "chain.json").read_text())
        assert chain["init"] == str(prev)
        assert chain["differ"] == [] and chain["absent"] == [] and chain["shared"] > 0
        assert chain["checksum_model"] == chain["checksum_ckpt"]
        prev = (exp / s / "final.pt").resolve()
    # every model is a model dir <name>/model; final_model is the last stage's, linked
    assert (exp / "final_model").is_symlink()
    assert (exp / "final_model").resolve() == (exp / "stage3" / "model").resolve()
    assert (exp / "final_model" / "model.pt").is_file()
    assert json.loads((exp / "final_model" / "export.json").read_text())[
        "from_checkpoint"] == str(prev)
    assert (exp / "base" / "model").resolve() == (exp / "pretrain" / "model").resolve()


def test_results(recipe):
    tmp, _, r = recipe
    exp = tmp / "exp" / "paraformer"
    md = (exp / "RESULTS.md").read_text()
    for m in ("base", "stage1", "stage2", "stage3"):
        assert f"| {m} |" in md
        for s in ("general_test", "domain_test"):
            text = exp / f"decode_{m}" / s / "text"
            ref = (tmp / "data" / s / "text").read_text().splitlines()
            assert len(text.read_text().splitlines()) == len(ref)
            assert (exp / f"decode_{m}" / s / "score.txt").read_text().startswith("%WER")
    assert "Successfully finished" in r.stdout


def test_rerun_skips_finished_stages(recipe):
    tmp, conf, _ = recipe
    r = run_recipe(tmp, conf, "--stage", "1", "--stop-stage", "6")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    # data pools, jsonl, decodes
    assert out.count("complete for the same inputs, skipped") >= 2 + 9 + 8
    assert "mixes complete for the same inputs, skipped" in out
    assert "redo:" not in out
    for s in ("stage1", "stage2", "stage3"):
        log = (tmp / "exp" / "paraformer" / "logs" / f"train_{s}.log").read_text()
        assert "skipped" in log
        log = (tmp / "exp" / "paraformer" / "logs" / f"export_{s}.log").read_text()
        assert "already exported" in log


@pytest.fixture(scope="module")
def nano_recipe(recipe):
    """The Fun-ASR-Nano recipe on the same data dirs (stages 3-7), one epoch a stage."""
    tmp, conf, _ = recipe
    r = run_recipe(tmp, dict(conf, train=conf["nano"]), "--model", "nano", "--stage", "3")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return tmp, r


def test_nano_recipe_end_to_end(nano_recipe):
    tmp, r = nano_recipe
    exp = tmp / "exp" / "nano"
    line = json.loads((tmp / "dump" / "nano" / "domain_test.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
    assert "<|startofspeech|>!" in line["messages"][1]["content"]
    prev = (exp / "base" / "model" / "model.pt").resolve()
    for s in ("stage1", "stage2", "stage3"):
        chain = json.loads((exp / s / "chain.json").read_text())
        assert chain["init"] == str(prev) and chain["differ"] == [] and chain["absent"] == []
        prev = (exp / s / "final.pt").resolve()
    # stage 3 trains LoRA (conf/nano/train.yaml): its adapter is new, then merged
    assert any("lora_A" in k for k in json.loads((exp / "stage3" / "chain.json").read_text())["new"])
    assert (exp / "stage3" / "model" / "peft_adapter" / "adapter_config.json").is_file()
    assert (exp / "final_model").resolve() == (exp / "stage3" / "model").resolve()
    final = yaml.safe_load((exp / "final_model" / "config.yaml").read_text())
    assert final["llm_conf"]["use_lora"] is False
    assert (exp / "final_model" / "Qwen3-0.6B" / "tokenizer.json").is_file()
    md = (exp / "RESULTS.md").read_text()
    for m in ("base", "stage1", "stage2", "stage3"):
        assert f"| {m} |" in md
        hyp = (exp / f"decode_{m}" / "domain_test" / "text").read_text().splitlines()
        assert len(hyp) == len((tmp / "data" / "domain_test" / "text").read_text().splitlines())
    assert "Successfully finished" in r.stdout
