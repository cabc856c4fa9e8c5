"""The mini recipe end to end at reduced size (ESPnet's mini_an4 pattern).

The same run.sh and code path as `bash run.sh`, with a smaller corpus and a
couple of epochs (configs derived from conf/ by changing only sizes), in a
temporary directory. Asserts that every stage's outputs exist, that the
checkpoint chain was verified stage by stage, that the exports of stage 8
decode as the PyTorch model does (parity thresholds), and that a re-run skips.
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


def parity_rows(exp: Path) -> list[dict[str, str]]:
    from funasr_recipe.parity import read_tsv
    return read_tsv(exp / "export" / "parity.tsv")


def test_export_stage_parity(recipe):
    """Stage 8: final_model through funasr-onnx and sherpa-onnx, fp32 token-identical to the
    PyTorch decode of the same model (>= 99%, error within 0.2), int8 reported."""
    tmp, _, r = recipe
    exp = tmp / "exp" / "paraformer"
    for name in ("model.onnx", "model_quant.onnx", "tokens.txt", "am.mvn", "config.yaml"):
        assert (exp / "export" / "onnx" / name).is_file(), name
    rows = parity_rows(exp)
    engines = {(x["engine"], x["precision"]) for x in rows}
    assert {("funasr-onnx", "fp32"), ("funasr-onnx", "int8"), ("sherpa-onnx", "fp32"),
            ("sherpa-onnx", "int8")} <= engines
    assert {x["set"] for x in rows} == {"general_test", "domain_test"}
    for x in rows:
        if x["precision"] == "fp32":
            assert float(x["identical_pct"]) >= 99.0, x
            assert abs(float(x["error_rate"]) - float(x["reference_error_rate"])) <= 0.2, x
            assert x["verdict"] == "pass", x
        assert float(x["rtf"]) > 0, x
    md = (exp / "RESULTS.md").read_text()
    assert "## Exports: parity with the PyTorch decode (stage 8)" in md
    assert "| domain_test | sherpa-onnx | fp32 |" in md


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
    # stage 8: the transformers export decodes as funasr does, or (a twin whose adaptor
    # does not map onto transformers' model) the table says why and claims nothing
    rows = [x for x in parity_rows(exp) if x["engine"] == "transformers"]
    assert {x["set"] for x in rows} == {"general_test", "domain_test"}
    for x in rows:
        if x["verdict"].startswith("not exported"):
            assert "downsample_rate" in x["verdict"] or "low_frame_rate" in x["verdict"], x
        else:
            assert x["verdict"] == "pass" and float(x["identical_pct"]) >= 99.0, x
    md = (exp / "RESULTS.md").read_text()
    assert "| domain_test | transformers | fp32 |" in md
    for m in ("base", "stage1", "stage2", "stage3"):
        assert f"| {m} |" in md
        hyp = (exp / f"decode_{m}" / "domain_test" / "text").read_text().splitlines()
        assert len(hyp) == len((tmp / "data" / "domain_test" / "text").read_text().splitlines())
    assert "Successfully finished" in r.stdout
