"""Every place where the recipe changes how funasr behaves, installed in one place.

funasr is used as a library, never forked: where the recipe needs funasr's
trainer to do more (verify the checkpoint it loads, validate on extra sets,
save random states, run DDP without CUDA, compute the LLM output only where
labels are) it replaces or wraps an attribute of funasr (or of torch) for the
duration of one training run, and puts the original back afterwards.

* :data:`PATCH_POINTS` lists each attribute, what the recipe does to it and
  why; ``tests/test_funasr_hooks.py`` checks that every one of them still
  exists in the installed funasr with the parameters the recipe relies on,
  so a funasr upgrade that moves one fails a test instead of a training run.
* :func:`check_funasr_version` refuses a funasr other than
  :data:`SUPPORTED_FUNASR` (the version these hooks were written and tested
  against) with a clear message; ``FUNASR_RECIPE_ANY_FUNASR=1`` lets a user
  try another one anyway.
* :func:`trainer_hooks` installs the trainer's hooks and restores them on exit.

docs/funasr-hooks.md explains each hook and what to re-check when bumping funasr.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

from .errors import RunError

SUPPORTED_FUNASR = "1.4.16"
ANY_FUNASR_ENV = "FUNASR_RECIPE_ANY_FUNASR"

#: (module, attribute path, what the recipe does, the parameters it relies on)
PATCH_POINTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("funasr.bin.train", "main", "wrapped: keeps the run's settings for the extra valid sets",
     ()),
    ("funasr.bin.train", "main_hydra", "called: the trainer's command-line entry", ()),
    ("funasr.bin.train", "Trainer", "subclassed: extra valid sets, random states with each "
     "checkpoint, DeepSpeed's device on CPU", ()),
    ("funasr.bin.train", "DDP", "wrapped without CUDA: DDP over gloo with device_ids=None", ()),
    ("funasr.bin.train_ds", "main", "wrapped, as funasr.bin.train's", ()),
    ("funasr.bin.train_ds", "Trainer", "subclassed, as funasr.bin.train's", ()),
    ("funasr.auto.auto_model", "load_pretrained_model",
     "wrapped: the chain check compares what was loaded with the init checkpoint",
     ("path", "model")),
    ("funasr.train_utils.trainer", "Trainer.save_checkpoint", "extended: random states",
     ("epoch",)),
    ("funasr.train_utils.trainer", "Trainer.resume_checkpoint", "extended: random states", ()),
    ("funasr.train_utils.trainer", "Trainer.validate_epoch", "extended: extra valid sets, "
     "metrics.tsv", ("model", "dataloader_val", "epoch", "writer")),
    ("funasr.train_utils.trainer", "Trainer.train_epoch", "extended: the valid sets before "
     "the first step", ("model", "dataloader_val", "epoch")),
    ("funasr.train_utils.trainer", "Trainer.log", "extended: metrics.tsv",
     ("epoch", "batch_idx", "lr", "loss", "stats", "tag")),
    ("funasr.train_utils.trainer_ds", "Trainer.log", "extended: metrics.tsv",
     ("loss_dict", "tag")),
    ("funasr.train_utils.trainer_ds", "Trainer.train_epoch", "extended, as trainer.py's",
     ("model", "dataloader_val", "epoch")),
    ("funasr.train_utils.average_nbest_models", "average_checkpoints",
     "reproduced (budget.average): the forgetting budget averages its choice as funasr does",
     ("output_dir", "last_n")),
    ("funasr.utils.fbank", "_fbank_knf", "wrapped: dither drawn from torch's generator",
     ("waveform",)),
    ("funasr.models.fun_asr_nano.model", "FunASRNano.forward",
     "wrapped: the LLM's output layer only at labelled positions", ()),
    ("funasr.register", "tables.dataset_classes.FunASR.__getitem__",
     "wrapped for a Nano run (nano_slots.py): audio slots in training counted as decoding "
     "counts them", ("self", "index")),
    ("funasr.register", "tables.model_classes.Paraformer",
     "an encoder forward hook (decoding.py): padded frames zeroed in batched decoding", ()),
    ("funasr.auto.auto_model", "AutoModel._store_base_configs",
     "replaced while an AutoModel is built (training and decoding): the same snapshot, with "
     "the tokenizer, frontend and model shared instead of deep-copied", ("self",)),
    ("funasr.auto.auto_model", "AutoModel._IMMUTABLE_KWARGS_KEYS",
     "read: the kwargs funasr's reset restores by reference", ()),
    ("torch.cuda", "set_device", "a no-op in CPU DDP (funasr calls it unconditionally)", ()),
    ("torch.nn", "Module.cuda", "a no-op in CPU DDP (funasr calls it unconditionally)", ()),
)


def funasr_version() -> str:
    from importlib.metadata import version
    return version("funasr")


def check_funasr_version() -> str:
    """The installed funasr's version; :class:`DataError` if it is not the supported one
    (unless ``FUNASR_RECIPE_ANY_FUNASR=1``)."""
    found = funasr_version()
    if found != SUPPORTED_FUNASR and os.environ.get(ANY_FUNASR_ENV) != "1":
        raise RunError(f"funasr {found} is installed, but the recipe's hooks into funasr's "
                       f"trainer were written and tested for funasr {SUPPORTED_FUNASR} "
                       f"(pyproject.toml pins it). Install funasr=={SUPPORTED_FUNASR}, or set "
                       f"{ANY_FUNASR_ENV}=1 to try {found} anyway (then run "
                       f"tests/test_funasr_hooks.py first; docs/funasr-hooks.md says what to "
                       f"re-check)")
    return found


def resolve(module: str, path: str) -> Any:
    """The object at ``module`` + dotted ``path`` (AttributeError if it moved)."""
    import importlib

    import funasr  # noqa: F401  (fills funasr's registry tables)
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


@contextlib.contextmanager
def replaced(obj: Any, name: str, new: Any) -> Iterator[Any]:
    """``obj.name = new`` for the duration; the original is yielded and put back."""
    orig = getattr(obj, name)
    setattr(obj, name, new)
    try:
        yield orig
    finally:
        setattr(obj, name, orig)


@contextlib.contextmanager
def trainer_hooks(ft: Any, *, main: Callable[[Callable], Callable],
                  trainer: Callable[[type], type], load: Callable[[Callable], Callable],
                  cpu_ddp: bool, nano_slots: bool | None = None) -> Iterator[None]:
    """Install the training hooks into funasr's trainer module ``ft``
    (``funasr.bin.train`` or ``funasr.bin.train_ds``) and restore every one on exit.

    ``main``, ``trainer`` and ``load`` build the wrapper of ``ft.main``, the
    subclass of ``ft.Trainer`` and the wrapper of funasr's
    ``load_pretrained_model`` from the originals; ``cpu_ddp``: this is a
    distributed run on a machine without CUDA; ``nano_slots``: for a
    Fun-ASR-Nano run, the adaptor's ``use_low_frame_rate``, and funasr's
    ``FunASR`` dataset counts audio slots as decoding does
    (:mod:`funasr_recipe.nano_slots`); None leaves the dataset alone.
    """
    check_funasr_version()
    import funasr.auto.auto_model as am
    import funasr.utils.fbank as fbank_mod
    import torch

    from .target_logits import target_logits_forward

    with contextlib.ExitStack() as stack:
        stack.enter_context(replaced(ft, "main", main(ft.main)))
        stack.enter_context(replaced(ft, "Trainer", trainer(ft.Trainer)))
        stack.enter_context(replaced(am, "load_pretrained_model", load(am.load_pretrained_model)))
        stack.enter_context(replaced(fbank_mod, "_fbank_knf", torch_dither(fbank_mod._fbank_knf)))
        stack.enter_context(shared_immutables())
        from funasr.models.fun_asr_nano.model import FunASRNano
        stack.enter_context(replaced(FunASRNano, "forward",
                                     target_logits_forward(FunASRNano.forward)))
        if nano_slots is not None:
            from funasr.register import tables

            from .nano_slots import announce, slot_getitem
            dataset = tables.dataset_classes["FunASR"]
            stack.enter_context(replaced(dataset, "__getitem__",
                                         slot_getitem(dataset.__getitem__, nano_slots)))
            announce(nano_slots)
        if cpu_ddp:
            orig_ddp = ft.DDP

            def cpu_ddp_wrapper(module, *args, device_ids=None, **kwargs):
                return orig_ddp(module, *args, device_ids=None, **kwargs)
            stack.enter_context(replaced(ft, "DDP", cpu_ddp_wrapper))
            stack.enter_context(replaced(torch.cuda, "set_device", lambda *a, **k: None))
            stack.enter_context(replaced(torch.nn.Module, "cuda", lambda self, *a, **k: self))
        yield


def store_base_configs(self) -> None:
    """funasr 1.4.16's ``AutoModel._store_base_configs`` (the snapshot its
    ``_reset_runtime_configs`` restores before every ``generate()``), with the
    kwargs of ``_IMMUTABLE_KWARGS_KEYS`` (tokenizer, frontend, model, ...)
    shared rather than deep-copied: the reset puts exactly those back by
    reference anyway, and deep-copying the Qwen3 tokenizer (151,643 tokens)
    twice cost 2-3 s of every training and decoding start on 2 cores."""
    import copy

    keep = type(self)._IMMUTABLE_KWARGS_KEYS

    def snapshot(d: dict) -> dict:
        memo = {id(v): v for k, v in d.items() if k in keep}
        return copy.deepcopy(d, memo)

    baseline = {}
    for name in dir(self):
        if not name.endswith("kwargs"):
            continue
        value = getattr(self, name, None)
        if isinstance(value, dict):
            baseline[name] = snapshot(value)
    baseline["kwargs"] = snapshot(self.kwargs)
    self._base_kwargs_map = baseline


@contextlib.contextmanager
def shared_immutables() -> Iterator[None]:
    """:func:`store_base_configs` in place of funasr's for the duration."""
    from funasr.auto.auto_model import AutoModel

    with replaced(AutoModel, "_store_base_configs", store_base_configs):
        yield


def torch_dither(orig: Callable) -> Callable:
    """funasr's kaldi-native-fbank call with the dither noise drawn from torch.

    funasr's WavFrontend dithers while training (``dither: 1.0``, Gaussian
    noise of that standard deviation on the int16-scaled samples). Without
    torchaudio funasr computes features with kaldi-native-fbank, whose dither
    comes from a generator inside the C++ extension, seeded once per process
    and unreachable from Python: a resumed run would draw other noise than an
    uninterrupted one. Here the same noise (std ``dither``) is added to the
    waveform from torch's generator, whose state is saved with every
    checkpoint, and kaldi-native-fbank is called with ``dither=0`` (Kaldi adds
    it per frame, so samples shared by overlapping frames now share their
    noise: for dither's purpose, keeping log energies of digital silence
    finite, the same).
    """
    def fbank_knf(waveform, *args, dither: float = 0.0, **kwargs):
        import torch
        if dither:
            waveform = waveform + float(dither) * torch.randn_like(waveform)
        return orig(waveform, *args, dither=0.0, **kwargs)
    return fbank_knf


__all__ = ["SUPPORTED_FUNASR", "ANY_FUNASR_ENV", "PATCH_POINTS", "funasr_version",
           "check_funasr_version", "resolve", "replaced", "trainer_hooks", "torch_dither",
           "store_base_configs", "shared_immutables"]
