"""Fun-ASR-Nano specifics: prompts, training jsonl lines, its tokenizer, checkpoint keys.

A Nano training line is a chat (funasr's ``FunASR`` dataset)::

    {"key": K, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": PROMPT + "<|startofspeech|>!/abs/path.wav<|endofspeech|>"},
        {"role": "assistant", "content": TRANSCRIPT}],
     "speech_length": 10-ms fbank frames, "text_length": Qwen3 tokens of TRANSCRIPT}

``PROMPT`` is what ``FunASRNano.get_prompt`` builds at decoding time from
``language`` and ``itn`` (``语音转写：``, ``语音转写成中文：``,
``语音转写，不进行文本规整：``), read from the ``prompt:`` section of
``conf/nano/train.yaml`` so that training and decoding ask the same question.
funasr silently drops lines whose target is empty or whose lengths fall
outside the model config's ``dataset_conf`` limits; :func:`nano_lines` leaves
them out too, but returns them with the reason so the caller can report them.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .audio import fbank_frames
from .config import load_yaml, parse_overrides
from .errors import DataError
from .tables import dump_jsonl_line, sort_keys
from .jsonl import num_samples, read_pairs

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a helpful assistant."
SPEECH_BEGIN, SPEECH_END = "<|startofspeech|>", "<|endofspeech|>"

#: funasr's FunASR index dataset defaults, used when the model config leaves them out.
DEFAULT_LIMITS = {"min_source_length": 10, "max_source_length": 8000, "max_target_length": 2048}

#: Keys the ``prompt:`` section may set, with their defaults.
PROMPT_DEFAULTS: dict[str, Any] = {"language": None, "itn": True}

#: Hotword keys of the ``prompt:`` section (a stage section or ``--set`` gives
#: them as ``prompt.KEY``), with their defaults: no hotword lists.
HOTWORD_DEFAULTS: dict[str, Any] = {"hotword_share": 0.0, "hotword_distractors": 0,
                                    "hotword_seed": 0}


# ----------------------------------------------------------------------------
# Prompts

def build_prompt(language: str | None = None, itn: bool = True,
                 hotwords: Iterable[str] = ()) -> str:
    """The user prompt ``FunASRNano.get_prompt`` builds for these decoding options.

    ``language`` (e.g. ``中文``, ``英文``) asks for that language; ``itn=False``
    asks for no inverse text normalisation; ``hotwords`` prepend a context block.
    """
    words = list(hotwords)
    prompt = ""
    if words:
        prompt = ("请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。"
                  "\n\n\n**上下文信息：**\n\n\n" f"热词列表：[{', '.join(words)}]\n")
    prompt += "语音转写" if language is None else f"语音转写成{language}"
    if not itn:
        prompt += "，不进行文本规整"
    return prompt + "："


def prompt_settings(conf: Mapping[str, Any], path: str | os.PathLike = "train.yaml") -> dict:
    """The ``prompt:`` section of a Nano train config, defaults filled in and checked.

    Returns ``{"language": str | None, "itn": bool}``; these are also the
    ``language=`` and ``itn=`` arguments decoding must pass to ``generate()``.
    """
    section = _prompt_section(conf, path)
    out = dict(PROMPT_DEFAULTS, **{k: v for k, v in section.items() if k in PROMPT_DEFAULTS})
    lang = out["language"]
    if lang is not None and (not isinstance(lang, str) or not lang.strip()):
        raise DataError(f"{path}: prompt.language must be a language name such as 中文 or "
                        f"英文, or null; got {lang!r}")
    if not isinstance(out["itn"], bool):
        raise DataError(f"{path}: prompt.itn must be true or false; got {out['itn']!r}")
    return out


def _prompt_section(conf: Mapping[str, Any], path) -> dict:
    section = conf.get("prompt") or {}
    if not isinstance(section, dict):
        raise DataError(f"{path}: 'prompt' must be a mapping with language and itn")
    known = {**PROMPT_DEFAULTS, **HOTWORD_DEFAULTS}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise DataError(f"{path}: prompt: unknown key(s) {', '.join(unknown)}; known: "
                        f"{', '.join(known)}")
    return section


def hotword_settings(conf: Mapping[str, Any], path: str | os.PathLike = "train.yaml",
                     section: str | None = None,
                     sets: Iterable[str] = ()) -> dict[str, Any]:
    """The hotword settings of one training set's jsonl, checked.

    The ``prompt:`` section's ``hotword_share``, ``hotword_distractors`` and
    ``hotword_seed``, updated by ``prompt.hotword_*`` keys of ``common`` and of
    the stage section ``section`` (``pretrain`` or a name under ``stages:``),
    then by ``sets`` (``--set``/``--train-args`` items ``prompt.hotword_share=0.5``;
    other keys are funasr's and ignored here). Without ``section`` only the
    ``prompt:`` section counts (validation and test sets). Returns
    ``{"hotword_share": float in [0, 1], "hotword_distractors": int >= 0,
    "hotword_seed": int}``.
    """
    out = dict(HOTWORD_DEFAULTS)
    out.update({k: v for k, v in _prompt_section(conf, path).items() if k in HOTWORD_DEFAULTS})
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if section is not None:
        own = conf.get("pretrain") if section == "pretrain" else (conf.get("stages") or {}).get(section)
        if not isinstance(own, dict):
            raise DataError(f"{path}: no settings for '{section}' (have: pretrain, "
                            f"{', '.join(conf.get('stages') or {})})")
        layers += [("common", conf.get("common") or {}), (section, own)]
    # SECTION:KEY=VALUE items count for that stage's training set only
    layers.append(("--set", parse_overrides(sets, section or "",
                                            ["pretrain", *(conf.get("stages") or {})])))
    for where, layer in layers:
        for k, v in layer.items():
            if not k.startswith("prompt."):
                continue
            name = k[len("prompt."):]
            if name not in HOTWORD_DEFAULTS:
                raise DataError(f"{path}: {where}: {k}: a stage or --set may give only "
                                f"{', '.join('prompt.' + n for n in HOTWORD_DEFAULTS)} (language "
                                f"and itn are the same for every set: the 'prompt:' section)")
            out[name] = v
    try:
        share = float(out["hotword_share"])
        n_dis = int(out["hotword_distractors"])
        seed = int(out["hotword_seed"])
    except (TypeError, ValueError):
        raise DataError(f"{path}: prompt.hotword_share must be a number in [0, 1], "
                        f"prompt.hotword_distractors and prompt.hotword_seed integers; got "
                        f"{out['hotword_share']!r}, {out['hotword_distractors']!r}, "
                        f"{out['hotword_seed']!r}") from None
    if not 0.0 <= share <= 1.0 or n_dis < 0:
        raise DataError(f"{path}: prompt.hotword_share must be in [0, 1] and "
                        f"prompt.hotword_distractors >= 0; got {share}, {n_dis}")
    return {"hotword_share": share, "hotword_distractors": n_dis, "hotword_seed": seed}


def term_matcher(terms: Iterable[str]):
    """The term finder of scoring (``stats.TermMatcher``: longest term first, no
    overlaps) on lower-cased, punctuation-free text, so a term counts as
    present in a transcript exactly where term recall would look for it."""
    from .normalize import make_scoring_normalizer
    from .stats import TermMatcher

    return TermMatcher(list(terms), normalizer=make_scoring_normalizer("basic"))


def _basic_normalizer():
    from .normalize import make_scoring_normalizer

    return make_scoring_normalizer("basic")


def terms_in(text: str, matcher) -> list[str]:
    """The terms (as written in the list) occurring in ``text``, first occurrence
    order, each once."""
    from .text import tokenize

    toks = tokenize(_basic_normalizer()(text))
    return list(dict.fromkeys(matcher.names[t] for _, _, t in matcher.find(toks)))


def utterance_hotwords(text: str, terms: Sequence[str], n_distractors: int,
                       rng: random.Random, present: bool = True, matcher=None) -> list[str]:
    """A hotword list for one utterance with transcript ``text``: the terms of
    ``terms`` present in it (with ``present``; :func:`terms_in`) plus
    ``n_distractors`` distractors (fewer if the list has not so many), shuffled
    by ``rng``. A distractor is a term that does not occur in the transcript,
    not even inside another word (``血压`` is no distractor for ``高血压``).
    ``present=False`` gives a distractor-only list (a decoding test: does the
    model say listed words it does not hear?); so does an utterance without
    terms. ``matcher``: :func:`term_matcher` of ``terms`` (made when not given)."""
    matcher = term_matcher(terms) if matcher is None else matcher
    norm = _basic_normalizer()
    said = terms_in(text, matcher)
    flat = norm(text)
    others = [t for t in dict.fromkeys(terms) if t not in said and norm(t) not in flat]
    words = (said if present else []) + rng.sample(others, min(n_distractors, len(others)))
    rng.shuffle(words)
    return words


def utterance_rng(seed: int, key: str) -> random.Random:
    """The random source of one utterance's hotword list: seed and key, so a
    list does not depend on which other utterances are in the set."""
    return random.Random(f"hotwords/{seed}/{key}")


def hotword_lists(texts: Mapping[str, str], terms: Sequence[str], share: float,
                  n_distractors: int, seed: int = 0) -> dict[str, list[str]]:
    """The hotword list of each utterance that gets one: ``round(share * N)``
    of the ``N`` keys of ``texts``, drawn with ``seed``; each list the terms
    present in its transcript plus ``n_distractors`` others
    (:func:`utterance_hotwords`). Keys whose list came out empty (no term
    present and no distractors) are left out: their prompt is the plain one."""
    keys = sort_keys(texts)
    n = int(round(share * len(keys)))
    if n == 0:
        return {}
    chosen = random.Random(f"hotword-share/{seed}").sample(keys, n)
    matcher = term_matcher(terms)
    out = {}
    for k in sort_keys(chosen):
        words = utterance_hotwords(texts[k], terms, n_distractors, utterance_rng(seed, k),
                                   matcher=matcher)
        if words:
            out[k] = words
    return out


def load_prompt(path: str | os.PathLike) -> str:
    """The training prompt configured in the ``prompt:`` section of ``path``."""
    settings = prompt_settings(load_yaml(path), path)
    return build_prompt(settings["language"], settings["itn"])


# ----------------------------------------------------------------------------
# Model dir: config, LLM dir, tokenizer

def load_model_config(model_dir: str | os.PathLike) -> dict:
    """``model_dir/config.yaml`` with its ``${...}`` interpolations resolved."""
    from omegaconf import OmegaConf

    path = Path(model_dir) / "config.yaml"
    if not path.is_file():
        raise DataError(f"{model_dir}: no config.yaml; pass a Fun-ASR-Nano model directory")
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # omegaconf raises many types for bad YAML/interpolations
        raise DataError(f"{path}: cannot read the model config ({e})") from None


def llm_dir(model_dir: str | os.PathLike, config: Mapping[str, Any] | None = None) -> Path:
    """The directory of the LLM config and tokenizer (``tokenizer_conf.init_param_path``,
    else ``llm_conf.init_param_path``), a relative path taken inside ``model_dir``
    as funasr's ``configuration.json`` makes it (never against the cwd)."""
    config = load_model_config(model_dir) if config is None else config
    rel = ((config.get("tokenizer_conf") or {}).get("init_param_path")
           or (config.get("llm_conf") or {}).get("init_param_path"))
    if not rel:
        raise DataError(f"{model_dir}/config.yaml: no tokenizer_conf.init_param_path or "
                        f"llm_conf.init_param_path; is this a Fun-ASR-Nano model directory?")
    p = Path(rel)
    p = p if p.is_absolute() else Path(model_dir) / p
    if not (p / "tokenizer.json").is_file():
        raise DataError(f"{p}: no Qwen3 tokenizer (tokenizer.json) there; the model directory "
                        f"{model_dir} is incomplete (re-download it)")
    return p.resolve()


def load_tokenizer(model_dir: str | os.PathLike):
    """The model dir's own Qwen3 tokenizer, loaded offline (no remote code)."""
    from transformers import AutoTokenizer

    d = llm_dir(model_dir)
    try:
        return AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except (OSError, ValueError) as e:
        raise DataError(f"{d}: cannot load the tokenizer ({e})") from None


def length_limits(config: Mapping[str, Any],
                  overrides: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The source/target length limits funasr's index dataset applies: the model
    config's ``dataset_conf`` values, then ``overrides`` given as
    ``{"dataset_conf.min_source_length": ...}`` (a train config's ``common``)."""
    ds = config.get("dataset_conf") or {}
    out = {}
    for name, default in DEFAULT_LIMITS.items():
        value = (overrides or {}).get(f"dataset_conf.{name}", ds.get(name, default))
        try:
            out[name] = int(value)
        except (TypeError, ValueError):
            raise DataError(f"dataset_conf.{name} must be an integer; got {value!r}") from None
    return out


# ----------------------------------------------------------------------------
# jsonl lines

def nano_line(key: str, wav: str, text: str, num_samples: int, prompt: str,
              text_length: int) -> dict:
    """One Nano training line; ``wav`` must be an absolute path."""
    return {
        "key": key,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{prompt}{SPEECH_BEGIN}!{wav}{SPEECH_END}"},
            {"role": "assistant", "content": text},
        ],
        "speech_length": fbank_frames(num_samples),
        "text_length": text_length,
    }


def drop_reason(line: Mapping[str, Any], limits: Mapping[str, int]) -> str | None:
    """Why funasr's index dataset would silently drop ``line``, or None."""
    sl, tl = line["speech_length"], line["text_length"]
    if tl < 1:
        return "empty transcript (text_length 0)"
    if sl < limits["min_source_length"]:
        return f"speech_length {sl} < min_source_length {limits['min_source_length']}"
    if sl > limits["max_source_length"]:
        return f"speech_length {sl} > max_source_length {limits['max_source_length']}"
    if tl > limits["max_target_length"]:
        return f"text_length {tl} > max_target_length {limits['max_target_length']}"
    return None


def nano_lines(data_dir: str | os.PathLike, model_dir: str | os.PathLike, prompt: str,
               nj: int = 1, overrides: Mapping[str, Any] | None = None,
               prompts: Mapping[str, str] | None = None
               ) -> tuple[list[str], list[tuple[str, str]]]:
    """Nano jsonl lines for a Kaldi data dir, sorted by key, and ``(key, reason)``
    of every utterance funasr would drop (left out of the lines). ``prompts``
    gives some keys another prompt than ``prompt`` (their hotword prompt)."""
    data_dir = Path(data_dir)
    config = load_model_config(model_dir)
    limits = length_limits(config, overrides)
    tokenizer = load_tokenizer(model_dir)
    wavs, texts = read_pairs(data_dir)
    samples = num_samples(wavs, nj, data_dir)
    lines, dropped = [], []
    for k in sort_keys(wavs):
        text = texts[k]
        line = nano_line(k, str(Path(wavs[k]).resolve()), text, samples[k],
                         (prompts or {}).get(k, prompt), len(tokenizer.tokenize(text)))
        reason = drop_reason(line, limits)
        if reason is None:
            lines.append(dump_jsonl_line(line))
        else:
            dropped.append((k, reason))
    return lines, dropped


# ----------------------------------------------------------------------------
# Checkpoints

def _checkpoint_keys(ckpt_path: str | os.PathLike) -> set[str]:
    from .checkpoint import load_state

    return set(load_state(ckpt_path, mmap=True))


def check_checkpoint_keys(ckpt_path: str | os.PathLike,
                          config: str | os.PathLike | Mapping[str, Any]) -> None:
    """Fail unless ``ckpt_path`` holds every part a Nano model needs to decode.

    ``config``: the model config (a mapping, a ``config.yaml`` path, or the
    directory holding one; relative LLM paths are taken inside that
    directory). Checked: audio encoder and adaptor weights, the LLM's
    embeddings, final norm and every layer of its ``config.json`` (a checkpoint
    saved with ``train_conf.effective_save_name_excludes: [llm.]`` has none),
    and with ``llm_conf.use_lora`` the ``lora_A``/``lora_B`` of every target
    module. Raises :class:`DataError` naming the missing parts.
    """
    base = None
    if not isinstance(config, Mapping):
        p = Path(config)
        base = p if p.is_dir() else p.parent
        if not p.is_dir():
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(OmegaConf.load(p), resolve=True)
        else:
            config = load_model_config(p)
    llm_path = Path((config.get("llm_conf") or {}).get("init_param_path") or "")
    if not llm_path.is_absolute() and base is not None:
        llm_path = base / llm_path
    cfg_json = llm_path / "config.json"
    if not cfg_json.is_file():
        raise DataError(f"{cfg_json}: the LLM config is missing; cannot tell which LLM layers "
                        f"the checkpoint must hold")
    n_layers = int(json.loads(cfg_json.read_text(encoding="utf-8"))["num_hidden_layers"])
    keys = _checkpoint_keys(ckpt_path)

    missing = []
    for part in ("audio_encoder.", "audio_adaptor."):
        if not any(k.startswith(part) for k in keys):
            missing.append(f"{part.rstrip('.')} (all weights)")
    llm_keys = [k for k in keys if k.startswith("llm.")]
    if not llm_keys:
        missing.append("llm (all weights: was it trained with train_conf."
                       "effective_save_name_excludes=[llm.]? pass "
                       "++train_conf.effective_save_name_excludes=null)")
    else:
        for k in ("llm.model.embed_tokens.weight", "llm.model.norm.weight"):
            if k not in keys:
                missing.append(k)
        layers = [i for i in range(n_layers)
                  if not any(k.startswith(f"llm.model.layers.{i}.") for k in llm_keys)]
        if layers:
            missing.append(f"llm layers {', '.join(map(str, layers))} of {n_layers}")
    llm_conf = config.get("llm_conf") or {}
    if llm_conf.get("use_lora") and llm_keys:
        targets = (llm_conf.get("lora_conf") or {}).get("target_modules") or []
        bases = [k[:-len(".weight")] for k in llm_keys
                 if k.endswith(".weight") and k.split(".")[-2] in targets]
        no_lora = [b for b in bases if f"{b}.lora_A" not in keys or f"{b}.lora_B" not in keys]
        if not bases:
            missing.append(f"LoRA target modules {targets} (no such LLM weights)")
        elif no_lora:
            missing.append(f"lora_A/lora_B of {len(no_lora)} target module(s), e.g. {no_lora[0]}")
    if missing:
        raise DataError(f"{ckpt_path}: checkpoint lacks {'; '.join(missing)}; a model decoded "
                        f"from it would be incomplete")
    log.info("%s: checkpoint holds encoder, adaptor and all %d LLM layers%s", ckpt_path,
             n_layers, " with LoRA" if llm_conf.get("use_lora") else "")


__all__ = ["SYSTEM_PROMPT", "build_prompt", "prompt_settings", "load_prompt",
           "hotword_settings", "term_matcher", "terms_in", "utterance_hotwords",
           "utterance_rng", "hotword_lists",
           "load_model_config", "llm_dir", "load_tokenizer", "length_limits", "nano_line",
           "drop_reason", "nano_lines", "check_checkpoint_keys"]
