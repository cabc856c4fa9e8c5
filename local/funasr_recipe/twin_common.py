"""What every tiny twin writer shares (``twin_paraformer``, ``twin_nano``).

A twin directory is written the same way for every family: the
architecture overrides are read from ``conf/<family>/twin.yaml``
(:func:`load_arch`) and merged into the released config
(:func:`deep_merge`); a sha256 over everything the twin is made from decides
whether an existing directory can be kept (:func:`twin_is_complete`);
otherwise :func:`begin_twin` makes the directory look incomplete, the family
writes its files atomically, and :func:`finish_twin` writes
``twin_info.json`` and the stamp last.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import yaml

from . import stamp
from .atomic import atomic_write
from .errors import DataError

log = logging.getLogger(__name__)

INFO_FILE = "twin_info.json"


def load_arch(path: str | os.PathLike) -> dict:
    """Read a twin's architecture overrides (``conf/<family>/twin.yaml``)."""
    try:
        with open(path, encoding="utf-8") as f:
            arch = yaml.safe_load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; pass the twin's architecture config "
                        f"(e.g. conf/paraformer/twin.yaml)") from None
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from None
    if arch is None:
        return {}
    if not isinstance(arch, dict):
        raise DataError(f"{path}: expected a mapping of config sections, got {type(arch).__name__}")
    return arch


def deep_merge(base: dict, over: dict) -> dict:
    """A copy of ``base`` with ``over`` merged in, nested mappings key by key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def count_parameters(model) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in model.parameters())


def twin_is_complete(out_dir: str | os.PathLike, files: Sequence[str],
                     digest: str | None = None) -> bool:
    """True when ``out_dir`` holds every one of ``files`` (and, if given, was
    made from ``digest``)."""
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in files]
    if digest is None:
        return all(f.is_file() for f in paths)
    return not stamp.check(out_dir, [], [digest], paths)


def begin_twin(out_dir: Path) -> None:
    """Create ``out_dir``; an interrupted or different earlier twin must not
    look complete while its files are rewritten."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INFO_FILE).unlink(missing_ok=True)
    stamp.clear(out_dir)


def write_config(out_dir: Path, config: dict, configuration_json: dict) -> None:
    """``config.yaml`` and ``configuration.json``, as funasr's AutoModel reads them."""
    with atomic_write(out_dir / "config.yaml") as f:
        yaml.safe_dump(config, f, allow_unicode=True, sort_keys=False)
    with atomic_write(out_dir / "configuration.json") as f:
        json.dump(configuration_json, f, indent=2)
        f.write("\n")


def save_model(path: Path, state_dict: dict) -> None:
    """``model.pt`` as funasr's released checkpoints hold it: ``{"state_dict": ...}``."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save({"state_dict": state_dict}, f)


def finish_twin(out_dir: Path, info: dict, digest: str) -> None:
    """``twin_info.json``, then the stamp saying the twin is complete for ``digest``."""
    with atomic_write(out_dir / INFO_FILE) as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    stamp.mark(out_dir, [], [digest])


__all__ = ["INFO_FILE", "load_arch", "deep_merge", "count_parameters", "twin_is_complete",
           "begin_twin", "write_config", "save_model", "finish_twin"]
