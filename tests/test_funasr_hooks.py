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
                am.AutoModel._store_base_configs, dataset.__getitem__)

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


def test_the_shared_snapshot_is_funasrs_with_the_immutables_shared():
    """store_base_configs snapshots what funasr's own does (equal values, no
    mutable dict or list shared with the live kwargs), except that the
    tokenizer/frontend/model are the live objects, as funasr's reset restores
    them; and a reset after a generate()-time change restores the snapshot."""
    from funasr.auto.auto_model import AutoModel

    class Tokenizer:                  # stands in for the Qwen3 tokenizer
        def __init__(self):
            self.vocab = {"a": 1}

        def __eq__(self, other):
            return isinstance(other, Tokenizer) and other.vocab == self.vocab

    def make():
        m = object.__new__(AutoModel)
        m.kwargs = {"tokenizer": Tokenizer(), "frontend": Tokenizer(), "batch_size": 1,
                    "frontend_conf": {"dither": 0.0}, "token_list": ["a", "b"],
                    "ncpu": 2, "device": "cpu"}
        m.vad_kwargs, m.punc_kwargs, m.spk_kwargs = {"max": 1}, {}, {}
        return m

    theirs, ours = make(), make()
    AutoModel._store_base_configs(theirs)
    funasr_hooks.store_base_configs(ours)
    a, b = theirs._base_kwargs_map, ours._base_kwargs_map
    assert a.keys() == b.keys() and a == b
    for name, snap in b.items():
        live = getattr(ours, name)
        for k, v in snap.items():
            if isinstance(v, (dict, list, Tokenizer)):
                assert (v is live[k]) == (k in AutoModel._IMMUTABLE_KWARGS_KEYS), (name, k)
    assert ours.kwargs["tokenizer"] is ours._base_kwargs_map["kwargs"]["tokenizer"]
    ours.kwargs["frontend_conf"]["dither"] = 1.0     # as a generate() option would
    ours.kwargs["batch_size"] = 8
    ours._reset_runtime_configs()
    assert ours.kwargs["frontend_conf"] == {"dither": 0.0} and ours.kwargs["batch_size"] == 1
    with funasr_hooks.shared_immutables():
        assert AutoModel._store_base_configs is funasr_hooks.store_base_configs
    assert AutoModel._store_base_configs is not funasr_hooks.store_base_configs
