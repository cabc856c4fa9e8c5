"""Paraformer's mini recipe end to end at reduced size (ESPnet's mini_an4 pattern).

Asserts that every stage's outputs exist, that the checkpoint chain was verified
stage by stage, that the exports of stage 8 decode as the PyTorch model does
(parity thresholds), that a re-run skips, and that fine-tuning helped (with its
negative control). Fun-ASR-Nano's: tests/test_recipe_mini_nano.py; the shared
parts: tests/minirecipe.py.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import ROOT
from minirecipe import (SHARDS, assert_fine_tuning_helped, assert_frozen_stage_does_not_pass,
                        parity_rows, reduced_configs, run_recipe)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mini")
    conf = reduced_configs(tmp)
    r = run_recipe(tmp, conf, *SHARDS)
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
        jsonl = tmp / "dump" / "paraformer" / f"{s}_train.jsonl"
        assert jsonl.stat().st_size > 0
        # --jsonl-shards 2: the same lines in two shards, and the stage trained from them
        shards = sorted((tmp / "dump" / "paraformer" / f"{s}_train.shards").glob("*.jsonl"))
        assert len(shards) == 2
        assert sorted(x for f in shards for x in f.read_text().splitlines()) == sorted(
            jsonl.read_text().splitlines())
        log = (tmp / "exp" / "paraformer" / "logs" / f"train_{s}.log").read_text()
        assert f"{s}_train.list" in log and "data_split_num: 2, data_split_i: 1" in log
        # --train-args: the unscoped epochs for the stages, pretrain:'s for the base
        # (the job's command line names every --set; funasr's overrides hold its own)
        assert "++train_conf.max_epoch=3" in log and "++train_conf.max_epoch=12" not in log
    log = (tmp / "exp" / "paraformer" / "logs" / "pretrain.log").read_text()
    assert "++train_conf.max_epoch=12" in log


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
            text = exp / f"decode_{m}_default" / s / "text"
            ref = (tmp / "data" / s / "text").read_text().splitlines()
            assert len(text.read_text().splitlines()) == len(ref)
            assert (exp / f"decode_{m}_default" / s / "score.txt").read_text().startswith("%WER")
    assert "Successfully finished" in r.stdout


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
    r = run_recipe(tmp, conf, "--stage", "1", "--stop-stage", "6", *SHARDS)
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



def test_fine_tuning_helped(recipe):
    assert_fine_tuning_helped(recipe[0], "paraformer")


def test_negative_control_frozen_stage_does_not_pass(recipe):
    assert_frozen_stage_does_not_pass(recipe[0], recipe[1], "paraformer")
