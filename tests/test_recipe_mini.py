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


#: How much lower the last stage's domain-test error (CER/WER, %) must be than
#: the base model's for the test to call fine-tuning helpful, per family.
#: Paraformer, measured on this reduced recipe (12 pre-training epochs, 3 a
#: stage) over three corpus seeds (conf/corpus.yaml seed 1, 2, 3; 2026-12-01,
#: on this machine): base -> stage3 domain test 93.46 -> 70.59
#: (seed 1), 87.13 -> 67.84 (seed 2), 87.33 -> 70.00 (seed 3, with
#: --jsonl-shards 2): improvements 22.9, 19.3, 17.3 points (mean 19.8, sd 2.8).
#: The margin, 8 points, is about four standard deviations below the mean; the
#: negative control (lr 0) improves by exactly 0 (the decode is deterministic).
#: Fun-ASR-Nano, measured the same way (the mini corpus at full size, the twin's
#: default pre-training, one epoch a stage; seeds 1, 2, 3; 2026-12-06, 0017db4):
#: base -> stage3 domain test 95.85 -> 75.73, 97.97 -> 77.46, 100.48 -> 70.51:
#: improvements 20.1, 20.5, 30.0 points (mean 23.5, sd 5.6); a CI run of seed 1
#: gave 95.08 -> 60.37 (34.7: the pre-training is not bit-identical from run to
#: run). The margin, 10 points, is half the smallest; the lr-0 control improves
#: by exactly 0.
HELP_MARGIN = {"paraformer": 8.0, "nano": 10.0}


def domain_errors(exp: Path, models: tuple[str, ...]) -> dict[str, float]:
    """Domain-test error rate (%) of each model, from its score.txt (%WER line)."""
    out = {}
    for m in models:
        first = (exp / f"decode_{m}_default" / "domain_test" / "score.txt").read_text().split()
        assert first[0] == "%WER", first[:3]
        out[m] = float(first[1])
    return out


def helped(errors: dict[str, float], last: str, family: str) -> bool:
    """Whether fine-tuning up to ``last`` lowered the domain-test error by the margin."""
    return errors[last] <= errors["base"] - HELP_MARGIN[family]


#: the reduced recipe's training, as a user shortens a run: run.sh --train-args
#: (Paraformer: every stage 3 epochs, the twin's pre-training 12; Nano: the
#: default pre-training, which makes the base a recogniser, and one epoch a stage)
TRAIN_ARGS = {"paraformer": "train_conf.max_epoch=3 pretrain:train_conf.max_epoch=12",
              "nano": " ".join(f"{s}:train_conf.max_epoch=1" for s in ("stage1", "stage2", "stage3"))}
#: the negative control: a one-stage plan (stage 1 alone), its parameters frozen by lr 0
FROZEN = "stage1:optim_conf.lr=0.0"


def reduced_configs(tmp: Path, family: str = "paraformer") -> dict[str, Path]:
    """The mini corpus (Paraformer: at a smaller size), a one-stage plan for the
    negative control (these confs have no run.sh override) and the Nano twin's
    pre-training configs. Nano keeps the corpus
    and its twin's pre-training at full size: below that its base model does not
    recognise speech, and there is nothing for the stages to show."""
    corpus = yaml.safe_load((ROOT / "conf" / "corpus.yaml").read_text())
    if family == "paraformer":
        corpus.update(num_general=240, num_domain=150)
    plan = yaml.safe_load((ROOT / "conf" / "stages.yaml").read_text())
    plan["stages"] = plan["stages"][:1]
    paths = {"corpus": tmp / "corpus.yaml", "plan1": tmp / "stages1.yaml",
             "lm": ROOT / "conf" / "nano" / "lm.yaml",
             "encoder": ROOT / "conf" / "nano" / "encoder.yaml"}
    for name, obj in (("corpus", corpus), ("plan1", plan)):
        paths[name].write_text(yaml.safe_dump(obj, allow_unicode=True))
    return paths


def run_recipe(tmp: Path, conf: dict[str, Path], *extra: str, family: str = "paraformer",
               train_args: str = "") -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "run.sh"), "--model", family,
           "--corpus-conf", str(conf["corpus"]), "--corpus-dir", str(tmp / "corpus"),
           "--train-args", f"{TRAIN_ARGS[family]} {train_args}".strip(),
           "--datadir", str(tmp / "data"), "--dumpdir", str(tmp / "dump"),
           "--expdir", str(tmp / "exp"), "--lm-conf", str(conf["lm"]),
           "--encoder-conf", str(conf["encoder"]), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp,
                          env=dict(os.environ, CI="true"))


#: Paraformer's reduced recipe trains every stage from a list of jsonl shards
#: (funasr's data_split_num), as a corpus of millions of lines would
SHARDS = ("--jsonl-shards", "2")


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
    # then its encoder learned to hear (CTC, general pool): the audio pre-training starts
    # from both, only the encoder's weights differing from the LLM pre-training's
    chain = json.loads((exp / "pretrain" / "chain.json").read_text())
    assert chain["init"] == str((exp / "encoder_pretrain" / "init.pt").resolve())
    info = json.loads((exp / "encoder_pretrain" / "encoder_info.json").read_text())
    epochs = yaml.safe_load(conf["encoder"].read_text())["epochs"]
    assert info["init"] == str(exp / "lm_pretrain" / "init.pt")
    assert info["epochs"][-1]["epoch"] == epochs
    assert set(info["epochs"][0]) >= {"general_valid_error", "domain_valid_error"}
    md = (exp / "RESULTS.md").read_text()
    assert "| domain_test | transformers | fp32 |" in md
    for m in ("base", "stage1", "stage2", "stage3"):
        assert f"| {m} |" in md
        hyp = (exp / f"decode_{m}_default" / "domain_test" / "text").read_text().splitlines()
        assert len(hyp) == len((tmp / "data" / "domain_test" / "text").read_text().splitlines())
    assert "Successfully finished" in r.stdout


# ---------------------------------------------------------------- learning
# The stages must make the model better on the domain, not only run: a freeze
# flag, a learning rate, the chain or the label masking gone wrong would leave
# every test above green. The negative control proves the assertion can fail:
# stage 1 trained with lr 0 (every parameter effectively frozen), from the same
# base model, through the same run.sh, must not pass it (with stage 1 as the
# last stage: one stage keeps the control cheap, and lr 0 changes no weight).

def family_recipe(request, family: str):
    """The reduced recipe's run of one family: (tmp, conf, run.sh's result)."""
    return request.getfixturevalue("recipe" if family == "paraformer" else "nano_recipe")


@pytest.mark.parametrize("family", ["paraformer", "nano"])
def test_fine_tuning_helped(family, request):
    tmp = family_recipe(request, family)[0]
    errors = domain_errors(tmp / "exp" / family, ("base", "stage1", "stage2", "stage3"))
    print(f"{family} domain-test error: {errors}")
    assert helped(errors, "stage3", family), (
        f"{family}: domain-test error base {errors['base']:.1f} -> stage3 "
        f"{errors['stage3']:.1f}, not {HELP_MARGIN[family]} points lower: {errors}")


@pytest.mark.parametrize("family", ["paraformer", "nano"])
def test_negative_control_frozen_stage_does_not_pass(family, request):
    tmp, conf, _ = family_recipe(request, family)
    ctrl = tmp / f"control_{family}"
    r = run_recipe(tmp, conf, "--stage", "5", "--stop-stage", "7",
                   "--base-model", str(tmp / "exp" / family / "base" / "model"),
                   "--stage-plan", str(conf["plan1"]), "--test-sets", "domain_test",
                   "--expdir", str(ctrl), family=family, train_args=FROZEN)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    errors = domain_errors(ctrl / family, ("base", "stage1"))
    print(f"{family} negative control (lr 0) domain-test error: {errors}")
    assert not helped(errors, "stage1", family)
