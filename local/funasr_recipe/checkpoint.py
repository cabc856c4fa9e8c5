"""The one reader of model checkpoints (``model.pt``, ``model.pt.ep<N>``,
``model.pt.avg<N>``, an export's or a user's).

Every checkpoint the recipe opens goes through :func:`load_state`: torch's
safe unpickler (``weights_only=True``: a checkpoint from a user cannot run
code), funasr's layouts unwrapped (``{"state_dict": ...}`` as funasr's
trainer and the released models save it, ``{"model_state_dict": ...}``,
``{"model": ...}``, or a bare state dict; DDP's ``module.`` prefix removed),
and a torn or foreign file is a :class:`DataError` naming it and what to do.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

from .errors import DataError

#: Keys under which funasr (and common trainers) nest the model's weights.
#: ("module": DeepSpeed's mp_rank_00_model_states.pt.)
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")


def _torch_load(p: Path, mmap: bool):
    import torch

    if mmap:
        try:
            return torch.load(str(p), map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError:  # not a zip-format file (mmap unsupported): read it whole
            pass
    return torch.load(str(p), map_location="cpu", weights_only=True)


def load_state(path: str | os.PathLike, mmap: bool = False) -> dict:
    """The model weights (name -> tensor) of the checkpoint file ``path``.

    ``mmap``: map the tensors instead of reading them (cheap for a large
    model when only names or a few tensors are needed).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: checkpoint not found")
    try:
        obj = _torch_load(p, mmap)
    except pickle.UnpicklingError as e:
        code = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if not code:
            raise DataError(f"{p}: not a torch checkpoint (torch cannot unpickle it); is it "
                            f"the right file?") from None
        raise DataError(f"{p}: refers to code ({code.group(1)}) beside its tensors, which "
                        f"torch's safe loader (weights_only=True) does not run; where you "
                        f"trust the file, load it and save only its state_dict with "
                        f"torch.save") from None
    except Exception as e:  # torn zip, truncated pickle, another kind of file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{p}: not a readable torch checkpoint ({first}); a file cut short by "
                        f"an interrupted save or not a checkpoint: remove it, or use an "
                        f"earlier epoch's") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise DataError(f"{p}: not a model checkpoint (no state dict inside: expected "
                        f"name -> tensor, or one under {', '.join(WRAPPER_KEYS)})")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def readable(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a checkpoint :func:`load_state` can read (a file
    torn by a crash during ``torch.save`` is not: its zip directory is
    missing). Tensors are memory-mapped, so this is cheap for a large model."""
    try:
        load_state(path, mmap=True)
    except DataError:
        return False
    return True




def replace_weights(state: dict, modules: dict, out: str | os.PathLike) -> dict[str, int]:
    """Write ``out`` (funasr's ``{"state_dict": ...}``): ``state`` with every
    ``<prefix>.*`` weight taken from the state dict of ``modules[prefix]`` (in
    ``state``'s dtype), for each prefix; returns how many were replaced per
    prefix. The other weights are kept as they are."""
    import torch

    from .atomic import atomic_write

    new = dict(state)
    replaced = {}
    for prefix, module in modules.items():
        trained = module.state_dict()
        head = prefix + "."
        replaced[prefix] = 0
        for k in state:
            if k.startswith(head):
                src = trained.get(k[len(head):])
                if src is None:
                    raise DataError(f"the trained {prefix} lacks {k[len(head):]}")
                new[k] = src.detach().to(state[k].dtype).clone()
                replaced[prefix] += 1
    with atomic_write(out, "wb") as f:
        torch.save({"state_dict": new}, f)
    return replaced


__all__ = ["WRAPPER_KEYS", "load_state", "readable", "replace_weights"]
