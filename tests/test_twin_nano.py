"""The tiny Fun-ASR-Nano twin: a complete offline model directory funasr loads."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from funasr_recipe.errors import DataError
from funasr_recipe.modeldir import check_model_dir
from funasr_recipe.twin_nano import (LLM_DIR, NANO_TEMPLATE, TOKENIZER_FILES, TWIN_FILES,
                                     load_arch, make_nano_twin, nano_config,
                                     qwen_tokenizer_dir)

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "local" / "make_twin.py"
TWIN_YAML = ROOT / "conf" / "nano" / "twin.yaml"


def run_tool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    """Built in-process (funasr is imported once per test session); the CLI is
    checked on it below (a re-run with the same inputs must skip)."""
    out = tmp_path_factory.mktemp("twin") / "nano"
    assert make_nano_twin(out, load_arch(TWIN_YAML), seed=3) == out.resolve()
    return out


def test_config_takes_sizes_from_twin_yaml_and_keeps_the_schema():
    arch = load_arch(TWIN_YAML)
    config, qwen = nano_config(arch)
    for key in ("model", "audio_encoder", "audio_adaptor", "llm", "frontend", "tokenizer",
                "dataset", "ctc_decoder"):
        assert config[key] == NANO_TEMPLATE[key]
    # the release's own names (the recipe's model-dir check fixes them when training)
    assert config["dataset"] == config["dataset_conf"]["index_ds"] == "FunASRNano"
    # the release's frame rate: one adaptor frame (LLM audio slot) per LFR frame
    assert config["audio_adaptor_conf"]["downsample_rate"] == 1
    assert "use_low_frame_rate" not in config["audio_adaptor_conf"]
    assert config["dataset_conf"]["ctc_tokenizer_conf"]["vocab_path"] is None
    assert config["ctc_decoder_conf"]["encoder_dim"] == config["ctc_decoder_conf"]["llm_dim"] \
        == config["audio_encoder_conf"]["output_size"]
    assert config["llm_conf"]["init_param_path"] == LLM_DIR
    assert set(config["llm_conf"]["lora_conf"]) >= {"r", "lora_alpha", "lora_dropout",
                                                    "target_modules"}
    assert config["audio_encoder_conf"]["output_size"] == arch["audio_encoder_conf"]["output_size"]
    # the adaptor's dimensions always follow the encoder and the LLM
    assert config["audio_adaptor_conf"]["encoder_dim"] == config["audio_encoder_conf"]["output_size"]
    assert config["audio_adaptor_conf"]["llm_dim"] == qwen["hidden_size"] == arch["qwen3"]["hidden_size"]
    assert qwen["num_hidden_layers"] == arch["qwen3"]["num_hidden_layers"]
    assert qwen["vocab_size"] == 151936 and qwen["eos_token_id"] == 151645


@pytest.mark.parametrize("arch, message", [
    ({"llm": "Qwen2"}, "names a class"),
    ({"ctc_decoder_cfg": {}}, "unknown section"),
    ({"ctc_decoder": "Linear"}, "names a class"),
    ({"qwen3": {"vocab_size": 100}}, "cannot be changed"),
    ({"llm_conf": {"init_param_path": "/elsewhere"}}, "always Qwen3-0.6B"),
])
def test_config_rejects_what_would_break_the_schema(arch, message):
    with pytest.raises(DataError, match=message):
        nano_config(arch)


def test_twin_dir_holds_every_file_with_the_real_tokenizer(twin):
    for name in TWIN_FILES:
        assert (twin / name).is_file(), name
    tok = qwen_tokenizer_dir()
    for name in TOKENIZER_FILES:
        assert (twin / LLM_DIR / name).read_bytes() == (tok / name).read_bytes()
    meta = json.loads((twin / "configuration.json").read_text())["file_path_metas"]
    assert meta["llm_conf"]["init_param_path"] == LLM_DIR
    assert meta["tokenizer_conf"]["init_param_path"] == LLM_DIR
    config = yaml.safe_load((twin / "config.yaml").read_text(encoding="utf-8"))
    assert config["llm_conf"]["init_param_path"] == LLM_DIR  # relative: resolved in the dir
    assert check_model_dir(twin, "nano") == twin.resolve()


def test_model_pt_holds_every_weight_llm_included(twin):
    import torch

    state = torch.load(twin / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    parts = {k.split(".")[0] for k in state}
    assert parts == {"audio_encoder", "audio_adaptor", "llm"}    # as released: no CTC head
    qwen = json.loads((twin / LLM_DIR / "config.json").read_text())
    for i in range(qwen["num_hidden_layers"]):
        assert f"llm.model.layers.{i}.self_attn.q_proj.weight" in state
    assert state["llm.model.embed_tokens.weight"].shape == (151936, qwen["hidden_size"])
    info = json.loads((twin / "twin_info.json").read_text())
    assert info["parameters"] == sum(v.numel() for k, v in state.items() if k != "llm.lm_head.weight")


def test_cli_rerun_with_same_inputs_skips(twin):
    before = (twin / "model.pt").stat().st_mtime_ns
    r = run_tool("--family", "nano", "--config", str(TWIN_YAML), "--seed", "3", "--out", str(twin))
    assert r.returncode == 0 and "skipping" in r.stderr
    assert (twin / "model.pt").stat().st_mtime_ns == before


def test_paraformer_options_are_refused_for_nano(tmp_path):
    r = run_tool("--family", "nano", "--config", str(TWIN_YAML), "--tokens", "x.txt",
                 "--out", str(tmp_path / "t"))
    assert r.returncode == 1 and "paraformer only" in r.stderr
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("missing", [f"{LLM_DIR}/tokenizer.json", f"{LLM_DIR}/config.json",
                                     "model.pt"])
def test_check_model_dir_names_missing_files(twin, tmp_path, missing):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(twin, d, ignore=shutil.ignore_patterns("model.pt"))
    (d / "model.pt").write_bytes(b"")
    (d / missing).unlink()
    with pytest.raises(DataError, match=f"missing {missing}"):
        check_model_dir(d, "nano")


def test_check_model_dir_refuses_hub_names():
    with pytest.raises(DataError, match="does not fetch models"):
        check_model_dir("FunAudioLLM/Fun-ASR-Nano-2512", "nano")


@pytest.mark.slow
def test_automodel_loads_offline_from_another_cwd_and_decodes(twin, tmp_path, monkeypatch,
                                                             caplog):
    from funasr import AutoModel

    wav = tmp_path / "a.wav"
    rng = np.random.default_rng(0)
    sf.write(wav, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # the cwd holds no Qwen3-0.6B: the relative path must resolve inside the twin
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        model = AutoModel(model=str(twin), disable_update=True, device="cpu")
    # as with the released model.pt: every weight but the CTC head's, which funasr
    # built from multilingual.tiktoken in the twin dir and then disabled
    assert "Disabling CTC timestamps" in caplog.text
    assert model.model.ctc_decoder is None
    assert model.model.llm.config.num_hidden_layers == 2
    res = model.generate(input=[str(wav)], max_length=4)
    assert res[0]["key"] == "a" and {"text", "text_tn", "label"} <= set(res[0])
