"""Fun-ASR-Nano's mini recipe end to end (stages 0-8), with its learning test.

Its own mini corpus at full size and the twin's default pre-training (below
that the base model does not recognise speech), one epoch a stage. The shared
parts: tests/minirecipe.py.
"""

from __future__ import annotations

import json

import pytest
import yaml

from minirecipe import (assert_fine_tuning_helped, assert_frozen_stage_does_not_pass,
                        parity_rows, reduced_configs, run_recipe)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nano_recipe(tmp_path_factory):
    """The Fun-ASR-Nano recipe end to end (stages 0-8) on its own mini corpus,
    the twin pre-trained as by default, one epoch a stage."""
    tmp = tmp_path_factory.mktemp("mini_nano")
    conf = reduced_configs(tmp, "nano")
    r = run_recipe(tmp, conf, family="nano")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return tmp, conf, r


def test_nano_recipe_end_to_end(nano_recipe):
    tmp, conf, r = nano_recipe
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
    # stage 8: the twin has the release's adaptor, so its transformers export converts and
    # decodes as funasr does; the vLLM layout is written and says what vLLM hard-codes
    rows = [x for x in parity_rows(exp) if x["engine"] == "transformers"]
    assert {x["set"] for x in rows} == {"general_test", "domain_test"}
    for x in rows:
        assert x["verdict"] == "pass" and float(x["identical_pct"]) >= 99.0, x
    vllm = json.loads((exp / "export" / "vllm" / "export.json").read_text())
    assert vllm["architecture"] == "FunASRForConditionalGeneration"
    assert any("hard-codes the adaptor" in w for w in vllm["unservable"])
    # the twin's LLM read grammar sentences first, never a data set's transcript
    lm_text = set((exp / "lm_pretrain" / "text").read_text().splitlines()) | set(
        (exp / "lm_pretrain" / "heldout_text").read_text().splitlines())
    assert len(lm_text) > 500
    for pool in ("general", "domain"):
        for part in ("train", "valid", "test"):
            for line in (tmp / "data" / f"{pool}_{part}" / "text").read_text().splitlines():
                assert line.split(" ", 1)[1] not in lm_text, (pool, part, line)
    # then its encoder learned to hear (CTC, general pool) and its adaptor to write what the
    # LLM learnt to copy (CTC over the LLM's embedding rows): the audio pre-training starts
    # from all three, only the encoder's and the adaptor's weights differing from the LLM's
    chain = json.loads((exp / "pretrain" / "chain.json").read_text())
    assert chain["init"] == str((exp / "encoder_pretrain" / "init.pt").resolve())
    info = json.loads((exp / "encoder_pretrain" / "encoder_info.json").read_text())
    epochs = yaml.safe_load(conf["encoder"].read_text())["epochs"]
    assert info["init"] == str(exp / "lm_pretrain" / "init.pt")
    assert info["epochs"][-1]["epoch"] == epochs
    assert set(info["epochs"][0]) >= {"general_valid_error", "domain_valid_error"}
    adaptor_epochs = yaml.safe_load(conf["encoder"].read_text())["adaptor_epochs"]
    assert info["adaptor_epochs"][-1]["epoch"] == adaptor_epochs > 0
    assert info["adaptor_units"] == yaml.safe_load(conf["lm"].read_text())["copy_units"]
    heard = [row["general_valid_error"] for row in info["adaptor_epochs"]]
    assert heard[-1] < heard[0] - 20, heard
    md = (exp / "RESULTS.md").read_text()
    assert "| domain_test | transformers | fp32 |" in md
    for m in ("base", "stage1", "stage2", "stage3"):
        assert f"| {m} |" in md
        hyp = (exp / f"decode_{m}_default" / "domain_test" / "text").read_text().splitlines()
        assert len(hyp) == len((tmp / "data" / "domain_test" / "text").read_text().splitlines())
    assert "Successfully finished" in r.stdout


def test_fine_tuning_helped(nano_recipe):
    assert_fine_tuning_helped(nano_recipe[0], "nano")


def test_negative_control_frozen_stage_does_not_pass(nano_recipe):
    assert_frozen_stage_does_not_pass(nano_recipe[0], nano_recipe[1], "nano")
