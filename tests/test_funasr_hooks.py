"""The contract between the recipe and funasr: every attribute the recipe wraps,
replaces or hooks still exists in the installed funasr with the parameters the
recipe relies on; the hooks are installed for a run and all restored after it;
another funasr version is refused unless the user opts in."""

from __future__ import annotations

import inspect

import pytest

from funasr_recipe import funasr_hooks
from funasr_recipe.errors import RunError


@pytest.mark.parametrize("module, path, why, params", funasr_hooks.PATCH_POINTS,
                         ids=[f"{m}:{p}" for m, p, _, _ in funasr_hooks.PATCH_POINTS])
def test_patch_point_exists(module, path, why, params):
    obj = funasr_hooks.resolve(module, path)
    if params:
        names = set(inspect.signature(obj).parameters)
        missing = [p for p in params if p not in names]
        assert not missing, f"{module}.{path} ({why}) lost parameters {missing}"


def test_resolve_fails_for_a_moved_attribute():
    with pytest.raises(AttributeError):
        funasr_hooks.resolve("funasr.bin.train", "no_such_function")


def test_version_check(monkeypatch):
    assert funasr_hooks.check_funasr_version() == funasr_hooks.SUPPORTED_FUNASR
    monkeypatch.setattr(funasr_hooks, "funasr_version", lambda: "9.9.9")
    monkeypatch.delenv(funasr_hooks.ANY_FUNASR_ENV, raising=False)
    with pytest.raises(RunError, match=r"funasr 9\.9\.9 is installed.*funasr==1\.4\.16.*"
                                        r"FUNASR_RECIPE_ANY_FUNASR=1"):
        funasr_hooks.check_funasr_version()
    monkeypatch.setenv(funasr_hooks.ANY_FUNASR_ENV, "1")
    assert funasr_hooks.check_funasr_version() == "9.9.9"


def test_trainer_hooks_are_installed_and_restored():
    import funasr.auto.auto_model as am
    import funasr.bin.train as ft
    import funasr.utils.fbank as fbank_mod
    import torch
    from funasr.models.fun_asr_nano.model import FunASRNano

    from funasr.register import tables
    dataset = tables.dataset_classes["FunASR"]

    def before():
        return (ft.main, ft.Trainer, ft.DDP, am.load_pretrained_model, fbank_mod._fbank_knf,
                FunASRNano.forward, torch.cuda.set_device, torch.nn.Module.cuda,
                dataset.__getitem__)

    orig = before()
    marker = object()
    with funasr_hooks.trainer_hooks(ft, main=lambda f: marker, trainer=lambda c: type("T", (c,), {}),
                                    load=lambda f: marker, cpu_ddp=True, nano_slots=False):
        inside = before()
        assert ft.main is marker and am.load_pretrained_model is marker
        assert issubclass(ft.Trainer, orig[1]) and ft.Trainer is not orig[1]
        assert all(a is not b for a, b in zip(inside, orig))  # every hook is in place
    assert all(a is b for a, b in zip(before(), orig))        # and every one restored
    # not a Nano run: funasr's dataset is left alone
    with funasr_hooks.trainer_hooks(ft, main=lambda f: f, trainer=lambda c: c,
                                    load=lambda f: f, cpu_ddp=False):
        assert dataset.__getitem__ is orig[-1]
    with pytest.raises(RuntimeError):                          # also after an error
        with funasr_hooks.trainer_hooks(ft, main=lambda f: marker, trainer=lambda c: c,
                                        load=lambda f: f, cpu_ddp=False):
            raise RuntimeError("boom")
    assert all(a is b for a, b in zip(before(), orig))
