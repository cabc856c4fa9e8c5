"""Stage 8 for Fun-ASR-Nano: the layout vLLM's own Fun-ASR support loads.

vLLM cannot run on these CPU machines, so the export is loaded here the way vLLM
loads it, by a small mirror of its loading code written from its source
(github.com/vllm-project/vllm):

* ``vllm/model_executor/models/funasr.py`` at 001127aea632e769ac5686ef116fd3062005b617:
  ``FunASRForConditionalGeneration.hf_to_vllm_mapper`` (the substring map below, applied
  in order, first occurrence, as ``WeightsMapper._map_name`` in
  ``vllm/model_executor/models/utils.py`` does), ``load_weights`` through
  ``AutoWeightsLoader`` (a top-level name without a module stops the load),
  ``FunASREncoder.load_weights`` (q/k/v_proj fused into the adaptor's ``qkv``; a name it
  has no parameter for is silently dropped: counted here as unused), the parameters of
  ``SenseVoiceEncoderSmall(input_size=560, **hf_config.audio_encoder_conf)``,
  ``Transformer(downsample_rate=1, ffn_dim=2048, llm_dim=1024, encoder_dim=512,
  n_layer=2)`` and ``Qwen3Model`` (``qkv_proj``, ``gate_up_proj``; its ``load_weights``
  raises on a name it does not know); ``lm_head`` tied to ``embed_tokens`` when
  ``tie_word_embeddings``; ``ctx.get_hf_config(Qwen3Config)`` for the config;
* ``vllm/transformers_utils/processors/funasr.py`` at
  00cd8fcf67c8acf8e5cafb0a0cb09cd4699e5e54: ``FunASRFeatureExtractor(**preprocessor_config)``
  builds ``WavFrontend(**frontend_conf, dither=...)``, whose ``cmvn_file`` defaults to the
  string "null" (opened); ``FunASRProcessor`` looks ``<|AUDIO|>`` up in the tokenizer.

Then every parameter must be loaded with its shape, and nothing in the file unused.
The sizes vLLM hard-codes (the adaptor, the encoder's input) are those of the released
model; the tiny twin has its own, so the twin is loaded with them replaced by its sizes
(names and layout checked), and with vLLM's own sizes the load fails exactly on the
adaptor, as ``export.json`` says.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import pytest
import torch
import yaml

from funasr_recipe.export_vllm import (VLLM_HARDCODED, export_nano_vllm, low_frame_rate_tokens,
                                       model_sizes, padded_lfr_frames)
from funasr_recipe.twin_nano import load_arch, make_nano_twin
from helpers import ROOT, run_tool

#: the released files, beside the repository (FUNASR_RECIPE_SHARED overrides ../shared)
RELEASE = Path(os.environ.get("FUNASR_RECIPE_SHARED") or ROOT.parent / "shared") / "reference" \
    / "real-release" / "fun-asr-nano-2512"

MAPPER = {"linear_q.": "q_proj.", "linear_k.": "k_proj.", "linear_v.": "v_proj.",
          "linear_out.": "out_proj.", "audio_adaptor.": "model.encoder.audio_adaptor.",
          "audio_encoder.": "model.encoder.audio_encoder.", "llm.model.": "model.decoder.",
          "llm.lm_head": "lm_head"}


def vllm_name(key: str) -> str:
    for substr, new in MAPPER.items():
        if substr in key:
            key = key.replace(substr, new, 1)
    return key


def sense_voice_params(prefix, input_size, output_size=256, attention_heads=4, linear_units=2048,
                       num_blocks=6, tp_blocks=0, kernel_size=11, **kwargs):
    """vLLM's SenseVoiceEncoderSmall parameters (its signature: **kwargs swallow the rest)."""
    p = {}

    def layer(name, d_in):
        d = output_size
        p.update({f"{name}.self_attn.out_proj.weight": (d, d), f"{name}.self_attn.out_proj.bias": (d,),
                  f"{name}.self_attn.linear_q_k_v.weight": (3 * d, d_in),
                  f"{name}.self_attn.linear_q_k_v.bias": (3 * d,),
                  f"{name}.self_attn.fsmn_block.weight": (d, 1, kernel_size),
                  f"{name}.feed_forward.w_1.weight": (linear_units, d),
                  f"{name}.feed_forward.w_1.bias": (linear_units,),
                  f"{name}.feed_forward.w_2.weight": (d, linear_units),
                  f"{name}.feed_forward.w_2.bias": (d,),
                  f"{name}.norm1.weight": (d_in,), f"{name}.norm1.bias": (d_in,),
                  f"{name}.norm2.weight": (d,), f"{name}.norm2.bias": (d,)})

    layer(f"{prefix}.encoders0.0", input_size)
    for i in range(num_blocks - 1):
        layer(f"{prefix}.encoders.{i}", output_size)
    for i in range(tp_blocks):
        layer(f"{prefix}.tp_encoders.{i}", output_size)
    for n in ("after_norm", "tp_norm"):
        p.update({f"{prefix}.{n}.weight": (output_size,), f"{prefix}.{n}.bias": (output_size,)})
    return p


def adaptor_params(prefix, downsample_rate, encoder_dim, llm_dim, ffn_dim, n_layer,
                   attention_heads=8):
    p = {f"{prefix}.linear1.weight": (ffn_dim, encoder_dim * downsample_rate),
         f"{prefix}.linear1.bias": (ffn_dim,), f"{prefix}.linear2.weight": (llm_dim, ffn_dim),
         f"{prefix}.linear2.bias": (llm_dim,)}
    for j in range(n_layer):
        b, h = f"{prefix}.blocks.{j}", llm_dim // 4
        p.update({f"{b}.self_attn.qkv.weight": (3 * llm_dim, llm_dim),
                  f"{b}.self_attn.qkv.bias": (3 * llm_dim,),
                  f"{b}.self_attn.out_proj.weight": (llm_dim, llm_dim),
                  f"{b}.self_attn.out_proj.bias": (llm_dim,),
                  f"{b}.feed_forward.w_1.weight": (h, llm_dim), f"{b}.feed_forward.w_1.bias": (h,),
                  f"{b}.feed_forward.w_2.weight": (llm_dim, h),
                  f"{b}.feed_forward.w_2.bias": (llm_dim,),
                  f"{b}.norm1.weight": (llm_dim,), f"{b}.norm1.bias": (llm_dim,),
                  f"{b}.norm2.weight": (llm_dim,), f"{b}.norm2.bias": (llm_dim,)})
    return p


def qwen3_params(prefix, cfg):
    h, hd = cfg.hidden_size, cfg.head_dim
    nh, nkv, inter = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size
    p = {f"{prefix}.embed_tokens.weight": (cfg.vocab_size, h), f"{prefix}.norm.weight": (h,)}
    for i in range(cfg.num_hidden_layers):
        lp = f"{prefix}.layers.{i}"
        p.update({f"{lp}.self_attn.qkv_proj.weight": ((nh + 2 * nkv) * hd, h),
                  f"{lp}.self_attn.o_proj.weight": (h, nh * hd),
                  f"{lp}.self_attn.q_norm.weight": (hd,), f"{lp}.self_attn.k_norm.weight": (hd,),
                  f"{lp}.mlp.gate_up_proj.weight": (2 * inter, h),
                  f"{lp}.mlp.down_proj.weight": (h, inter),
                  f"{lp}.input_layernorm.weight": (h,),
                  f"{lp}.post_attention_layernorm.weight": (h,)})
        if cfg.attention_bias:
            p[f"{lp}.self_attn.qkv_proj.bias"] = ((nh + 2 * nkv) * hd,)
    return p


def shard_shape(param: str, shard, full: tuple, cfg) -> tuple:
    """The shape one shard of a fused parameter takes (QKVParallelLinear, MergedColumn...)."""
    if ".self_attn.qkv." in param:            # adaptor: 3 equal parts
        return (full[0] // 3,) + full[1:]
    if ".qkv_proj." in param:
        hd = cfg.head_dim
        rows = {"q": cfg.num_attention_heads * hd, "k": cfg.num_key_value_heads * hd,
                "v": cfg.num_key_value_heads * hd}[shard]
        return (rows,) + full[1:]
    return (full[0] // 2,) + full[1:]          # gate_up_proj


def load_like_vllm(export_dir, sizes: dict | None = None,
                   shapes: dict | None = None) -> dict[str, list]:
    """Load ``export_dir`` as vLLM's FunASRForConditionalGeneration does (see the module doc);
    ``sizes``: what vLLM hard-codes (default: its own values); ``shapes``: the weights'
    names and shapes (default: those of ``model.safetensors``). Returns the problems:
    ``missing`` parameters, ``unused`` names, ``unknown`` (a load error), ``shape``."""
    from safetensors import safe_open
    from transformers import AutoConfig, Qwen3Config

    sizes = dict(VLLM_HARDCODED, **(sizes or {}))
    cfg = AutoConfig.from_pretrained(str(export_dir))
    assert isinstance(cfg, Qwen3Config), type(cfg)
    assert cfg.architectures == ["FunASRForConditionalGeneration"]
    enc_conf = dict(cfg.audio_encoder_conf)
    assert "input_size" not in enc_conf     # vLLM passes input_size=560 itself
    params = sense_voice_params("model.encoder.audio_encoder", sizes["input_size"], **enc_conf)
    params.update(adaptor_params("model.encoder.audio_adaptor", sizes["downsample_rate"],
                                 sizes["encoder_dim"], sizes["llm_dim"], sizes["ffn_dim"],
                                 sizes["n_layer"], sizes["attention_heads"]))
    params.update(qwen3_params("model.decoder", cfg))
    if not cfg.tie_word_embeddings:
        params["lm_head.weight"] = (cfg.vocab_size, cfg.hidden_size)
    problems = {"missing": [], "unused": [], "unknown": [], "shape": []}
    loaded: dict[str, set] = {}
    if shapes is None:
        with safe_open(str(export_dir / "model.safetensors"), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    for orig in shapes:
        name, shape = vllm_name(orig), shapes[orig]
        if "rotary_emb.inv_freq" in name:
            continue
        if name.startswith("lm_head.") and cfg.tie_word_embeddings:
            name = "model.decoder.embed_tokens." + name[len("lm_head."):]
        elif not name.startswith(("model.encoder.", "model.decoder.", "lm_head.")):
            problems["unknown"].append(orig)         # AutoWeightsLoader: no such module
            continue
        shard = None
        if name.startswith("model.encoder."):
            m = re.search(r"self_attn\.([qkv])_proj\.", name)
            if m:
                shard, name = m.group(1), name.replace(f"self_attn.{m.group(1)}_proj.",
                                                       "self_attn.qkv.")
            if name not in params:
                if shard:
                    problems["unknown"].append(orig)  # params_dict[name]: KeyError
                else:
                    problems["unused"].append(orig)   # params_dict.get(name) is None: dropped
                continue
        else:
            for fused, part, sid in (("qkv_proj", "q_proj", "q"), ("qkv_proj", "k_proj", "k"),
                                     ("qkv_proj", "v_proj", "v"), ("gate_up_proj", "gate_proj", 0),
                                     ("gate_up_proj", "up_proj", 1)):
                if f".{part}." in name:
                    shard, name = sid, name.replace(f".{part}.", f".{fused}.")
                    break
            if name.endswith(".bias") and name not in params:
                continue                              # Qwen2/3 load_weights skips extra biases
            if name not in params:
                problems["unknown"].append(orig)      # params_dict[name]: KeyError
                continue
        want = params[name] if shard is None else shard_shape(name, shard, params[name], cfg)
        if shape != want:
            problems["shape"].append(f"{orig} {shape} -> {name} {want}")
        loaded.setdefault(name, set()).add(shard)
    for name in params:
        if name not in loaded:
            problems["missing"].append(name)
        elif ".qkv" in name and loaded[name] != {"q", "k", "v"} or \
                ".gate_up_proj." in name and loaded[name] != {0, 1}:
            problems["missing"].append(f"{name} (shards {sorted(map(str, loaded[name]))})")
    return problems


def check_processor(export_dir, sizes: dict | None = None) -> None:
    """The processor side: the feature extractor's frontend and the audio token."""
    from transformers import AutoConfig, AutoTokenizer

    sizes = dict(VLLM_HARDCODED, **(sizes or {}))
    cfg = AutoConfig.from_pretrained(str(export_dir))
    pre = json.loads((export_dir / "preprocessor_config.json").read_text())
    assert pre["feature_extractor_type"] == "FunASRFeatureExtractor"
    fe = pre["frontend_conf"]
    assert "dither" not in fe and "cmvn_file" in fe and fe["cmvn_file"] is None
    assert fe["n_mels"] * fe["lfr_m"] == sizes["input_size"]
    proc = json.loads((export_dir / "processor_config.json").read_text())
    assert proc["processor_class"] == "FunASRProcessor"
    tok = AutoTokenizer.from_pretrained(str(export_dir))
    audio_id = tok.convert_tokens_to_ids(proc["audio_token"])
    assert isinstance(audio_id, int) and audio_id != tok.unk_token_id and audio_id < cfg.vocab_size


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vllm")
    twin = make_nano_twin(tmp / "twin", load_arch(ROOT / "conf" / "nano" / "twin.yaml"), seed=2)
    r = run_tool("export_vllm.py", "--model-dir", twin, "--out", tmp / "vllm",
                 "--train-conf", ROOT / "conf" / "nano" / "train.yaml")
    assert r.returncode == 0, r.stderr[-3000:]
    config = yaml.safe_load((twin / "config.yaml").read_text(encoding="utf-8"))
    qwen = json.loads((twin / "Qwen3-0.6B" / "config.json").read_text())
    return {"tmp": tmp, "twin": twin, "out": tmp / "vllm", "config": config, "qwen": qwen,
            "stderr": r.stderr}


def no_problems(problems):
    return not any(problems.values())


def test_loads_the_way_vllm_does(exported):
    sizes = model_sizes(exported["config"], exported["qwen"])
    problems = load_like_vllm(exported["out"], sizes)
    assert no_problems(problems), problems
    check_processor(exported["out"], sizes)


def test_a_release_sized_model_fits_vllms_own_sizes(tmp_path):
    """Fun-ASR-Nano-2512's config (shared/reference/real-release), its modules built on the
    meta device as funasr builds them: the export's names and shapes load into vLLM's
    class with its hard-coded sizes, nothing missing or unused."""
    from funasr.models.llm_asr.adaptor import Transformer
    from funasr.models.sense_voice.model import SenseVoiceEncoderSmall
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from funasr_recipe.export_vllm import unservable, vllm_config, vllm_state

    rel = RELEASE
    if not (rel / "config.yaml").is_file():
        pytest.skip(f"{rel}: the released config is not here")
    config = yaml.safe_load((rel / "config.yaml").read_text(encoding="utf-8"))
    qwen = json.loads((rel / "Qwen3-0.6B" / "config.json").read_text())
    fe = config["frontend_conf"]
    with torch.device("meta"):
        enc = SenseVoiceEncoderSmall(input_size=fe["n_mels"] * fe["lfr_m"],
                                     **config["audio_encoder_conf"])
        ad = Transformer(**config["audio_adaptor_conf"])
        llm = Qwen3ForCausalLM(Qwen3Config(**qwen))
    state = {f"audio_encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"audio_adaptor.{k}": v for k, v in ad.state_dict().items()})
    state.update({f"llm.{k}": v for k, v in llm.state_dict().items()})
    kept, skipped = vllm_state(state, bool(qwen.get("tie_word_embeddings", True)))
    (tmp_path / "config.json").write_text(json.dumps(vllm_config(config, qwen)))
    problems = load_like_vllm(tmp_path, shapes={k: tuple(v.shape) for k, v in kept.items()})
    assert no_problems(problems), problems
    assert len(kept) > 1000 and skipped == ["llm.lm_head.weight"]
    # what stays: vLLM's prompt and token count (not the sizes)
    why = unservable(config, qwen, {"language": None, "itn": True})
    assert not any("hard-codes" in w for w in why)


def test_with_vllms_own_sizes_only_the_adaptor_fails_as_export_json_says(exported):
    problems = load_like_vllm(exported["out"])
    assert problems["shape"] and not problems["unknown"] and not problems["unused"]
    assert all(".audio_adaptor." in s for s in problems["shape"]), problems["shape"]
    info = json.loads((exported["out"] / "export.json").read_text())
    assert any("hard-codes the adaptor" in w for w in info["unservable"])
    assert "hard-codes the adaptor" in exported["stderr"]
    # a model of the released sizes would fit vLLM's hard-coded ones
    released = {"audio_encoder_conf": {"output_size": 512},
                "audio_adaptor_conf": {"ffn_dim": 2048, "n_layer": 2, "downsample_rate": 1},
                "frontend_conf": {"n_mels": 80, "lfr_m": 7}}
    assert model_sizes(released, {"hidden_size": 1024}) == VLLM_HARDCODED


def test_weights_are_funasrs_own_without_the_ctc_head(exported):
    from safetensors.torch import load_file

    from funasr_recipe.training import load_state

    state = load_state(exported["twin"] / "model.pt")
    got = load_file(str(exported["out"] / "model.safetensors"))
    info = json.loads((exported["out"] / "export.json").read_text())
    assert set(got) | set(info["skipped"]) == set(state)
    assert not any(k.startswith("ctc_decoder.") for k in got)
    for k, v in got.items():
        assert torch.equal(v, state[k]), k
    assert "llm.lm_head.weight" in info["skipped"]      # tied: vLLM ties lm_head itself


def test_the_mirror_loader_can_fail(exported, tmp_path):
    """A dropped, a renamed and an extra (CTC) weight are each caught."""
    import shutil

    from safetensors.torch import load_file, save_file

    sizes = model_sizes(exported["config"], exported["qwen"])
    base = load_file(str(exported["out"] / "model.safetensors"))
    cases = {
        "missing": lambda s: s.pop("audio_adaptor.blocks.0.self_attn.linear_k.bias"),
        "unused": lambda s: s.update({"audio_adaptor.blocks.0.norm3.weight":
                                      s["audio_adaptor.blocks.0.norm1.weight"].clone()}),
        "unknown": lambda s: s.update({"ctc_decoder.linear.weight": torch.zeros(2, 2)}),
        "shape": lambda s: s.update({"llm.model.norm.weight": torch.zeros(3)}),
    }
    for kind, mutate in cases.items():
        d = tmp_path / kind
        shutil.copytree(exported["out"], d)
        state = dict(base)
        mutate(state)
        save_file(state, str(d / "model.safetensors"))
        problems = load_like_vllm(d, sizes)
        assert problems[kind], (kind, problems)


def test_config_is_a_qwen3_config_with_the_encoder_kwargs(exported):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(exported["out"]))
    enc = exported["config"]["audio_encoder_conf"]
    assert cfg.model_type == "qwen3" and cfg.hidden_size == exported["qwen"]["hidden_size"]
    assert cfg.audio_encoder_conf["output_size"] == enc["output_size"]
    assert cfg.audio_encoder_conf["num_blocks"] == enc["num_blocks"]
    # vLLM's encoder takes only keyword arguments it knows or **kwargs: no positional clash
    names = set(inspect.signature(sense_voice_params).parameters)
    assert "input_size" in names and "input_size" not in cfg.audio_encoder_conf


def test_token_count_and_prompt_are_compared_with_the_trained_model(exported, tmp_path):
    # 30 s padded -> 500 LFR frames -> 63 audio tokens, whatever the audio's length
    assert padded_lfr_frames() == 500 and low_frame_rate_tokens(500) == 63
    info = json.loads((exported["out"] / "export.json").read_text())
    assert info["trained_prompt"] == info["vllm_prompt"] == "语音转写："
    assert any("63 audio tokens" in w for w in info["unservable"])
    info = export_nano_vllm(exported["twin"], tmp_path / "vllm", {"language": "中文", "itn": False})
    assert any("语音转写成中文，不进行文本规整：" in w for w in info["unservable"])


def fake_gpu(tmp_path):
    """A PATH with an nvidia-smi that lists one GPU (and no pip, vllm or curl)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Fake (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    return {"PATH": f"{bindir}:/usr/bin:/bin"}


@pytest.mark.slow
def test_gpu_check_refuses_an_export_vllm_would_not_decode_as_funasr(exported, tmp_path):
    import shutil
    import subprocess

    exp = tmp_path / "exp" / "nano"
    (exp / "export").mkdir(parents=True)
    shutil.copytree(exported["out"], exp / "export" / "vllm")
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--exp", str(exp)],
                       capture_output=True, text=True, env=fake_gpu(tmp_path), cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "hard-codes the adaptor" in r.stderr and "--force" in r.stderr
    assert not (exp / "gpu_check" / "venv").exists()       # nothing installed
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--exp",
                        str(tmp_path / "none")], capture_output=True, text=True,
                       env=fake_gpu(tmp_path / "exp"), cwd=tmp_path)
    assert r.returncode == 1 and "through stage 8 first" in r.stderr


def test_artefacts_of_the_export_config():
    from funasr_recipe.errors import DataError
    from funasr_recipe.export_plan import artefacts

    conf = yaml.safe_load((ROOT / "conf" / "export.yaml").read_text())
    assert artefacts(conf, "nano") == ["vllm"] and artefacts(conf, "paraformer") == []
    with pytest.raises(DataError, match="unknown artefact 'vllm' for paraformer"):
        artefacts({"paraformer": {"artefacts": ["vllm"]}}, "paraformer")
