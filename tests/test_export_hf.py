"""Stage 8 for Fun-ASR-Nano: conversion to transformers' FunAsrNanoForConditionalGeneration.

The tree's twin (the release's adaptor: downsample_rate 1, every LFR frame to the
LLM, a CTC head) converts; a twin with a downsampling, low-frame-rate adaptor is
refused with the reasons.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from funasr_recipe.decoding import Item
from funasr_recipe.engines import run_engine
from funasr_recipe.export_hf import (chat_template, export_nano_hf, nano_features, prompt_text,
                                     unmappable)
from funasr_recipe.parity import identical_keys
from funasr_recipe.twin_nano import load_arch, make_nano_twin
from helpers import ROOT, run_tool


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf")
    twin = make_nano_twin(tmp / "twin", load_arch(ROOT / "conf" / "nano" / "twin.yaml"), seed=1)
    info = export_nano_hf(twin, tmp / "hf", {"language": "中文", "itn": False})
    assert not info.get("refused"), info
    wavs = []
    for i, sec in enumerate([0.8, 1.7]):
        wavs.append(tmp / f"w{i}.wav")
        noise = np.random.default_rng(i).standard_normal(int(sec * 16000))
        sf.write(wavs[-1], (0.1 * noise).astype(np.float32), 16000)
    return {"tmp": tmp, "twin": twin, "hf": tmp / "hf", "wavs": wavs}


def funasr_model(twin):
    from funasr import AutoModel
    return AutoModel(model=str(twin), disable_update=True, device="cpu").model


@pytest.mark.slow
def test_the_trees_twin_maps_and_a_downsampling_one_is_refused(tmp_path):
    tree = load_arch(ROOT / "conf" / "nano" / "twin.yaml")
    twin = make_nano_twin(tmp_path / "twin", tree)
    assert unmappable(yaml.safe_load((twin / "config.yaml").read_text(encoding="utf-8"))) == []
    cfg = yaml.safe_load((twin / "config.yaml").read_text(encoding="utf-8"))
    cfg["audio_adaptor_conf"].update(downsample_rate=8, use_low_frame_rate=True)
    (twin / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    why = unmappable(cfg)
    assert any("downsample_rate" in w for w in why) and any("low_frame_rate" in w for w in why)
    r = run_tool("export_hf.py", "--model-dir", twin, "--out", tmp_path / "hf",
                 "--train-conf", ROOT / "conf" / "nano" / "train.yaml")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((tmp_path / "hf" / "export.json").read_text())
    assert info.get("refused", []) == why
    assert "not converted" in r.stderr and not (tmp_path / "hf" / "model.safetensors").exists()
    r = run_tool("engine_decode.py", "--engine", "transformers", "--model", tmp_path / "hf",
                 "--data-dir", tmp_path / "nodata", "--out", tmp_path / "dec")
    assert r.returncode == 0 and json.loads((tmp_path / "dec" / "run.json").read_text())[
        "refused"] == why


def test_loads_offline_with_every_file(converted):
    from transformers import AutoConfig, AutoTokenizer, FunAsrNanoForConditionalGeneration

    hf = converted["hf"]
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "chat_template.jinja", "preprocessor_config.json", "processor_config.json"):
        assert (hf / name).is_file(), name
    cfg = AutoConfig.from_pretrained(str(hf))
    assert cfg.model_type == "fun_asr_nano"
    twin_cfg = yaml.safe_load((converted["twin"] / "config.yaml").read_text(encoding="utf-8"))
    enc = twin_cfg["audio_encoder_conf"]
    assert cfg.audio_config.hidden_size == enc["output_size"]
    assert cfg.audio_config.num_hidden_layers == enc["num_blocks"] + enc["tp_blocks"]
    model = FunAsrNanoForConditionalGeneration.from_pretrained(str(hf))
    assert model.generation_config.do_sample is False
    tok = AutoTokenizer.from_pretrained(str(hf))
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645


@pytest.mark.slow
def test_audio_embeddings_and_llm_logits_equal_funasrs(converted):
    from transformers import FunAsrNanoForConditionalGeneration

    fm = funasr_model(converted["twin"]).eval()
    hf = FunAsrNanoForConditionalGeneration.from_pretrained(str(converted["hf"])).eval()
    wav, _ = sf.read(converted["wavs"][1], dtype="float32")
    conf = yaml.safe_load((converted["twin"] / "config.yaml").read_text())["frontend_conf"]
    feats = nano_features(wav, conf)
    n = feats.shape[1]
    with torch.no_grad():
        enc, lens = fm.audio_encoder(feats.clone(), torch.tensor([n]))  # scales it in place
        want, _ = fm.audio_adaptor(enc, lens)
        got = hf.get_audio_features(feats, torch.ones(1, n, dtype=torch.long)).pooler_output
        x = torch.randn(1, 9, hf.config.text_config.hidden_size,
                        generator=torch.Generator().manual_seed(0))
        a = fm.llm(inputs_embeds=x).logits
        b = hf.lm_head(hf.model.language_model(inputs_embeds=x).last_hidden_state)
    torch.testing.assert_close(got, want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    # a changed encoder weight is caught (the comparison can fail)
    with torch.no_grad():
        hf.model.audio_tower.layers[1].self_attn.k_proj.weight.mul_(1.1)
        bad = hf.get_audio_features(feats, torch.ones(1, n, dtype=torch.long)).pooler_output
    assert (bad - want[0]).abs().max() > 1e-4


@pytest.mark.slow
def test_default_prompt_is_the_trained_one(converted):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(converted["hf"]))
    template = (converted["hf"] / "chat_template.jinja").read_text(encoding="utf-8")
    conv = [{"role": "user", "content": [{"type": "audio", "path": "x.wav"}]}]
    text = tok.apply_chat_template(conv, chat_template=template, tokenize=False,
                                   add_generation_prompt=True)
    want = prompt_text("中文", False)  # funasr's FunASRNano.get_prompt for these settings
    fm = funasr_model(converted["twin"])
    assert fm.get_prompt([], "中文", False) == want
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    f"<|im_start|>user\n{want}<|object_ref_start|><|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert "，不进行文本规整" not in chat_template(None, True)
    info = json.loads((converted["hf"] / "export.json").read_text())
    assert info["default_prompt"] == want


@pytest.mark.slow
def test_transformers_decode_equals_funasrs(converted, tmp_path):
    from funasr_recipe.decoding import decode, load_model

    items = [Item(f"w{i}", str(w), sf.info(str(w)).duration)
             for i, w in enumerate(converted["wavs"])]
    model = load_model(converted["twin"])
    ref = decode(model, [[it] for it in items], options={"language": "中文", "itn": False,
                                                          "max_length": 24})
    ref = {k: r["text"] for k, r in ref.items()}
    run = run_engine("transformers", converted["hf"], items, batch_size=1, max_new_tokens=24)
    assert identical_keys(ref, run.hyps) == list(ref), (ref, run.hyps)


@pytest.mark.slow
def test_decode_options_give_the_reference_decodes_prompt(converted):
    """Stage 6 run with --hotwords/--itn: the engine gets the same prompt (not the default)."""
    from funasr_recipe.decoding import decode, load_model

    items = [Item(f"w{i}", str(w), sf.info(str(w)).duration)
             for i, w in enumerate(converted["wavs"])]
    opts = {"language": "中文", "itn": True, "hotwords": ["心电图", "CT"]}
    ref = decode(load_model(converted["twin"]), [[it] for it in items],
                 options=dict(opts, max_length=24))
    ref = {k: r["text"] for k, r in ref.items()}
    run = run_engine("transformers", converted["hf"], items, batch_size=1, max_new_tokens=24,
                     prompt=opts)
    assert identical_keys(ref, run.hyps) == list(ref), (ref, run.hyps)
    default = run_engine("transformers", converted["hf"], items, batch_size=1,
                         max_new_tokens=24)
    assert default.hyps != run.hyps    # the prompt reached the model


def test_features_match_transformers_feature_extractor(converted):
    pytest.importorskip("torchaudio", reason="transformers' FunAsrNanoFeatureExtractor needs "
                                             "torchaudio, which has no build for torch 2.13")
    from transformers import FunAsrNanoFeatureExtractor

    wav, _ = sf.read(converted["wavs"][0], dtype="float32")
    conf = yaml.safe_load((converted["twin"] / "config.yaml").read_text())["frontend_conf"]
    ours = nano_features(wav, conf)[0]
    theirs = FunAsrNanoFeatureExtractor()(wav, sampling_rate=16000, return_tensors="pt")
    torch.testing.assert_close(theirs["input_features"][0], ours, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_transformers_decode_cuts_each_hypothesis_where_the_reference_decode_did(converted):
    # the random twin never ends by itself: the budget decides each hypothesis's length
    from funasr_recipe.decoding import (decode, duration_batches, item_budgets, load_model,
                                        token_budget)

    items = [Item(f"w{i}", str(w), sf.info(str(w)).duration)
             for i, w in enumerate(converted["wavs"])]
    dec = {"batch_size": 2, "max_new_tokens_per_second": 5}
    budgets = item_budgets(items, dec)
    assert budgets == {"w0": 19, "w1": 19}  # one batch: the 1.7-s utterance's ceil(5 x 1.7) + 10
    ref = decode(load_model(converted["twin"]), duration_batches(items, 2),
                 options={"language": "中文", "itn": False}, budget=token_budget("nano", dec))
    ref = {k: r["text"] for k, r in ref.items()}
    run = run_engine("transformers", converted["hf"], items, batch_size=1, budgets=budgets)
    assert identical_keys(ref, run.hyps) == list(ref), (ref, run.hyps)
    # control: one utterance's own budget instead of its batch's cuts it elsewhere
    own = run_engine("transformers", converted["hf"], items, batch_size=1,
                     budgets={"w0": 14, "w1": 19})
    assert identical_keys(ref, own.hyps) == ["w1"], (ref, own.hyps)
