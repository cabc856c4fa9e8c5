"""Fun-ASR-Nano decoding options reach the model's prompt (they are prompt text for it)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from funasr_recipe.decoding import Item, decode, duration_batches, load_model, read_hotwords
from funasr_recipe.errors import DataError
from funasr_recipe.nano import build_prompt
from funasr_recipe.twin_nano import load_arch, make_nano_twin
from helpers import ROOT

import decode as decode_tool  # local/decode.py


@pytest.fixture(scope="module")
def nano_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("nanodec")
    twin = make_nano_twin(d / "twin", load_arch(ROOT / "conf" / "nano" / "twin.yaml"), seed=0)
    items = []
    for i in range(3):
        wav = d / f"u{i}.wav"
        t = np.arange(int((0.8 + 0.2 * i) * 16000)) / 16000
        sf.write(str(wav), (0.1 * np.sin(2 * np.pi * (150 + 50 * i) * t)).astype("float32"), 16000)
        items.append(Item(f"u{i}", str(wav), 0.8 + 0.2 * i))
    return load_model(twin), items


def spy_prompts(monkeypatch, model) -> list[str]:
    """Record the user prompt every generate() call builds."""
    seen: list[str] = []
    cls = type(model.model)
    orig = cls.get_prompt

    def get_prompt(self, hotwords, language=None, itn=True):
        prompt = orig(self, hotwords, language, itn)
        seen.append(prompt)
        return prompt
    monkeypatch.setattr(cls, "get_prompt", get_prompt)
    return seen


def options(conf: dict, **cli) -> dict:
    args = argparse.Namespace(family="nano", hotwords=None, language=None, itn=None,
                              conf=Path("train.yaml"))
    for k, v in cli.items():
        setattr(args, k, v)
    return decode_tool.generate_options(args, conf)[0]


@pytest.mark.parametrize("conf, cli, expect", [
    ({}, {}, build_prompt()),
    ({"prompt": {"language": "中文"}}, {}, build_prompt("中文")),
    ({"prompt": {"itn": False}}, {}, build_prompt(itn=False)),
    ({"prompt": {"itn": False}}, {"itn": "true", "language": "英文"}, build_prompt("英文")),
    ({}, {"hotwords": "阿司匹林,心电图"}, build_prompt(hotwords=["阿司匹林", "心电图"])),
])
@pytest.mark.slow
def test_options_reach_the_prompt(monkeypatch, nano_model, conf, cli, expect):
    model, items = nano_model
    seen = spy_prompts(monkeypatch, model)
    results = decode(model, duration_batches(items, 2), options=options(conf, **cli))
    assert sorted(results) == ["u0", "u1", "u2"]
    assert seen and all(p == expect for p in seen), seen


def test_hotwords_from_a_file_and_refused_for_paraformer(tmp_path):
    f = tmp_path / "hot.txt"
    f.write_text("阿司匹林\n\n 心电图 \n", encoding="utf-8")
    assert read_hotwords(str(f)) == ["阿司匹林", "心电图"]
    assert read_hotwords("a, b") == ["a", "b"]
    args = argparse.Namespace(family="paraformer", hotwords="a", language=None, itn=None, conf=None)
    with pytest.raises(DataError, match="SeACo"):
        decode_tool.generate_options(args, {})


def test_paraformer_itn_is_applied_to_the_output():
    args = argparse.Namespace(family="paraformer", hotwords=None, language=None, itn="true",
                              conf=None)
    assert decode_tool.generate_options(args, {}) == ({}, True)
    args.itn = None
    assert decode_tool.generate_options(args, {}) == ({}, False)


@pytest.mark.slow
def test_each_utterance_decodes_with_its_own_hotword_list(monkeypatch, nano_model):
    """hotword_eval: per-utterance lists (on, distractor-only) reach the prompt as
    build_prompt builds them for training; an empty list is the plain prompt."""
    from funasr_recipe.hotword_eval import condition_lists, decode_condition

    model, items = nano_model
    terms = ["心电图", "血压", "高血压", "胰岛素", "阿司匹林", "insulin"]
    texts = {"u0": "他有高血压", "u1": "今天天气很好", "u2": "打了胰岛素"}
    lists = condition_lists(texts, terms, 2, seed=0)
    assert not set(lists["distractors"]["u1"]) & {"高血压", "胰岛素"}
    for cond in ("on", "distractors", "off"):
        seen = spy_prompts(monkeypatch, model)
        results = decode_condition(model, items, lists[cond], {"language": None, "itn": True})
        assert sorted(results) == ["u0", "u1", "u2"]
        assert sorted(seen) == sorted({build_prompt(hotwords=lists[cond][k]) for k in texts}), cond
        monkeypatch.undo()
    assert "高血压" in lists["on"]["u0"] and "高血压" not in lists["distractors"]["u0"]
