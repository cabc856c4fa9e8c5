"""Folding Fun-ASR-Nano's LoRA into its LLM, and exporting the adapter for PEFT.

funasr injects its own loralib-style layer (``funasr/models/lora/layers.py``,
not peft) into every ``nn.Linear`` of the LLM whose module name has a
component in ``llm_conf.lora_conf.target_modules``. The layer keeps the base
weight ``W`` (``out × in``) and adds ``lora_A`` (``r × in``) and ``lora_B``
(``out × r``); its output is ``x Wᵀ + (x Aᵀ Bᵀ) · lora_alpha / r``
(``fan_in_fan_out`` is never set by funasr, so no transposes). In the full
state dict they sit beside the weight::

    llm.model.layers.0.self_attn.q_proj.weight
    llm.model.layers.0.self_attn.q_proj.lora_A
    llm.model.layers.0.self_attn.q_proj.lora_B

The fold is ``W' = W + (lora_alpha / r) · B @ A``; the lora keys are dropped
and ``llm_conf.use_lora`` set to false, giving a model dir any funasr loads.
The same adapter in peft's layout (``adapter_config.json`` +
``adapter_model.safetensors``, keys such as
``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``) applies to
a Hugging Face ``Qwen3ForCausalLM`` holding the same base LLM weights.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .atomic import atomic_write
from .errors import DataError

log = logging.getLogger(__name__)

LLM_PREFIX = "llm."
PEFT_PREFIX = "base_model.model."
PEFT_DIR = "peft_adapter"
#: the LLM the adapter was trained on, as a Hugging Face Qwen3 dir with weights
#: (the model dir's Qwen3-0.6B/ holds only config and tokenizer: the weights are in model.pt)
PEFT_BASE_DIR = "peft_base_llm"
#: files of the model dir's LLM folder copied into PEFT_BASE_DIR (what exists of them)
HF_LLM_FILES = ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
                "merges.txt", "special_tokens_map.json", "added_tokens.json")


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA settings a model was trained with (``llm_conf.lora_conf``)."""

    r: int
    lora_alpha: float
    lora_dropout: float
    target_modules: tuple[str, ...]

    @property
    def scaling(self) -> float:
        """funasr's ``lora.Linear.scaling``: ``lora_alpha / r``."""
        return self.lora_alpha / self.r


def read_config(path: str | os.PathLike) -> dict:
    """A funasr ``config.yaml`` (as training saved it: resolved, absolute paths)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: training config not found; pass the config.yaml funasr saved in "
                        f"the stage's output directory")
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{p}: expected a mapping at the top level")
    return cfg


def lora_settings(config: Mapping[str, Any], source: str = "config.yaml") -> LoraSettings:
    """The LoRA settings of a training config; :class:`DataError` unless it used LoRA.

    funasr's defaults apply to keys the config leaves out (r 16, alpha 32,
    dropout 0.05, targets q_proj and v_proj), exactly as the model class reads them.
    """
    llm_conf = config.get("llm_conf") or {}
    if not llm_conf.get("use_lora"):
        raise DataError(f"{source}: llm_conf.use_lora is not true: this model was not trained "
                        f"with LoRA, there is nothing to merge (export it with "
                        f"local/export_model.py)")
    conf = llm_conf.get("lora_conf") or {}
    targets = conf.get("target_modules", ["q_proj", "v_proj"])
    if isinstance(targets, str):
        targets = [targets]
    try:
        settings = LoraSettings(r=int(conf.get("r", 16)),
                                lora_alpha=float(conf.get("lora_alpha", 32)),
                                lora_dropout=float(conf.get("lora_dropout", 0.05)),
                                target_modules=tuple(str(t) for t in targets))
    except (TypeError, ValueError) as e:
        raise DataError(f"{source}: llm_conf.lora_conf has a bad value ({e})") from None
    if settings.r <= 0 or not settings.target_modules:
        raise DataError(f"{source}: llm_conf.lora_conf needs r > 0 and target_modules")
    return settings


def lora_modules(state: Mapping[str, Any]) -> list[str]:
    """Module names (``llm.model.layers.0.self_attn.q_proj``) with LoRA in ``state``, sorted."""
    names = {k[:-len(".lora_A")] for k in state if k.endswith(".lora_A")}
    names |= {k[:-len(".lora_B")] for k in state if k.endswith(".lora_B")}
    return sorted(names)


def _check_module(state: Mapping[str, Any], name: str, settings: LoraSettings) -> None:
    for suffix in (".weight", ".lora_A", ".lora_B"):
        if name + suffix not in state:
            raise DataError(f"checkpoint: {name}{suffix} is missing; LoRA modules need weight, "
                            f"lora_A and lora_B")
    if not name.startswith(LLM_PREFIX):
        raise DataError(f"checkpoint: LoRA on {name}, outside the LLM; only LLM LoRA is merged")
    if name.split(".")[-1] not in settings.target_modules:
        raise DataError(f"checkpoint: LoRA on {name}, which is not among the config's "
                        f"target_modules {list(settings.target_modules)}: the checkpoint and "
                        f"the training config do not belong together")
    w, a, b = state[name + ".weight"], state[name + ".lora_A"], state[name + ".lora_B"]
    if a.shape[0] != settings.r or b.shape[1] != settings.r:
        raise DataError(f"checkpoint: {name} has LoRA rank {a.shape[0]}, the training config "
                        f"says r={settings.r}: they do not belong together")
    if tuple(b.shape[:1]) + tuple(a.shape[1:]) != tuple(w.shape):
        raise DataError(f"checkpoint: {name}: lora_B @ lora_A is {b.shape[0]}x{a.shape[1]}, "
                        f"the weight {tuple(w.shape)}")


def merge_lora_state(state: Mapping[str, Any], settings: LoraSettings) -> tuple[dict, list[str]]:
    """``state`` with every LoRA folded into its weight and the lora keys dropped.

    Returns ``(merged_state, merged_module_names)``. The fold is computed in
    float32 and stored in the weight's dtype. A weight shared with another key
    (a tied ``lm_head``) cannot be folded without changing the other: error.
    """
    import torch

    modules = lora_modules(state)
    if not modules:
        raise DataError("checkpoint: no lora_A/lora_B weights: it was not trained with LoRA "
                        "(or with a different model config); nothing to merge")
    for name in modules:
        _check_module(state, name, settings)
    merged = {k: v for k, v in state.items() if not (k.endswith(".lora_A") or k.endswith(".lora_B"))}
    ptrs: dict[int, list[str]] = {}
    for k, v in merged.items():
        if isinstance(v, torch.Tensor) and v.numel():
            ptrs.setdefault(v.data_ptr(), []).append(k)
    for name in modules:
        key = name + ".weight"
        w = state[key]
        shared = [k for k in ptrs.get(w.data_ptr(), []) if k != key]
        if shared:
            raise DataError(f"checkpoint: {key} is tied to {shared[0]}; folding LoRA into it "
                            f"would change both. Leave tied weights out of target_modules")
        delta = state[name + ".lora_B"].float() @ state[name + ".lora_A"].float()
        merged[key] = (w.float() + delta * settings.scaling).to(w.dtype)
    return merged, modules


def peft_state(state: Mapping[str, Any]) -> dict:
    """The LLM's LoRA tensors under peft's names for a ``Qwen3ForCausalLM``."""
    out = {}
    for name in lora_modules(state):
        hf = PEFT_PREFIX + name[len(LLM_PREFIX):]
        out[f"{hf}.lora_A.weight"] = state[name + ".lora_A"].detach().contiguous().clone()
        out[f"{hf}.lora_B.weight"] = state[name + ".lora_B"].detach().contiguous().clone()
    return out


def peft_config(settings: LoraSettings, base_model: str) -> dict:
    """``adapter_config.json`` for these settings (peft's LoRA, no rsLoRA: same scaling)."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": settings.r,
        "lora_alpha": settings.lora_alpha,
        "lora_dropout": settings.lora_dropout,
        "target_modules": sorted(settings.target_modules),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }


def write_peft_adapter(out_dir: str | os.PathLike, state: Mapping[str, Any],
                       settings: LoraSettings, base_model: str) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``out_dir``."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    tensors = peft_state(state)
    with atomic_write(out_dir / "adapter_model.safetensors", "wb") as f:
        f.write(save(tensors, metadata={"format": "pt"}))
    with atomic_write(out_dir / "adapter_config.json") as f:
        json.dump(peft_config(settings, base_model), f, indent=2)
        f.write("\n")
    log.info("wrote peft adapter %s: %d tensors", out_dir, len(tensors))
    return out_dir


def base_llm_state(state: Mapping[str, Any]) -> dict:
    """The LLM's own weights in ``state`` (LoRA tensors left out) under Hugging Face
    ``Qwen3ForCausalLM`` names (``model.layers.0...``, ``lm_head.weight``)."""
    out = {k[len(LLM_PREFIX):]: v for k, v in state.items()
           if k.startswith(LLM_PREFIX) and not (k.endswith(".lora_A") or k.endswith(".lora_B"))}
    if not out:
        raise DataError(f"checkpoint: no '{LLM_PREFIX}' weights: the LLM is not in it (was it "
                        f"saved with effective_save_name_excludes: [llm.]?)")
    return out


def write_hf_llm(out_dir: str | os.PathLike, state: Mapping[str, Any],
                 llm_dir: str | os.PathLike) -> Path:
    """Write ``state``'s LLM as a Hugging Face Qwen3 dir that ``from_pretrained`` loads:
    ``config.json`` (``llm_dir``'s, with the dtype of the weights), ``model.safetensors``
    and ``llm_dir``'s tokenizer and generation files."""
    import shutil

    import torch
    from safetensors.torch import save

    out_dir, llm_dir = Path(out_dir), Path(llm_dir)
    cfg_path = llm_dir / "config.json"
    if not cfg_path.is_file():
        raise DataError(f"{cfg_path}: not found; the model dir's LLM folder needs its config.json")
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    weights = base_llm_state(state)
    tied = bool(config.get("tie_word_embeddings", False))
    if tied:
        # one tensor for both: transformers ties lm_head to the embedding again on load
        emb, head = weights.get("model.embed_tokens.weight"), weights.pop("lm_head.weight", None)
        if head is not None and emb is not None and not torch.equal(head, emb):
            raise DataError(f"{cfg_path}: tie_word_embeddings is true but the checkpoint's "
                            f"lm_head differs from the embedding")
    dtypes = {v.dtype for v in weights.values()}
    if len(dtypes) == 1:
        dtype = str(next(iter(dtypes))).replace("torch.", "")
        config["torch_dtype"] = config["dtype"] = dtype
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "model.safetensors", "wb") as f:
        f.write(save({k: v.detach().contiguous().clone() for k, v in weights.items()},
                     metadata={"format": "pt"}))
    with atomic_write(out_dir / "config.json") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for name in HF_LLM_FILES:
        if (llm_dir / name).is_file():
            shutil.copy2(llm_dir / name, out_dir / name)
    log.info("wrote the base LLM as a Hugging Face dir %s: %d tensors", out_dir, len(weights))
    return out_dir


def merged_config_text(model_dir: str | os.PathLike) -> str:
    """``model_dir/config.yaml`` with ``llm_conf.use_lora: false`` (the rest as it is)."""
    cfg = read_config(Path(model_dir) / "config.yaml")
    cfg.setdefault("llm_conf", {})["use_lora"] = False
    return yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)


def merge_lora(model_dir: str | os.PathLike, checkpoint: str | os.PathLike,
               train_config: str | os.PathLike, out: str | os.PathLike,
               peft: bool = True) -> Path:
    """Write a standalone model dir with the checkpoint's LoRA folded in.

    ``model_dir``: the model dir the stage trained from (its files, config and
    ``Qwen3-0.6B/`` are copied); ``checkpoint``: the stage's chosen checkpoint
    (full state dict with ``lora_A``/``lora_B``); ``train_config``: the
    ``config.yaml`` funasr saved in the stage's output dir (gives r, alpha,
    targets). With ``peft``, the adapter also goes to ``out/peft_adapter/``.
    """
    from .export import export_model, is_exported
    from .checkpoint import load_state

    settings = lora_settings(read_config(train_config), str(train_config))
    if not Path(checkpoint).is_file():
        raise DataError(f"{checkpoint}: checkpoint not found")
    config_text = merged_config_text(model_dir)
    if is_exported(Path(model_dir), Path(checkpoint), Path(out), config_text) and (
            not peft or (Path(out) / PEFT_DIR).is_dir()):
        log.info("%s: already merged from the same model dir and checkpoint, skipped", out)
        return Path(out)
    state = load_state(checkpoint)
    merged, modules = merge_lora_state(state, settings)
    log.info("folded LoRA (r=%d, alpha=%g, scaling %g) into %d LLM modules", settings.r,
             settings.lora_alpha, settings.scaling, len(modules))
    out = export_model(Path(model_dir), Path(checkpoint), Path(out), state=merged,
                       config_text=config_text)
    if peft:
        # the adapter applies to the LLM weights it was trained on, which live in the
        # checkpoint (W beside lora_A/lora_B), not in the model dir's Qwen3-0.6B/
        llm_path = (read_config(Path(model_dir) / "config.yaml").get("llm_conf") or {}).get(
            "init_param_path", "Qwen3-0.6B")
        llm_dir = Path(llm_path) if Path(llm_path).is_absolute() else Path(model_dir) / llm_path
        base = write_hf_llm(out / PEFT_BASE_DIR, state, llm_dir)
        write_peft_adapter(out / PEFT_DIR, state, settings, base_model=str(base.resolve()))
    return out


__all__ = ["LoraSettings", "PEFT_DIR", "PEFT_BASE_DIR", "base_llm_state", "write_hf_llm", "read_config", "lora_settings", "lora_modules",
           "merge_lora_state", "peft_state", "peft_config", "write_peft_adapter",
           "merged_config_text", "merge_lora"]
