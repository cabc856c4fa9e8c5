"""A tiny, randomly initialised twin of a paraformer-large model directory.

The twin is what this machine can build without a model hub: the same
classes and ``config.yaml`` schema as the published paraformer-large
(``Paraformer`` + ``SANMEncoder`` + ``ParaformerSANMDecoder`` +
``CifPredictorV2``, ``WavFrontend`` with LFR 7/6 and CMVN from ``am.mvn``,
``CharTokenizer`` with a ``seg_dict``, ``DynamicBatchLocalShuffleSampler``),
only small. The template is the released ``config.yaml`` key for key (see
``RELEASE``); twin.yaml changes sizes and training defaults only. It is
written as a complete model directory, file for file as the release::

    config.yaml          the released config with the twin's sizes
    configuration.json   the released one: ``file_path_metas`` (token_list,
                         seg_dict_file, cmvn_file), joined to the directory by funasr
    tokens.json          ["<blank>", "<s>", "</s>", ...tokens..., "<unk>"]: Chinese
                         characters and English word pieces (``chol@@ este@@ rol``)
    seg_dict             word -> its tokens, one a line (``cholesterol chol@@ este@@
                         rol``; a character maps to itself): funasr's CharTokenizer
                         splits English into the word pieces through it, as it does
                         with the release's 8.3 MB seg_dict
    am.mvn               Kaldi nnet text CMVN over the 560-dim LFR features
    model.pt             {"state_dict": ...} built through funasr's own classes
    twin_info.json       what the twin was made from (for idempotent re-runs)

so ``AutoModel(model=DIR)`` and ``funasr-train ++model=DIR`` treat it exactly
like a downloaded model. The sizes come from ``conf/paraformer/twin.yaml``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import twin_common
from .atomic import atomic_write
from .errors import DataError
from .tables import read_jsonl
from .textfile import read_lines
from .twin_common import (begin_twin, count_parameters, deep_merge, finish_twin,
                          load_arch, save_model, write_config)  # noqa: F401 (load_arch: re-exported)

log = logging.getLogger(__name__)

BLANK, SOS, EOS, UNK = "<blank>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (BLANK, SOS, EOS, UNK)

#: Files a finished twin directory holds (twin_info.json is the twin's own).
TWIN_FILES = ("config.yaml", "configuration.json", "tokens.json", "seg_dict", "am.mvn",
              "model.pt", "twin_info.json")

#: The released model the template follows, and where its files were read.
RELEASE = ("iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-pytorch, revision "
           "master (hub bookkeeping: created 1706753363), config.yaml and configuration.json")

#: Longest English word piece of the twin's seg_dict (letters).
PIECE_LEN = 4

#: Keys naming classes: the twin keeps paraformer-large's, so twin.yaml may not set them.
CLASS_KEYS = ("model", "encoder", "decoder", "predictor", "frontend", "specaug", "tokenizer",
              "dataset", "optim", "scheduler")

#: paraformer-large's released config.yaml (RELEASE), key for key. twin.yaml
#: overrides sizes and training defaults; the class names and the structure stay.
PARAFORMER_LARGE_TEMPLATE: dict = {
    "model": "Paraformer",
    "model_conf": {
        "ctc_weight": 0.0,
        "lsm_weight": 0.1,
        "length_normalized_loss": True,
        "predictor_weight": 1.0,
        "predictor_bias": 1,
        "sampling_ratio": 0.75,
    },
    "encoder": "SANMEncoder",
    "encoder_conf": {
        "output_size": 512,
        "attention_heads": 4,
        "linear_units": 2048,
        "num_blocks": 50,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "input_layer": "pe",
        "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True,
        "kernel_size": 11,
        "sanm_shfit": 0,
        "selfattention_layer_type": "sanm",
    },
    "decoder": "ParaformerSANMDecoder",
    "decoder_conf": {
        "attention_heads": 4,
        "linear_units": 2048,
        "num_blocks": 16,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "self_attention_dropout_rate": 0.1,
        "src_attention_dropout_rate": 0.1,
        "att_layer_num": 16,
        "kernel_size": 11,
        "sanm_shfit": 0,
    },
    "predictor": "CifPredictorV2",
    "predictor_conf": {
        "idim": 512,
        "threshold": 1.0,
        "l_order": 1,
        "r_order": 1,
        "tail_threshold": 0.45,
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
    },
    "specaug": "SpecAugLFR",
    "specaug_conf": {
        "apply_time_warp": False,
        "time_warp_window": 5,
        "time_warp_mode": "bicubic",
        "apply_freq_mask": True,
        "freq_mask_width_range": [0, 30],
        "lfr_rate": 6,
        "num_freq_mask": 1,
        "apply_time_mask": True,
        "time_mask_width_range": [0, 12],
        "num_time_mask": 1,
    },
    "train_conf": {
        "accum_grad": 1,
        "grad_clip": 5,
        "max_epoch": 150,
        "val_scheduler_criterion": ["valid", "acc"],
        "best_model_criterion": [["valid", "acc", "max"]],
        "keep_nbest_models": 10,
        "log_interval": 50,
    },
    "optim": "adam",
    "optim_conf": {"lr": 0.0005},
    "scheduler": "warmuplr",
    "scheduler_conf": {"warmup_steps": 30000},
    "dataset": "AudioDataset",
    "dataset_conf": {
        "index_ds": "IndexDSJsonl",
        "batch_sampler": "DynamicBatchLocalShuffleSampler",
        "batch_type": "example",
        "batch_size": 1,
        "max_token_length": 2048,
        "buffer_size": 500,
        "shuffle": True,
        "num_workers": 0,
    },
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {
        "unk_symbol": UNK,
        "split_with_space": True,
    },
    "input_size": 560,
    "ctc_conf": {
        "dropout_rate": 0.0,
        "ctc_type": "builtin",
        "reduce": True,
        "ignore_nan_grad": True,
    },
    "normalize": None,
}

#: configuration.json as released: funasr joins every file_path_metas entry that
#: exists to the model directory (tokens, seg_dict, CMVN), so nothing resolves
#: against the working directory.
CONFIGURATION_JSON: dict = {
    "framework": "pytorch",
    "task": "auto-speech-recognition",
    "model": {"type": "funasr"},
    "pipeline": {"type": "funasr-pipeline"},
    "model_name_in_hub": {"ms": "", "hf": ""},
    "file_path_metas": {
        "init_param": "model.pt",
        "config": "config.yaml",
        "tokenizer_conf": {"token_list": "tokens.json", "seg_dict_file": "seg_dict"},
        "frontend_conf": {"cmvn_file": "am.mvn"},
    },
}


def paraformer_config(arch: dict) -> dict:
    """The twin's full ``config.yaml`` content: the paraformer-large template
    with ``arch`` (twin.yaml) merged over it.

    Raises :class:`DataError` when ``arch`` renames a class, adds a section
    paraformer-large does not have, or sets a ``predictor_conf.idim`` that
    differs from ``encoder_conf.output_size``.
    """
    for key, value in arch.items():
        if key in CLASS_KEYS:
            raise DataError(f"twin architecture: '{key}' names a class; the twin keeps "
                            f"paraformer-large's ({PARAFORMER_LARGE_TEMPLATE[key]}); remove it")
        if key not in PARAFORMER_LARGE_TEMPLATE:
            raise DataError(f"twin architecture: unknown section '{key}'; known sections: "
                            f"{', '.join(k for k in PARAFORMER_LARGE_TEMPLATE if k not in CLASS_KEYS)}")
        if not isinstance(value, dict):
            raise DataError(f"twin architecture: section '{key}' must be a mapping")
    config = deep_merge(PARAFORMER_LARGE_TEMPLATE, arch)
    out_size = config["encoder_conf"]["output_size"]
    idim = arch.get("predictor_conf", {}).get("idim")
    if idim is not None and idim != out_size:
        raise DataError(f"twin architecture: predictor_conf.idim ({idim}) must equal "
                        f"encoder_conf.output_size ({out_size}); leave idim out")
    config["predictor_conf"]["idim"] = out_size
    fc = config["frontend_conf"]
    config["input_size"] = fc["n_mels"] * fc["lfr_m"]
    heads = config["encoder_conf"]["attention_heads"]
    if out_size % heads:
        raise DataError(f"twin architecture: encoder_conf.output_size ({out_size}) must be a "
                        f"multiple of attention_heads ({heads})")
    return config


def read_token_file(path: str | os.PathLike) -> list[str]:
    """Read one token a line (blank lines skipped); a token may not contain spaces."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such token file; pass the vocabulary, one token a line")
    tokens = []
    for n, line in read_lines(path):
        tok = line.strip()
        if not tok:
            continue
        if any(c.isspace() for c in tok):
            raise DataError(f"{path}:{n}: token '{tok}' contains whitespace; "
                            f"put one token on each line")
        tokens.append(tok)
    return tokens


def build_token_list(tokens: Iterable[str]) -> list[str]:
    """Paraformer's token list: ``<blank> <s> </s>``, the tokens in order, ``<unk>``.

    Special symbols among ``tokens`` are dropped (they are placed here);
    a repeated token is a :class:`DataError`, since it would mean two ids.
    """
    body: list[str] = []
    seen: set[str] = set()
    for tok in tokens:
        if tok in SPECIAL_TOKENS:
            continue
        if not tok or any(c.isspace() for c in tok):
            raise DataError(f"token {tok!r} is empty or contains whitespace")
        if tok in seen:
            raise DataError(f"token '{tok}' is listed twice; a token list must be unique")
        seen.add(tok)
        body.append(tok)
    if not body:
        raise DataError("the token list is empty; pass the corpus vocabulary (one token a line)")
    return [BLANK, SOS, EOS, *body, UNK]


def word_pieces(word: str, piece_len: int = PIECE_LEN) -> list[str]:
    """An English word as the twin's word pieces, the release's ``@@`` notation:
    ``cholesterol`` -> ``chol@@ este@@ rol`` (pieces of at most ``piece_len``
    letters, as even as possible); a short word stays whole."""
    n = -(-len(word) // piece_len)
    base, extra = divmod(len(word), n)
    pieces, pos = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        pieces.append(word[pos:pos + size])
        pos += size
    return [p + "@@" for p in pieces[:-1]] + pieces[-1:]


def seg_dict_and_tokens(vocabulary: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The twin's ``seg_dict`` (word -> tokens) and its tokens, in first-seen
    order, from the corpus vocabulary (Chinese characters and English words, as
    ``vocabulary.txt`` lists them). A non-ASCII token (a character) maps to
    itself; an ASCII word is lowercased (funasr's seg_tokenize looks words up
    lowercased) and split by :func:`word_pieces`."""
    seg: dict[str, list[str]] = {}
    tokens: dict[str, None] = {}
    for tok in vocabulary:
        if tok in SPECIAL_TOKENS:
            continue
        key = tok.lower() if tok.isascii() else tok
        pieces = word_pieces(key) if key.isascii() and len(key) > 1 else [key]
        seg.setdefault(key, pieces)
        for piece in pieces:
            tokens.setdefault(piece)
    return seg, list(tokens)


def write_seg_dict(path: str | os.PathLike, seg: dict[str, list[str]]) -> None:
    """funasr's seg_dict format: ``word piece piece ...``, one word a line."""
    with atomic_write(path) as f:
        for word, pieces in seg.items():
            f.write(f"{word} {' '.join(pieces)}\n")


def write_am_mvn(path: str | os.PathLike, shift: Sequence[float], scale: Sequence[float]) -> None:
    """Write CMVN as the Kaldi nnet text that funasr's ``WavFrontend`` reads:
    features become ``(x + shift) * scale``."""
    shift = np.asarray(shift, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if shift.shape != scale.shape or shift.ndim != 1:
        raise ValueError("shift and scale must be 1-D and of equal length")
    dim = len(shift)

    def vec(v: np.ndarray) -> str:
        return " ".join(f"{x:.8g}" for x in v)

    with atomic_write(path) as f:
        f.write("<Nnet>\n")
        f.write(f"<Splice> {dim} {dim}\n[ 0 ]\n")
        f.write(f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {vec(shift)} ]\n")
        f.write(f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {vec(scale)} ]\n")
        f.write("</Nnet>\n")


def compute_cmvn(jsonl: str | os.PathLike, frontend_conf: dict,
                 max_utts: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Global CMVN of the LFR features funasr's ``WavFrontend`` computes for
    the ``source`` audio of a Paraformer jsonl (no dither, no CMVN).

    Returns ``(shift, scale, frames)`` with ``shift = -mean`` and
    ``scale = 1/std``, ready for :func:`write_am_mvn`.
    """
    import torch
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.utils.load_utils import extract_fbank, load_audio_text_image_video

    conf = {k: v for k, v in frontend_conf.items() if k != "cmvn_file"}
    conf["dither"] = 0.0
    frontend = WavFrontend(**conf)
    total = np.zeros(frontend.output_size())
    sq = np.zeros(frontend.output_size())
    frames = 0
    n_utts = 0
    for n, obj in enumerate(read_jsonl(jsonl), 1):
        if max_utts is not None and n_utts >= max_utts:
            break
        source = obj.get("source") if isinstance(obj, dict) else None
        if not isinstance(source, str):
            raise DataError(f"{jsonl}: entry {n} has no 'source' audio path")
        if not Path(source).is_file():
            raise DataError(f"{jsonl}: entry {n} ('{obj.get('key', '?')}'): audio '{source}' "
                            f"does not exist")
        audio = load_audio_text_image_video(source, fs=frontend.fs)
        with torch.no_grad():
            feats, _ = extract_fbank(audio, data_type="sound", frontend=frontend)
        x = feats[0].double().numpy()
        total += x.sum(0)
        sq += (x * x).sum(0)
        frames += x.shape[0]
        n_utts += 1
    if frames == 0:
        raise DataError(f"{jsonl}: no audio frames to compute CMVN from; is the file empty?")
    mean = total / frames
    var = np.maximum(sq / frames - mean * mean, 1e-8)
    log.info("CMVN from %d utterances, %d LFR frames of %s", n_utts, frames, jsonl)
    return -mean, 1.0 / np.sqrt(var), frames


def build_paraformer(config: dict, vocab_size: int, seed: int):
    """Build the ``Paraformer`` of ``config`` through funasr's registry, with
    the constructor arguments funasr's ``AutoModel`` passes (``model_conf``
    merged with the whole config), randomly initialised from ``seed``."""
    import torch
    from funasr.register import tables

    fc = config["frontend_conf"]
    kwargs = copy.deepcopy(config["model_conf"])
    kwargs.update(copy.deepcopy({k: v for k, v in config.items() if k != "model_conf"}))
    kwargs["input_size"] = fc["n_mels"] * fc["lfr_m"]
    kwargs["vocab_size"] = vocab_size
    model_class = tables.model_classes.get(config["model"])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(**kwargs)
    return model


def _inputs_digest(config: dict, token_list: list[str], cmvn_jsonl: str | None,
                   cmvn_max_utts: int | None, seed: int) -> str:
    """sha256 over everything a twin is made from (the CMVN jsonl by content)."""
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(json.dumps(token_list, ensure_ascii=False).encode())
    h.update(f"seg_dict {PIECE_LEN}".encode())
    h.update(f"{seed} {cmvn_max_utts}".encode())
    if cmvn_jsonl is not None:
        h.update(Path(cmvn_jsonl).read_bytes())
    return h.hexdigest()


def twin_is_complete(out_dir: str | os.PathLike, digest: str | None = None) -> bool:
    """True when ``out_dir`` holds every twin file (and, if given, was made from ``digest``)."""
    return twin_common.twin_is_complete(out_dir, TWIN_FILES, digest)


def make_paraformer_twin(out_dir: str | os.PathLike, tokens: Iterable[str],
                         cmvn_jsonl: str | os.PathLike | None, arch: dict,
                         seed: int = 0, cmvn_max_utts: int | None = 2000) -> Path:
    """Write a tiny paraformer-large twin directory and return its absolute path.

    ``tokens``: the vocabulary (special symbols are added around it);
    ``cmvn_jsonl``: a Paraformer jsonl whose audio gives ``am.mvn`` (``None``:
    identity CMVN); ``arch``: the twin.yaml overrides; ``seed``: the random
    initialisation. Skips the work when ``out_dir`` already holds a twin made
    from the same inputs; otherwise every file is (re)written atomically,
    ``twin_info.json`` last.
    """
    out_dir = Path(out_dir).resolve()
    config = paraformer_config(arch)
    seg, pieces = seg_dict_and_tokens(tokens)
    token_list = build_token_list(pieces)
    cmvn_src = str(Path(cmvn_jsonl).resolve()) if cmvn_jsonl is not None else None
    if cmvn_src is not None and not Path(cmvn_src).is_file():
        raise DataError(f"{cmvn_jsonl}: no such jsonl for the CMVN statistics")
    digest = _inputs_digest(config, token_list, cmvn_src, cmvn_max_utts, seed)
    if twin_is_complete(out_dir, digest):
        log.info("%s: twin already complete for these inputs, skipping", out_dir)
        return out_dir
    begin_twin(out_dir)

    with atomic_write(out_dir / "tokens.json") as f:
        json.dump(token_list, f, ensure_ascii=False, indent=0)
        f.write("\n")
    write_seg_dict(out_dir / "seg_dict", seg)

    dim = config["frontend_conf"]["n_mels"] * config["frontend_conf"]["lfr_m"]
    if cmvn_src is None:
        shift, scale, frames = np.zeros(dim), np.ones(dim), 0
        log.info("no CMVN jsonl given: writing identity CMVN")
    else:
        shift, scale, frames = compute_cmvn(cmvn_src, config["frontend_conf"], cmvn_max_utts)
    write_am_mvn(out_dir / "am.mvn", shift, scale)

    write_config(out_dir, config, CONFIGURATION_JSON)

    model = build_paraformer(config, len(token_list), seed)
    n_params = count_parameters(model)
    save_model(out_dir / "model.pt", model.state_dict())

    info = {
        "family": "paraformer",
        "model": config["model"],
        "parameters": n_params,
        "vocab_size": len(token_list),
        "seg_dict_words": len(seg),
        "follows": RELEASE,
        "seed": seed,
        "cmvn_jsonl": cmvn_src,
        "cmvn_frames": frames,
        "inputs_sha256": digest,
    }
    finish_twin(out_dir, info, digest)
    log.info("wrote twin %s: %d parameters, %d tokens", out_dir, n_params, len(token_list))
    return out_dir
