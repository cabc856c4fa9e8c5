"""Folding Fun-ASR-Nano's LoRA into the LLM, and the PEFT export of the adapter."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from funasr_recipe.export import export_model
from funasr_recipe.errors import DataError
from funasr_recipe.lora import (PEFT_BASE_DIR, PEFT_DIR, LoraSettings, lora_settings, merge_lora_state,
                                peft_state)
from funasr_recipe.nano import check_checkpoint_keys
from funasr_recipe.twin_nano import CTC_PREFIXES, LLM_DIR, build_nano, load_arch, make_nano_twin

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "local" / "merge_lora.py"
R, ALPHA, TARGETS = 4, 8, ["q_proj", "v_proj"]


def run_tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True)


def lora_config(base: dict) -> dict:
    config = copy.deepcopy(base)
    config["llm_conf"]["use_lora"] = True
    config["llm_conf"]["lora_conf"].update(r=R, lora_alpha=ALPHA, target_modules=TARGETS)
    return config


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A twin, a 'stage 3' output dir (LoRA checkpoint + the config funasr saves,
    absolute paths), the unmerged LoRA model dir, and the merged one."""
    tmp = tmp_path_factory.mktemp("lora")
    twin = make_nano_twin(tmp / "twin", load_arch(ROOT / "conf" / "nano" / "twin.yaml"), seed=1)
    base_config = yaml.safe_load((twin / "config.yaml").read_text(encoding="utf-8"))
    config = lora_config(base_config)
    model = build_nano(config, twin / LLM_DIR, seed=2)
    base = torch.load(twin / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    missing, unexpected = model.load_state_dict(base, strict=False)
    model.on_pretrained_model_loaded(base.keys())   # as funasr: no CTC weights, head disabled
    missing = [k for k in missing if not k.startswith(CTC_PREFIXES)]
    assert not unexpected and missing and all("lora_" in k for k in missing)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, p in model.named_parameters():
            if name.endswith("lora_A") or name.endswith("lora_B"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    stage = tmp / "stage3"
    stage.mkdir()
    torch.save({"state_dict": model.state_dict()}, stage / "model.pt.avg3")
    (stage / "final.pt").symlink_to("model.pt.avg3")
    saved = copy.deepcopy(config)
    saved["llm_conf"]["init_param_path"] = str(twin / LLM_DIR)
    saved["tokenizer_conf"]["init_param_path"] = str(twin / LLM_DIR)
    (stage / "config.yaml").write_text(yaml.safe_dump(saved, allow_unicode=True), encoding="utf-8")

    unmerged = export_model(twin, stage / "final.pt", tmp / "unmerged",
                            config_text=yaml.safe_dump(config, allow_unicode=True))
    r = run_tool("--model-dir", twin, "--checkpoint", stage / "final.pt", "--out", tmp / "merged")
    assert r.returncode == 0, r.stderr
    # the merged dir must need nothing from the training dir
    stage.rename(tmp / "stage3_moved")
    wavs = []
    for i, sec in enumerate([0.8, 1.3, 2.0]):
        wavs.append(tmp / f"w{i}.wav")
        noise = np.random.default_rng(i).standard_normal(int(sec * 16000))
        sf.write(wavs[-1], (0.1 * noise).astype(np.float32), 16000)
    return {"tmp": tmp, "twin": twin, "unmerged": unmerged, "merged": tmp / "merged",
            "ckpt": tmp / "stage3_moved" / "model.pt.avg3", "wavs": wavs,
            "base_config": base_config}


@pytest.fixture(scope="module")
def models(setup) -> dict:
    from funasr import AutoModel

    return {name: AutoModel(model=str(setup[name]), disable_update=True, device="cpu")
            for name in ("twin", "unmerged", "merged")}


def llm_logits(llm, seed: int = 0) -> torch.Tensor:
    x = torch.randn(1, 12, llm.config.hidden_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return llm(inputs_embeds=x).logits


def test_fold_is_w_plus_scaled_b_a():
    g = torch.Generator().manual_seed(0)
    w, a, b = (torch.randn(s, generator=g) for s in [(6, 5), (2, 5), (6, 2)])
    other = torch.randn(3, generator=g)
    state = {"llm.x.q_proj.weight": w, "llm.x.q_proj.lora_A": a, "llm.x.q_proj.lora_B": b,
             "audio_adaptor.w": other}
    settings = LoraSettings(r=2, lora_alpha=8, lora_dropout=0.0, target_modules=("q_proj",))
    merged, modules = merge_lora_state(state, settings)
    assert modules == ["llm.x.q_proj"]
    assert set(merged) == {"llm.x.q_proj.weight", "audio_adaptor.w"}
    torch.testing.assert_close(merged["llm.x.q_proj.weight"], w + 4.0 * b @ a)
    assert merged["audio_adaptor.w"] is other
    with pytest.raises(DataError, match="rank 2, the training config says r=4"):
        merge_lora_state(state, LoraSettings(4, 8, 0.0, ("q_proj",)))
    with pytest.raises(DataError, match="not among the config's target_modules"):
        merge_lora_state(state, LoraSettings(2, 8, 0.0, ("v_proj",)))
    with pytest.raises(DataError, match="no lora_A/lora_B"):
        merge_lora_state({"llm.x.q_proj.weight": w}, settings)
    tied = dict(state, **{"llm.emb.weight": w})
    with pytest.raises(DataError, match="is tied to llm.emb.weight"):
        merge_lora_state(tied, settings)


def test_settings_come_from_the_training_config():
    s = lora_settings({"llm_conf": {"use_lora": True, "lora_conf": {
        "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}}})
    assert (s.r, s.scaling, s.target_modules) == (8, 2.0, ("q_proj",))
    with pytest.raises(DataError, match="use_lora is not true"):
        lora_settings({"llm_conf": {"use_lora": False}})


@pytest.mark.slow
def test_merged_dir_is_standalone(setup):
    merged = setup["merged"]
    config = yaml.safe_load((merged / "config.yaml").read_text(encoding="utf-8"))
    assert config["llm_conf"]["use_lora"] is False
    assert config["llm_conf"]["init_param_path"] == LLM_DIR
    assert "stage3" not in (merged / "config.yaml").read_text(encoding="utf-8")
    state = torch.load(merged / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert not [k for k in state if "lora_" in k]
    twin_state = torch.load(setup["twin"] / "model.pt", map_location="cpu",
                            weights_only=True)["state_dict"]
    assert set(state) == set(twin_state)
    check_checkpoint_keys(merged / "model.pt", merged)


@pytest.mark.slow
def test_merged_model_decodes_exactly_as_the_lora_model(setup, models):
    unmerged, merged = models["unmerged"], models["merged"]
    assert any("lora_A" in k for k in unmerged.model.state_dict())
    want = llm_logits(unmerged.model.llm)
    got = llm_logits(merged.model.llm)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the adapter matters: without it the logits are far off
    assert (llm_logits(models["twin"].model.llm) - want).abs().max() > 1e-2
    wavs = [str(w) for w in setup["wavs"]]
    a = unmerged.generate(input=wavs, max_length=8)
    b = merged.generate(input=wavs, max_length=8)
    assert [(r["text"], r["text_tn"]) for r in a] == [(r["text"], r["text_tn"]) for r in b]
    assert [r["key"] for r in b] == ["w0", "w1", "w2"]


def test_peft_adapter_on_hf_qwen3_matches_merged_llm(setup, models):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    adapter = setup["merged"] / PEFT_DIR
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert (cfg["peft_type"], cfg["r"], cfg["lora_alpha"]) == ("LORA", R, ALPHA)
    assert sorted(cfg["target_modules"]) == TARGETS
    tensors = load_file(adapter / "adapter_model.safetensors")
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in tensors
    assert len(tensors) == 2 * 2 * len(TARGETS)  # 2 layers x targets x (A, B)

    state = torch.load(setup["ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    assert set(peft_state(state)) == set(tensors)
    base_llm = {k[len("llm."):]: v for k, v in state.items()
                if k.startswith("llm.") and "lora_" not in k}
    # config.json says bfloat16 (as Qwen3-0.6B's does); the twin's LLM runs in fp32
    hf = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(setup["twin"] / LLM_DIR),
                                          dtype=torch.float32)
    hf.load_state_dict(base_llm)
    peft_model = PeftModel.from_pretrained(hf, str(adapter)).eval()
    torch.testing.assert_close(llm_logits(peft_model), llm_logits(models["merged"].model.llm),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_cli_refuses_a_checkpoint_without_lora(setup, tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    shutil.copy(setup["twin"] / "model.pt", stage / "model.pt.avg3")
    (stage / "config.yaml").write_text(yaml.safe_dump(lora_config(setup["base_config"])))
    r = run_tool("--model-dir", setup["twin"], "--checkpoint", stage / "model.pt.avg3",
                 "--out", tmp_path / "out")
    assert r.returncode == 1 and "no lora_A/lora_B" in r.stderr
    (stage / "config.yaml").write_text(yaml.safe_dump(setup["base_config"]))
    r = run_tool("--model-dir", setup["twin"], "--checkpoint", stage / "model.pt.avg3",
                 "--out", tmp_path / "out")
    assert r.returncode == 1 and "use_lora is not true" in r.stderr
    assert not (tmp_path / "out").exists()


def test_peft_adapter_points_at_the_exported_base_llm(setup, models):
    """issue 18: the adapter's base is a Hugging Face Qwen3 dir with the weights the adapter
    was trained on; PeftModel on it gives the merged model's logits."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    adapter = setup["merged"] / PEFT_DIR
    base_dir = setup["merged"] / PEFT_BASE_DIR
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert Path(cfg["base_model_name_or_path"]) == base_dir.resolve()
    assert (base_dir / "tokenizer.json").is_file()
    state = torch.load(setup["ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    saved = load_file(base_dir / "model.safetensors")
    for k, v in saved.items():  # the unmerged W, not the folded one
        torch.testing.assert_close(v, state["llm." + k], rtol=0, atol=0)
    hf = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"]).eval()
    peft_model = PeftModel.from_pretrained(hf, str(adapter)).eval()
    want = llm_logits(models["merged"].model.llm)
    torch.testing.assert_close(llm_logits(peft_model), want, rtol=1e-5, atol=1e-5)
    # the folder the adapter used to name holds no weights: nothing to apply it to
    assert not list((setup["twin"] / LLM_DIR).glob("*.safetensors"))
    # and a base with other weights gives other logits (the test can fail)
    other = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"]).eval()
    with torch.no_grad():
        other.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
    assert (llm_logits(PeftModel.from_pretrained(other, str(adapter))) - want).abs().max() > 1e-3
