"""A standalone model dir from a model dir and a checkpoint (what a stage ships)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from . import stamp
from .atomic import atomic_dir, atomic_write
from .errors import DataError
from .checkpoint import load_state
from .training import state_checksum

log = logging.getLogger(__name__)

# Files of a funasr training output dir that a model dir does not need.
SKIP = ("model.pt", "tensorboard", "train.log", "log.txt", ".done", "chain.json", "final.pt")


def export_inputs(model_dir: Path, checkpoint: Path,
                  config_text: str | None = None) -> tuple[list[str], list[str]]:
    """What an export is made from, for its stamp: the model dir's files and the
    checkpoint (by content), and the replaced config, if any."""
    opts = [] if config_text is None else [
        "config_sha256=" + hashlib.sha256(config_text.encode()).hexdigest()]
    return [str(model_dir), str(checkpoint)], opts


def is_exported(model_dir: Path, checkpoint: Path, out: Path,
                config_text: str | None = None) -> bool:
    """Whether ``out`` is already the export of ``checkpoint`` into ``model_dir``'s files."""
    inputs, opts = export_inputs(model_dir, checkpoint, config_text)
    return not stamp.check(out, inputs, opts, [Path(out) / "model.pt"])


def export_model(model_dir: Path, checkpoint: Path, out: Path, state: dict | None = None,
                 config_text: str | None = None) -> Path:
    """Copy ``model_dir``'s files (not its weights) to ``out`` and write ``checkpoint``'s
    weights as ``out/model.pt`` (``{"state_dict": ...}``).

    ``state`` replaces the weights read from ``checkpoint`` and ``config_text``
    the copied ``config.yaml`` (for a merged model). The directory is built
    beside ``out`` and renamed into place, so it appears whole or not at all.
    """
    import torch

    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / "config.yaml").is_file():
        raise DataError(f"{model_dir}: not a model dir (no config.yaml)")
    if not Path(checkpoint).is_file():
        raise DataError(f"{checkpoint}: checkpoint not found")
    if is_exported(model_dir, checkpoint, out, config_text):
        log.info("%s: already exported from the same model dir and checkpoint, skipped", out)
        return out
    state = state if state is not None else load_state(checkpoint)
    # provenance (the skip test is the stamp)
    info = {"from_model_dir": str(model_dir.resolve()),
            "from_checkpoint": str(Path(checkpoint).resolve()),
            "checksum": state_checksum(state)}
    if config_text is not None:
        info["config_sha256"] = hashlib.sha256(config_text.encode()).hexdigest()
    with atomic_dir(out) as tmp:
        for src in sorted(model_dir.iterdir()):
            if src.name in SKIP or src.name.startswith("model.pt") or src.name.startswith("."):
                continue
            if src.name.startswith("valid_") and src.suffix == ".tsv":
                continue
            if src.is_dir():
                shutil.copytree(src, tmp / src.name)
            else:
                shutil.copy2(src, tmp / src.name)
        if config_text is not None:
            (tmp / "config.yaml").write_text(config_text, encoding="utf-8")
        torch.save({"state_dict": state}, tmp / "model.pt")
        with atomic_write(tmp / "export.json") as f:
            json.dump(info, f, indent=1)
        stamp.mark(tmp, *export_inputs(model_dir, checkpoint, config_text))
    log.info("exported %s + %s -> %s", model_dir, checkpoint, out)
    return out


def uses_lora(stage_dir: Path) -> bool:
    """Whether the stage in ``stage_dir`` trained LoRA weights (funasr's saved
    ``config.yaml`` says so)."""
    from .lora import read_config

    cfg = Path(stage_dir) / "config.yaml"
    return cfg.is_file() and bool((read_config(cfg).get("llm_conf") or {}).get("use_lora"))


def export_stage(model_dir: Path, stage_dir: Path, out: Path | None = None,
                 checkpoint: str = "final.pt") -> Path:
    """A training stage's standalone model dir (default ``STAGE_DIR/model``):
    ``model_dir``'s files with the stage's chosen checkpoint as ``model.pt``;
    a LoRA stage with the adapter folded into its LLM (and ``peft_adapter/``).
    Every stage thus ships, and is decoded, as the same kind of directory."""
    stage_dir = Path(stage_dir)
    out = Path(out) if out is not None else stage_dir / "model"
    ckpt = stage_dir / checkpoint
    if not ckpt.is_file():
        raise DataError(f"{ckpt}: the stage has no chosen checkpoint; did it finish? (see its "
                        f"log)")
    if uses_lora(stage_dir):
        from .lora import merge_lora
        log.info("%s trained LoRA: merged into %s", stage_dir, out)
        return merge_lora(model_dir, ckpt, stage_dir / "config.yaml", out)
    return export_model(Path(model_dir), ckpt, out)
