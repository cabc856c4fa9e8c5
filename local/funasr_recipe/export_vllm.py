"""Fun-ASR-Nano -> the layout vLLM's own Fun-ASR support loads (``FunASRForConditionalGeneration``).

Read from vLLM's source (github.com/vllm-project/vllm):

* ``vllm/model_executor/models/funasr.py`` at commit
  001127aea632e769ac5686ef116fd3062005b617 (the model class, its
  ``hf_to_vllm_mapper`` and ``load_weights``), registered in
  ``vllm/model_executor/models/registry.py`` as
  ``"FunASRForConditionalGeneration": ("funasr", "FunASRForConditionalGeneration")``;
* ``vllm/transformers_utils/processors/funasr.py`` at commit
  00cd8fcf67c8acf8e5cafb0a0cb09cd4699e5e54 (``FunASRFeatureExtractor``,
  ``FunASRProcessor``).

What it loads from a model dir (``vllm serve DIR``):

* ``config.json``: a **Qwen3** config (``model_type: qwen3``: the class reads it with
  ``ctx.get_hf_config(Qwen3Config)`` and builds its ``Qwen3Model`` from it) with
  ``architectures: [FunASRForConditionalGeneration]`` and ``audio_encoder_conf``, the
  keyword arguments of its ``SenseVoiceEncoderSmall(input_size=560, **audio_encoder_conf)``.
* ``model.safetensors`` under **funasr's own names** (``audio_encoder.*``,
  ``audio_adaptor.*``, ``llm.model.*``, ``llm.lm_head.*``): the class maps them itself
  (``audio_encoder.`` -> ``model.encoder.audio_encoder.``, ``audio_adaptor.`` ->
  ``model.encoder.audio_adaptor.``, ``llm.model.`` -> ``model.decoder.``, ``linear_q/k/v.``
  -> ``q/k/v_proj.`` fused into the adaptor's ``qkv``, ``linear_out.`` -> ``out_proj.``).
  A name it has no place for stops the load (``AutoWeightsLoader``), so the CTC head
  (``ctc_decoder.*``) is left out; with tied embeddings ``llm.lm_head.weight`` is left out
  too (the class ties ``lm_head`` to ``embed_tokens``; safetensors stores no shared tensor).
* the Qwen3 tokenizer with the audio placeholder ``<|AUDIO|>`` added (an unused id below
  ``vocab_size``: the processor looks it up, and its embedding is replaced by audio);
  ``preprocessor_config.json`` (``FunASRFeatureExtractor`` with the model's
  ``frontend_conf``) and ``processor_config.json`` (``FunASRProcessor``).

What vLLM 0.33 hard-codes, so what it cannot serve as trained (:func:`unservable`;
``export.json`` lists them, and no parity is claimed for such a model):

* the adaptor: ``Transformer(downsample_rate=1, encoder_dim=512, llm_dim=1024,
  ffn_dim=2048, n_layer=2)`` (8 heads), and the encoder's ``input_size=560`` (80 mels x
  LFR 7): any other size (the tiny twin's) fails the load on shapes;
* the prompt ``语音转写：`` (``get_generation_prompt``): no language, no-ITN or hotword
  variant;
* the number of audio tokens: the prompt gets ``fake_token_lengths`` placeholders,
  funasr's low-frame-rate count (about one per 480 ms) of the features of the audio
  padded to ``chunk_length`` (30 s), while ``embed_multimodal`` returns the adaptor's
  output for every LFR frame of the padded audio (how vLLM's runner reconciles the two,
  first frames or an error, was not read); funasr (``downsample_rate: 1`` without
  ``use_low_frame_rate``, the released adaptor) gives the LLM one token per 60 ms LFR
  frame of the audio itself;
* the encoder's ``sanm_shift`` (vLLM's spelling; funasr's config says ``sanm_shfit``, which
  vLLM ignores: 0).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from .atomic import atomic_dir, atomic_write
from .errors import DataError
from .export_hf import prompt_text

log = logging.getLogger(__name__)

ARCHITECTURE = "FunASRForConditionalGeneration"
AUDIO_TOKEN = "<|AUDIO|>"
VLLM_VERSION = "0.33"
VLLM_SOURCES = {
    "vllm/model_executor/models/funasr.py": "001127aea632e769ac5686ef116fd3062005b617",
    "vllm/transformers_utils/processors/funasr.py": "00cd8fcf67c8acf8e5cafb0a0cb09cd4699e5e54",
}
#: the prompt vLLM's FunASRForConditionalGeneration.get_generation_prompt always sends
VLLM_PROMPT = "语音转写："
#: the sizes vLLM's FunASREncoder passes to its adaptor and encoder, whatever the config says
VLLM_HARDCODED = {"input_size": 560, "encoder_dim": 512, "llm_dim": 1024, "ffn_dim": 2048,
                  "n_layer": 2, "attention_heads": 8, "downsample_rate": 1}
#: the feature extractor's padding (FunASRFeatureExtractor defaults)
CHUNK_LENGTH_S = 30
HOP_LENGTH = 160
EXPORT_VERSION = 1
#: the state dict prefixes vLLM's class has a place for
KEPT_PREFIXES = ("audio_encoder.", "audio_adaptor.", "llm.model.", "llm.lm_head.")


def model_sizes(config: dict, qwen: dict) -> dict[str, int]:
    """The sizes vLLM hard-codes (:data:`VLLM_HARDCODED`), as this model has them."""
    enc = config.get("audio_encoder_conf") or {}
    ad = config.get("audio_adaptor_conf") or {}
    fe = config.get("frontend_conf") or {}
    return {"input_size": int(fe.get("n_mels", 80)) * int(fe.get("lfr_m", 1)),
            "encoder_dim": int(enc.get("output_size", 256)),
            "llm_dim": int(qwen["hidden_size"]),
            "ffn_dim": int(ad.get("ffn_dim", 2048)),
            "n_layer": int(ad.get("n_layer", 2)),
            "attention_heads": int(ad.get("attention_heads", 8)),
            "downsample_rate": int(ad.get("downsample_rate", 2))}


def low_frame_rate_tokens(num_lfr_frames: int) -> int:
    """``fake_token_lengths`` of vLLM's FunASRFeatureExtractor (funasr's low-frame-rate count)."""
    olens = 1 + (num_lfr_frames - 3 + 2) // 2
    olens = 1 + (olens - 3 + 2) // 2
    return max((olens - 1) // 2 + 1, 1)


def padded_lfr_frames(fs: int = 16000, lfr_n: int = 6) -> int:
    """LFR frames of ``CHUNK_LENGTH_S`` of audio (25 ms windows every 10 ms, snip_edges)."""
    frames = 1 + (CHUNK_LENGTH_S * fs - fs * 25 // 1000) // (fs * 10 // 1000)
    return -(-frames // lfr_n)


def unservable(config: dict, qwen: dict, prompt: dict[str, Any]) -> list[str]:
    """Why vLLM 0.33's FunASRForConditionalGeneration would not decode this model as funasr
    does (empty: it would)."""
    why = []
    if config.get("model") != "FunASRNano" or config.get("audio_encoder") != \
            "SenseVoiceEncoderSmall" or config.get("audio_adaptor") != "Transformer":
        why.append(f"model {config.get('model')!r} with {config.get('audio_encoder')!r} and "
                   f"{config.get('audio_adaptor')!r}: vLLM has FunASRNano with "
                   f"SenseVoiceEncoderSmall and the Transformer adaptor only")
    sizes = model_sizes(config, qwen)
    differ = {k: (sizes[k], v) for k, v in VLLM_HARDCODED.items() if sizes[k] != v}
    if differ:
        why.append("vLLM hard-codes the adaptor and encoder input ("
                   + ", ".join(f"{k} {v}" for k, v in VLLM_HARDCODED.items())
                   + "); this model has " + ", ".join(f"{k} {m}" for k, (m, _) in differ.items())
                   + ": the weights do not fit its shapes")
    trained = prompt_text(prompt.get("language"), bool(prompt.get("itn", True)))
    if trained != VLLM_PROMPT:
        why.append(f"vLLM always prompts {VLLM_PROMPT!r}; the model was trained with "
                   f"{trained!r}")
    ad = config.get("audio_adaptor_conf") or {}
    low = bool((config.get("model_conf") or {}).get("use_low_frame_rate")
               or ad.get("use_low_frame_rate"))
    if not low:
        why.append(f"vLLM gives the LLM {low_frame_rate_tokens(padded_lfr_frames())} "
                   f"audio tokens per request (the low-frame-rate count of the audio padded "
                   f"to {CHUNK_LENGTH_S} s); this model was trained and is decoded by funasr "
                   f"with one per 60 ms LFR frame (use_low_frame_rate off)")
    if int((config.get("audio_encoder_conf") or {}).get("sanm_shfit", 0) or 0):
        why.append("audio_encoder_conf.sanm_shfit is not 0: vLLM reads sanm_shift and "
                   "ignores it")
    return why


def vllm_state(state: dict, tied: bool) -> tuple[dict, list[str]]:
    """``(weights under funasr's names that vLLM loads, left-out keys)``."""
    out, skipped = {}, []
    for key, value in state.items():
        if not key.startswith(KEPT_PREFIXES) or (tied and key == "llm.lm_head.weight"):
            skipped.append(key)
            continue
        out[key] = value.detach().contiguous().clone()
    return out, skipped


def vllm_config(config: dict, qwen: dict) -> dict:
    """config.json: the Qwen3 config plus what FunASRForConditionalGeneration reads."""
    enc = {k: v for k, v in (config.get("audio_encoder_conf") or {}).items()
           if k != "input_size"}    # vLLM passes input_size itself
    out = {k: v for k, v in qwen.items() if k not in ("architectures", "auto_map")}
    out.update(architectures=[ARCHITECTURE], model_type="qwen3", audio_encoder_conf=enc,
               # not read by vLLM 0.33 (it hard-codes them); kept for the record
               audio_adaptor_conf=config.get("audio_adaptor_conf") or {})
    return out


def feature_extractor_config(frontend_conf: dict) -> dict:
    fe = {k: v for k, v in frontend_conf.items() if k != "dither"}
    # vLLM's WavFrontend defaults cmvn_file to the string "null" and opens it: say None
    fe["cmvn_file"] = None
    return {"feature_extractor_type": "FunASRFeatureExtractor",
            "processor_class": "FunASRProcessor",
            "feature_size": int(fe.get("n_mels", 80)),
            "sampling_rate": int(fe.get("fs", 16000)),
            "hop_length": HOP_LENGTH, "chunk_length": CHUNK_LENGTH_S, "n_fft": 400,
            "padding_value": 0.0, "dither": 0.0, "return_attention_mask": False,
            "frontend_conf": fe}


def export_nano_vllm(model_dir: Path, out: Path, prompt: dict[str, Any]) -> dict:
    """Write the vLLM layout of ``model_dir`` into ``out`` (see the module doc); returns the
    written ``export.json`` (``unservable``: why vLLM 0.33 would not decode it as funasr)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from .modeldir import check_model_dir
    from .training import load_state

    model_dir = check_model_dir(Path(model_dir), "nano")
    out = Path(out)
    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    llm_dir = model_dir / "Qwen3-0.6B"
    qwen = json.loads((llm_dir / "config.json").read_text(encoding="utf-8"))
    tied = bool(qwen.get("tie_word_embeddings", True))
    settings = {"language": prompt.get("language"), "itn": bool(prompt.get("itn", True))}
    st = (model_dir / "model.pt").stat()
    info: dict[str, Any] = {
        "from_model_dir": str(model_dir.resolve()), "version": EXPORT_VERSION,
        "source": f"{st.st_size} {st.st_mtime_ns}", "architecture": ARCHITECTURE,
        "vllm": VLLM_VERSION, "vllm_sources": VLLM_SOURCES, "prompt": settings,
        "trained_prompt": prompt_text(settings["language"], settings["itn"]),
        "vllm_prompt": VLLM_PROMPT,
        "unservable": unservable(config, qwen, settings)}
    with atomic_dir(out) as tmp:
        state, skipped = vllm_state(load_state(model_dir / "model.pt"), tied)
        missing = [p for p in ("audio_encoder.", "audio_adaptor.", "llm.model.")
                   if not any(k.startswith(p) for k in state)]
        if missing:
            raise DataError(f"{model_dir}/model.pt has no {', '.join(missing)} weights: a "
                            f"Fun-ASR-Nano checkpoint holds the encoder, adaptor and LLM")
        dtypes = sorted({str(v.dtype) for v in state.values()})
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "model.safetensors").chmod(0o644)
        with atomic_write(tmp / "config.json") as f:
            json.dump(vllm_config(config, qwen), f, indent=2, ensure_ascii=False)
        tok = AutoTokenizer.from_pretrained(str(llm_dir))
        if AUDIO_TOKEN not in tok.get_vocab():
            tok.add_tokens([AUDIO_TOKEN], special_tokens=True)
        audio_id = tok.convert_tokens_to_ids(AUDIO_TOKEN)
        if not 0 <= audio_id < int(qwen["vocab_size"]):
            raise DataError(f"{llm_dir}: no free id below vocab_size {qwen['vocab_size']} for "
                            f"{AUDIO_TOKEN} (got {audio_id})")
        tok.save_pretrained(str(tmp))
        with atomic_write(tmp / "preprocessor_config.json") as f:
            json.dump(feature_extractor_config(config.get("frontend_conf") or {}), f, indent=2)
        with atomic_write(tmp / "processor_config.json") as f:
            json.dump({"processor_class": "FunASRProcessor", "audio_token": AUDIO_TOKEN}, f,
                      indent=2)
        with atomic_write(tmp / "generation_config.json") as f:
            eos = qwen.get("eos_token_id", 151645)
            json.dump({"do_sample": False, "num_beams": 1, "max_new_tokens": 512,
                       "eos_token_id": eos, "pad_token_id": qwen.get("pad_token_id") or eos},
                      f, indent=2)
        info.update(audio_token_id=audio_id, skipped=skipped, dtypes=dtypes,
                    weights=len(state), tied_word_embeddings=tied,
                    torch=torch.__version__)
        with atomic_write(tmp / "export.json") as f:
            json.dump(info, f, indent=1, ensure_ascii=False)
    return info
