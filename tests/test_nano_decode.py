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


def test_token_budget_grows_with_the_seconds_up_to_the_cap_and_is_nano_only():
    from funasr_recipe.decoding import token_budget

    b = token_budget("nano", {"max_new_tokens": 60, "max_new_tokens_per_second": 20})
    assert [b(s) for s in (0.0, 0.5, 2.01, 100.0)] == [10, 20, 51, 60]
    assert token_budget("nano", {"max_new_tokens": 30})(100.0) == 30
    assert token_budget("nano", {"max_new_tokens_per_second": 20})(100.0) == 512  # funasr's cap
    assert token_budget("nano", {}) is None
    assert token_budget("paraformer", {"batch_size": 4}) is None
    with pytest.raises(DataError, match="Fun-ASR-Nano decoding settings"):
        token_budget("paraformer", {"max_new_tokens_per_second": 20})
    for bad in (0, -3, "20", True):
        with pytest.raises(DataError, match="a positive number, or null"):
            token_budget("nano", {"max_new_tokens_per_second": bad})


def test_each_generate_call_gets_the_budget_of_its_longest_utterance():
    from funasr_recipe.decoding import token_budget

    class Fake:
        calls: list = []

        def generate(self, input, key=None, **kw):
            self.calls.append((list(key), kw.get("max_length")))
            return [{"key": k, "text": "x"} for k in key]

    items = [Item(f"u{i}", f"/a/u{i}.wav", d) for i, d in enumerate((0.5, 3.0, 1.0, 2.0))]
    model = Fake()
    out = decode(model, duration_batches(items, 2), options={"itn": True},
                 budget=token_budget("nano", {"max_new_tokens_per_second": 10}))
    assert sorted(out) == ["u0", "u1", "u2", "u3"]
    assert model.calls == [(["u1", "u3"], 40), (["u2", "u0"], 20)]
    model.calls.clear()
    decode(model, duration_batches(items, 2))  # no budget: funasr's own max_length
    assert [m for _, m in model.calls] == [None, None]


@pytest.mark.slow
def test_the_budget_cuts_a_hypothesis_that_does_not_end_and_keeps_its_start(monkeypatch,
                                                                            nano_model):
    # the random twin never says its end token: it writes until max_length
    from funasr_recipe.decoding import token_budget

    model, items = nano_model
    llm = model.model.llm
    lengths: list[int] = []
    orig = llm.generate

    def generate(*a, **kw):
        out = orig(*a, **kw)
        lengths.append(int(out.shape[1]))
        return out
    monkeypatch.setattr(llm, "generate", generate)
    budget = token_budget("nano", {"max_new_tokens_per_second": 5})
    cut = decode(model, duration_batches(items, 1), budget=budget)
    cut_lengths, lengths[:] = list(lengths), []
    full = decode(model, duration_batches(items, 1),
                  budget=token_budget("nano", {"max_new_tokens": 100}))
    order = [it.dur for batch in duration_batches(items, 1) for it in batch]
    assert cut_lengths == [budget(d) for d in order]          # cut at each one's budget
    assert lengths == [100] * 3                                # the control runs on
    for k in cut:  # greedy: the budgeted hypothesis is the start of the longer one
        assert cut[k]["text"] and full[k]["text"].startswith(cut[k]["text"][:-1]), k


def test_item_budgets_give_each_utterance_its_batchs_budget_as_the_decode_forms_them():
    from funasr_recipe.decoding import item_budgets

    items = [Item(f"u{i}", f"/a/u{i}.wav", d) for i, d in enumerate((0.5, 3.0, 1.0, 2.0))]
    dec = {"batch_size": 2, "max_new_tokens_per_second": 10}
    assert item_budgets(items, dec) == {"u1": 40, "u3": 40, "u2": 20, "u0": 20}
    assert item_budgets(items, dict(dec, batch_size=1)) == {"u0": 15, "u1": 40, "u2": 20,
                                                            "u3": 30}
    assert item_budgets(items, {"batch_size": 2}) is None


def test_the_hotword_comparison_decodes_with_stage_6s_settings(tmp_path, monkeypatch):
    """hotword_eval's "off" condition is stage 6's decode of the same model: the
    decode conf's token budget reaches every generate() call, its batch size
    and dither too (before, funasr's 512-token default let a looping
    hypothesis run on, and the "off" row disagreed with the main table)."""
    import funasr_recipe.decoding as decoding
    from funasr_recipe.datadir import Utt, write_datadir
    from funasr_recipe.hotword_eval import run

    utts = []
    for i, secs in enumerate((0.5, 3.0, 1.0, 2.0, 1.5)):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, np.zeros(int(secs * 16000), dtype=np.float32), 16000)
        utts.append(Utt(f"u{i}", "s", str(wav), "打了胰岛素" if i % 2 else "今天天气很好", secs))
    write_datadir(tmp_path / "data", utts)
    terms = tmp_path / "terms.txt"
    terms.write_text("胰岛素\n血压\n", encoding="utf-8")
    dec = decoding.decode_settings(ROOT / "conf" / "nano" / "decode.yaml",
                                   ["batch_size=2", "max_new_tokens_per_second=10"])
    budget = decoding.token_budget("nano", dec)
    loaded, calls = {}, []

    class Fake:
        def generate(self, input, key=None, **kw):
            calls.append((tuple(key), kw.get("max_length"), tuple(kw.get("hotwords") or ())))
            return [{"key": k, "text": "今天"} for k in key]

    def fake_load(model_dir, checkpoint=None, device="cpu", threads=1, dither=0.0, **kw):
        loaded["dither"] = dither
        return Fake()

    monkeypatch.setattr(decoding, "load_model", fake_load)
    run(tmp_path / "model", tmp_path / "data", terms, tmp_path / "out",
        {"language": None, "itn": True}, 1, conditions=["off", "on"], n_resamples=10, dec=dec)
    assert loaded["dither"] == dec["dither"] == 0.0
    dur = {u.key: u.dur for u in utts}
    assert calls and all(len(keys) <= 2 for keys, _, _ in calls)
    for keys, max_length, _ in calls:
        assert max_length == max(budget(dur[k]) for k in keys), (keys, max_length)
    off = [c for c in calls if not c[2]]
    items = [Item(u.key, u.wav, u.dur) for u in utts]
    calls.clear()
    decoding.decode(Fake(), duration_batches(items, 2), options={}, budget=budget)
    assert sorted(off) == sorted(calls)  # the same batches and budgets as stage 6's decode
