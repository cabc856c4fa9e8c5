"""Fun-ASR-Nano -> Hugging Face transformers (``FunAsrNanoForConditionalGeneration``).

Converts a funasr Fun-ASR-Nano model dir (``config.yaml``, ``model.pt``,
``Qwen3-0.6B/``) into a dir that ``from_pretrained`` loads offline:
``config.json`` (model type ``fun_asr_nano``), ``model.safetensors``,
``generation_config.json`` (greedy, as funasr decodes), the Qwen3 tokenizer
files, ``chat_template.jinja`` and ``processor_config.json`` /
``preprocessor_config.json``. Every size comes from the model's own
``config.yaml`` and ``Qwen3-0.6B/config.json``; key mapping after transformers
5.24's ``modeling_fun_asr_nano.py``:

=============================================  ==============================================
funasr                                          transformers
=============================================  ==============================================
audio_encoder.encoders0.0.*                     model.audio_tower.layers.0.*
audio_encoder.encoders.{i}.*                    model.audio_tower.layers.{i+1}.*
audio_encoder.tp_encoders.{i}.*                 model.audio_tower.layers.{num_blocks+i}.*
audio_encoder.after_norm / tp_norm              layers.{num_blocks-1} / layers.{-1}.final_layernorm
...self_attn.linear_q_k_v (fused)               ...self_attn.{q,k,v}_proj (split in 3)
...self_attn.linear_out / fsmn_block            ...self_attn.o_proj / self_attn.fsmn.conv
...feed_forward.w_1 / w_2, norm1 / norm2        ...mlp.fc1 / fc2, input_ / post_attention_layernorm
audio_adaptor.linear1 / linear2                 model.multi_modal_projector.linear_1 / linear_2
audio_adaptor.blocks.{i}.self_attn.linear_q...  model.multi_modal_projector.layers.{i}.self_attn.q_proj...
llm.model.* / llm.lm_head.*                     model.language_model.* / lm_head.*
=============================================  ==============================================

What does not map is refused with the reason (:func:`unmappable`): the
transformers model has no adaptor downsampling (funasr's ``downsample_rate``
must be 1), feeds the LLM every LFR frame (funasr's ``use_low_frame_rate``
keeps about one in eight), has no CMVN and no CTC head.

The chat template's default prompt is the one the model was trained with
(``prompt`` section of the train config: language, ITN), so ``generate()``
without options decodes as the recipe's funasr decode does.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from .atomic import atomic_dir, atomic_write
from .errors import DataError

log = logging.getLogger(__name__)

AUDIO_TOKEN = "<|object_ref_start|>"
SYSTEM_PROMPT = "You are a helpful assistant."
EXPORT_VERSION = 1


def prompt_text(language: str | None, itn: bool, hotwords: list[str] | None = None) -> str:
    """The user prompt before the audio, exactly as funasr's ``FunASRNano.get_prompt``."""
    prompt = ""
    if hotwords:
        prompt = ("请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。\n\n\n"
                  "**上下文信息：**\n\n\n" + f"热词列表：[{', '.join(hotwords)}]\n")
    prompt += "语音转写" if not language else f"语音转写成{language}"
    if not itn:
        prompt += "，不进行文本规整"
    return prompt + "："


def chat_template(language: str | None, itn: bool) -> str:
    """A chat template whose default (no language, no keywords given) is the trained prompt."""
    default_lang = json.dumps(language or "", ensure_ascii=False)
    itn_suffix = "" if itn else "，不进行文本规整"
    return (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "{% endif %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
        "{% else %}"
        "{% set audio_items = message['content'] | selectattr('type', 'equalto', 'audio') | list %}"
        "{% set keyword_items = message['content'] | selectattr('type', 'equalto', 'keywords') | list %}"
        "{% set language_items = message['content'] | selectattr('type', 'equalto', 'language') | list %}"
        "{% set kw = namespace(items=[]) %}"
        "{% for item in keyword_items %}{% set kw.items = kw.items + item['keywords'] %}{% endfor %}"
        "{% if kw.items %}请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。\n\n\n"
        "**上下文信息：**\n\n\n热词列表：[{{ kw.items | join(', ') }}]\n{% endif %}"
        f"{{% set lang = language_items[0]['language'] if language_items else {default_lang} %}}"
        "语音转写{% if lang %}成{{ lang }}{% endif %}"
        f"{itn_suffix}："
        "{% for content in audio_items %}" + AUDIO_TOKEN + "{% endfor %}"
        "<|im_end|>\n"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def unmappable(config: dict) -> list[str]:
    """Why a funasr Fun-ASR-Nano config cannot become a transformers one (empty: it can)."""
    why = []
    if config.get("model") != "FunASRNano":
        why.append(f"model is {config.get('model')!r}, not FunASRNano")
    if config.get("audio_encoder") != "SenseVoiceEncoderSmall":
        why.append(f"audio_encoder {config.get('audio_encoder')!r}: transformers has "
                   f"SenseVoiceEncoderSmall only")
    if config.get("audio_adaptor") != "Transformer":
        why.append(f"audio_adaptor {config.get('audio_adaptor')!r}: transformers has the "
                   f"Transformer adaptor only")
    ad = config.get("audio_adaptor_conf") or {}
    if int(ad.get("downsample_rate", 2)) != 1:
        why.append(f"audio_adaptor_conf.downsample_rate is {ad.get('downsample_rate', 2)}: "
                   f"transformers' projector does not downsample (linear_1 takes "
                   f"encoder_dim, funasr's linear1 encoder_dim x {ad.get('downsample_rate', 2)}), "
                   f"and gives the LLM one audio token per LFR frame")
    if (config.get("model_conf") or {}).get("use_low_frame_rate") or ad.get("use_low_frame_rate") \
            or config.get("use_low_frame_rate"):
        why.append("use_low_frame_rate: funasr gives the LLM about T_lfr/8 audio tokens, "
                   "transformers all T_lfr")
    fe = config.get("frontend_conf") or {}
    if fe.get("cmvn_file"):
        why.append("frontend_conf.cmvn_file: transformers' feature extractor has no CMVN")
    if int(fe.get("n_mels", 80)) != 80:
        why.append(f"frontend_conf.n_mels {fe.get('n_mels')}: the feature extractor has 80")
    return why


def _encoder_key(key: str, num_blocks: int) -> str | None:
    m = re.match(r"audio_encoder\.(encoders0\.0|encoders\.(\d+)|tp_encoders\.(\d+))\.(.*)$", key)
    if m:
        if m.group(1) == "encoders0.0":
            idx = 0
        elif m.group(2) is not None:
            idx = int(m.group(2)) + 1
        else:
            idx = num_blocks + int(m.group(3))
        return f"model.audio_tower.layers.{idx}.{_component(m.group(4))}"
    return None


def _component(rest: str) -> str:
    for a, b in (("self_attn.linear_out.", "self_attn.o_proj."),
                 ("self_attn.fsmn_block.", "self_attn.fsmn.conv."),
                 ("self_attn.linear_q.", "self_attn.q_proj."),
                 ("self_attn.linear_k.", "self_attn.k_proj."),
                 ("self_attn.linear_v.", "self_attn.v_proj."),
                 ("feed_forward.w_1.", "mlp.fc1."), ("feed_forward.w_2.", "mlp.fc2."),
                 ("norm1.", "input_layernorm."), ("norm2.", "post_attention_layernorm.")):
        if rest.startswith(a):
            return b + rest[len(a):]
    return rest


def convert_state(state: dict, config: dict, total_layers: int) -> tuple[dict, list[str]]:
    """``(hf_state, skipped_keys)``; skipped: what transformers has no place for (CTC head)."""
    enc = config.get("audio_encoder_conf") or {}
    num_blocks = int(enc.get("num_blocks", 50))
    out, skipped = {}, []
    for key, value in state.items():
        if key.startswith("audio_encoder."):
            if key.startswith("audio_encoder.after_norm."):
                out[f"model.audio_tower.layers.{num_blocks - 1}.final_layernorm."
                    + key.split(".")[-1]] = value
                continue
            if key.startswith("audio_encoder.tp_norm."):
                out[f"model.audio_tower.layers.{total_layers - 1}.final_layernorm."
                    + key.split(".")[-1]] = value
                continue
            new = _encoder_key(key, num_blocks)
            if new is None:
                skipped.append(key)
            elif ".self_attn.linear_q_k_v." in key:
                if value.shape[0] % 3:
                    raise DataError(f"model.pt: {key} {tuple(value.shape)} is not 3 stacked "
                                    f"projections")
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[new.replace("linear_q_k_v", f"{name}_proj")] = part
            else:
                out[new] = value
        elif key.startswith("audio_adaptor."):
            rest = key[len("audio_adaptor."):]
            if rest.startswith("linear1."):
                out["model.multi_modal_projector.linear_1." + rest[len("linear1."):]] = value
            elif rest.startswith("linear2."):
                out["model.multi_modal_projector.linear_2." + rest[len("linear2."):]] = value
            elif rest.startswith("blocks."):
                i, tail = rest[len("blocks."):].split(".", 1)
                out[f"model.multi_modal_projector.layers.{i}.{_component(tail)}"] = value
            else:
                skipped.append(key)
        elif key.startswith("llm.model."):
            out["model.language_model." + key[len("llm.model."):]] = value
        elif key.startswith("llm.lm_head."):
            out["lm_head." + key[len("llm.lm_head."):]] = value
        else:
            skipped.append(key)
    return out, skipped


def hf_config(config: dict, qwen: dict, audio_token_id: int) -> dict:
    enc = config.get("audio_encoder_conf") or {}
    ad = config.get("audio_adaptor_conf") or {}
    fe = config.get("frontend_conf") or {}
    num_blocks, tp_blocks = int(enc.get("num_blocks", 50)), int(enc.get("tp_blocks", 0))
    llm_dim = int(qwen["hidden_size"])
    return {
        "model_type": "fun_asr_nano",
        "architectures": ["FunAsrNanoForConditionalGeneration"],
        "audio_token_id": audio_token_id,
        "tie_word_embeddings": bool(qwen.get("tie_word_embeddings", True)),
        "audio_config": {
            "model_type": "fun_asr_nano_encoder",
            "num_mel_bins": int(fe.get("n_mels", 80)),
            "num_stacked_frames": int(fe.get("lfr_m", 7)),
            "hidden_size": int(enc.get("output_size", 512)),
            "num_attention_heads": int(enc.get("attention_heads", 4)),
            "intermediate_size": int(enc.get("linear_units", 2048)),
            "num_hidden_layers": num_blocks + tp_blocks,
            "num_timestamp_prediction_layers": tp_blocks,
            "fsmn_kernel_size": int(enc.get("kernel_size", 11)),
        },
        "adaptor_config": {
            "hidden_size": llm_dim,
            "num_attention_heads": int(ad.get("attention_heads", 8)),
            "intermediate_size": llm_dim // 4,
            "num_hidden_layers": int(ad.get("n_layer", 2)),
            "projector_hidden_size": int(ad.get("ffn_dim", 2048)),
            # funasr's transformer EncoderLayer norms (the adaptor's blocks) use eps 1e-12;
            # SenseVoice's encoder uses torch's default 1e-5, transformers' default
            "layer_norm_eps": 1e-12,
        },
        "text_config": dict(qwen, model_type="qwen3"),
    }


def export_nano_hf(model_dir: Path, out: Path, prompt: dict[str, Any]) -> dict:
    """Convert ``model_dir`` into ``out`` (see the module doc). ``prompt``: the trained
    prompt settings (``language``, ``itn``). Returns the written ``export.json``; when the
    model does not map, it holds ``refused`` (the reasons) and no weights are written."""
    import torch
    from transformers import AutoTokenizer, FunAsrNanoConfig, FunAsrNanoForConditionalGeneration

    from .modeldir import check_model_dir
    from .checkpoint import load_state

    model_dir = check_model_dir(Path(model_dir), "nano")
    out = Path(out)
    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    llm_dir = model_dir / "Qwen3-0.6B"
    info: dict[str, Any] = {"from_model_dir": str(model_dir.resolve()), "version": EXPORT_VERSION,
                            "prompt": {"language": prompt.get("language"),
                                       "itn": bool(prompt.get("itn", True))},
                            "default_prompt": prompt_text(prompt.get("language"),
                                                          bool(prompt.get("itn", True)))}
    st = (model_dir / "model.pt").stat()
    info["source"] = f"{st.st_size} {st.st_mtime_ns}"
    why = unmappable(config)
    with atomic_dir(out) as tmp:
        if why:
            info["refused"] = why
            log.warning("%s does not map onto transformers' Fun-ASR-Nano: %s", model_dir,
                        "; ".join(why))
        else:
            qwen = json.loads((llm_dir / "config.json").read_text(encoding="utf-8"))
            tok = AutoTokenizer.from_pretrained(str(llm_dir))
            audio_id = tok.convert_tokens_to_ids(AUDIO_TOKEN)
            cfg_dict = hf_config(config, qwen, audio_id)
            hf_cfg = FunAsrNanoConfig(**{k: v for k, v in cfg_dict.items()
                                         if k not in ("model_type", "architectures")})
            state = load_state(model_dir / "model.pt")
            total = cfg_dict["audio_config"]["num_hidden_layers"]
            converted, skipped = convert_state(state, config, total)
            dtypes = {v.dtype for v in converted.values()}
            dtype = next(iter(dtypes)) if len(dtypes) == 1 else torch.float32
            model = FunAsrNanoForConditionalGeneration(hf_cfg).to(dtype).eval()
            missing, unexpected = model.load_state_dict(converted, strict=False)
            missing = [k for k in missing if not (k == "lm_head.weight" and hf_cfg.tie_word_embeddings)]
            if missing or unexpected:
                raise DataError(f"{model_dir}/model.pt does not fill transformers' Fun-ASR-Nano: "
                                f"missing {missing[:5]}, unexpected {unexpected[:5]}")
            model.config.dtype = str(dtype).replace("torch.", "")
            gen = model.generation_config
            gen.do_sample, gen.num_beams, gen.max_new_tokens = False, 1, 512
            gen.eos_token_id = qwen.get("eos_token_id", 151645)
            gen.pad_token_id = qwen.get("pad_token_id") or gen.eos_token_id
            for attr in ("temperature", "top_p", "top_k"):
                setattr(gen, attr, None)
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            template = chat_template(prompt.get("language"), bool(prompt.get("itn", True)))
            (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")
            fe = config.get("frontend_conf") or {}
            with atomic_write(tmp / "preprocessor_config.json") as f:
                json.dump({"feature_extractor_type": "FunAsrNanoFeatureExtractor",
                           "processor_class": "FunAsrNanoProcessor",
                           "feature_size": int(fe.get("n_mels", 80)), "sampling_rate":
                           int(fe.get("fs", 16000)), "num_frames_lfr": int(fe.get("lfr_m", 7)),
                           "stride_lfr": int(fe.get("lfr_n", 6)),
                           "window": fe.get("window", "hamming"), "return_attention_mask": True,
                           "padding_value": 0.0}, f, indent=2)
            with atomic_write(tmp / "processor_config.json") as f:
                json.dump({"processor_class": "FunAsrNanoProcessor", "audio_token": AUDIO_TOKEN},
                          f, indent=2)
            info.update(skipped=skipped, dtype=model.config.dtype,
                        frontend={k: fe.get(k) for k in ("fs", "n_mels", "frame_length",
                                                          "frame_shift", "lfr_m", "lfr_n",
                                                          "window")})
            if skipped:
                log.info("left out (no place in transformers' model): %s", ", ".join(
                    sorted({k.split('.')[0] + '.' + k.split('.')[1] for k in skipped})))
        with atomic_write(tmp / "export.json") as f:
            json.dump(info, f, indent=1, ensure_ascii=False)
    return info


def nano_features(wav, frontend_conf: dict):
    """``(1, T_lfr, 80 * lfr_m)`` features of a 16 kHz waveform exactly as funasr's
    ``WavFrontend`` computes them for Fun-ASR-Nano (its pure-torch Kaldi fbank, dither 0,
    LFR, no CMVN): what transformers' feature extractor computes with torchaudio."""
    import torch
    from funasr.frontends.wav_frontend import WavFrontend

    conf = {k: v for k, v in frontend_conf.items() if k != "cmvn_file"}
    conf["dither"] = 0.0
    fe = WavFrontend(**conf)
    x = torch.as_tensor(wav, dtype=torch.float32)[None, :]
    feats, lens = fe(x, torch.tensor([x.shape[1]]))
    return feats[:, : int(lens[0])]
