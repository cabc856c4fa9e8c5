"""CTC pre-training of the Nano twin's encoder: it learns to hear, only the
encoder's weights change, and a re-run with the same inputs is skipped."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from funasr_recipe.checkpoint import load_state
from funasr_recipe.encoder_pretrain import load_encoder_conf, pretrain, units_of
from funasr_recipe.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
ENC_YAML = ROOT / "conf" / "nano" / "encoder.yaml"
TOOL = ROOT / "local" / "pretrain_encoder.py"


def test_units_are_cjk_characters_and_whole_other_words():
    assert units_of("请给病人做CT检查") == ["请", "给", "病", "人", "做", "CT", "检", "查"]
    assert units_of("check the blood-pressure  of 王芳") == ["check", "the", "blood-pressure",
                                                            "of", "王", "芳"]
    assert units_of("") == []


def test_initials_finals_are_the_syllables_the_synthesiser_says():
    """``ctc_units: initials_finals``: each CJK character as the initial and
    the final (with its tone) of espeak-ng's Mandarin syllable, a glide after a
    consonant in the final; other words whole; a character that is not one
    syllable its own unit."""
    from funasr_recipe.encoder_pretrain import syllable_units

    assert syllable_units("西") == ["ɕ_", "i5"]
    assert syllable_units("床") == ["ts.h_", "wɑɜŋ"]      # the glide w starts the final
    assert syllable_units("五") == ["w_", "u2"]           # w as the initial
    assert units_of("血压 CT 检查", "initials_finals") == ["ɕ_", "yɛ5", "j_", "iɑ5", "CT", "tɕ_",
                                                        "iɛ2n", "ts.h_", "ɑɜ"]
    # words the general pool never holds share its initials and finals: 压 (domain)
    # ends like 下, 血 starts like 西
    assert units_of("下", "initials_finals")[1] == units_of("压", "initials_finals")[1]
    assert units_of("西", "initials_finals")[0] == units_of("血", "initials_finals")[0]
    assert units_of("check the 王芳", "initials_finals")[:2] == ["check", "the"]
    assert units_of("", "initials_finals") == []
    with pytest.raises(ValueError, match="ctc_units"):
        units_of("西", "phones")


def test_the_shipped_config_loads_and_bad_ones_are_named(tmp_path):
    conf = load_encoder_conf(ENC_YAML)
    assert conf.epochs > 0 and 0 < conf.warmup_fraction < 1
    raw = yaml.safe_load(ENC_YAML.read_text())
    for bad, match in ((dict(raw, epoch=3), "unknown key.*epoch"),
                       ({k: v for k, v in raw.items() if k != "lr"}, "missing key.*lr"),
                       (dict(raw, warmup_fraction=1.0), "warmup_fraction"),
                       (dict(raw, batch_size=0), "batch_size"),
                       (dict(raw, ctc_units="phones"), "ctc_units.*chars, initials_finals")):
        (tmp_path / "enc.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(DataError, match=match):
            load_encoder_conf(tmp_path / "enc.yaml")


def _tones(folder: Path, n: int) -> Path:
    """A Kaldi data dir of ``n`` utterances: two or three tones, high (高) or low (低)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    wav_scp, text = [], []
    t = np.arange(int(0.3 * 16000)) / 16000
    for i in range(n):
        word = "".join(rng.choice(["高", "低"], size=2 + i % 2))
        parts = []
        for ch in word:
            f0 = 1200.0 if ch == "高" else 300.0
            parts += [0.2 * np.sin(2 * np.pi * f0 * t), np.zeros(1600)]
        x = np.concatenate([np.zeros(1600), *parts]) + 0.01 * rng.standard_normal(
            1600 + len(parts) // 2 * (len(t) + 1600))
        path = folder / f"u{i:02d}.wav"
        sf.write(str(path), x.astype("float32"), 16000, subtype="PCM_16")
        wav_scp.append(f"u{i:02d} {path}\n")
        text.append(f"u{i:02d} {word}\n")
    (folder / "wav.scp").write_text("".join(wav_scp), encoding="utf-8")
    (folder / "text").write_text("".join(text), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    from funasr_recipe.twin_nano import load_arch, make_nano_twin

    out = tmp_path_factory.mktemp("twin") / "nano"
    make_nano_twin(out, load_arch(ROOT / "conf" / "nano" / "twin.yaml"), seed=3)
    return out


@pytest.mark.slow
def test_it_learns_to_hear_and_only_the_encoder_changes(twin, tmp_path):
    data = _tones(tmp_path / "tones", 24)
    conf = dataclasses.replace(load_encoder_conf(ENC_YAML), epochs=30, batch_size=8,
                               lr=0.005, time_masks=0, report_every=30, adaptor_epochs=0,
                               ctc_units="chars")
    info = pretrain(twin, twin / "model.pt", conf, data, tmp_path / "out", {"same": data})
    assert not (tmp_path / "out" / "adaptor_log.tsv").exists() and not info["adaptor_epochs"]
    first, last = info["epochs"][0]["same_error"], info["epochs"][-1]["same_error"]
    assert first > 60 and last < 20, (first, last)
    before, after = load_state(twin / "model.pt"), load_state(tmp_path / "out" / "init.pt")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("audio_encoder.") for k in changed)
    assert info["encoder_weights_replaced"] == sum(k.startswith("audio_encoder.") for k in before)
    assert (tmp_path / "out" / "units.txt").read_text(encoding="utf-8").split() == ["低", "高"]
    rows = (tmp_path / "out" / "log.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["epoch", "train_loss", "seconds", "same_error"]

    # negative control: the same run with the learning rate 0 learns nothing
    frozen = pretrain(twin, twin / "model.pt", dataclasses.replace(conf, lr=0.0), data,
                      tmp_path / "frozen", {"same": data})
    assert frozen["epochs"][-1]["same_error"] > 60
    assert all(torch.equal(v, load_state(tmp_path / "frozen" / "init.pt")[k])
               for k, v in before.items())

    # the CLI: the same inputs are skipped; a changed option redoes it
    mtime = (tmp_path / "out" / "init.pt").stat().st_mtime_ns
    (tmp_path / "enc.yaml").write_text(yaml.safe_dump(dataclasses.asdict(conf)))
    cmd = [sys.executable, str(TOOL), "--model-dir", str(twin), "--conf",
           str(tmp_path / "enc.yaml"), "--train-dir", str(data), "--report", f"same={data}",
           "--threads", "1", "--out", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stderr and (tmp_path / "out" / "init.pt").stat().st_mtime_ns == mtime
    assert f"greedy CTC error same: {first:.1f}% -> {last:.1f}%" in r.stdout
    assert json.loads((tmp_path / "out" / "encoder_info.json").read_text())["units"] == 2
    r = subprocess.run(cmd[:-2] + ["--report", "bad", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "expected NAME=DATA_DIR" in r.stderr

    # initials and finals: 高 = k_ ɑu5, 低 = t_ i5; scored as units
    syl = pretrain(twin, twin / "model.pt", dataclasses.replace(conf, ctc_units="initials_finals"),
                   data, tmp_path / "syl", {"same": data})
    assert (tmp_path / "syl" / "units.txt").read_text(encoding="utf-8").split() == sorted(
        ["k_", "ɑu5", "t_", "i5"])
    first, last = syl["epochs"][0]["same_error"], syl["epochs"][-1]["same_error"]
    assert first > 60 and last < 20, (first, last)


def test_the_embedding_ctc_scores_the_nearest_row_highest():
    from funasr_recipe.encoder_pretrain import EmbeddingCTC

    table = torch.randn(50, 8)
    ctc = EmbeddingCTC(table, [0, 7, 3, 42])
    a = table[[42, 0, 7, 3]] + 0.01 * torch.randn(4, 8)
    assert ctc.logits(a).argmax(-1).tolist() == [3, 0, 1, 2]
    assert ctc.index[42] == 3 and torch.equal(ctc.table[1], table[7])


@pytest.mark.slow
def test_the_adaptor_learns_to_write_the_llm_embeddings_of_what_is_heard(twin, tmp_path):
    """The head start: after it, greedy CTC over the LLM's embedding rows reads
    the tones (高/低) from the adaptor's outputs; only the encoder and the
    adaptor change (the LLM, its table included, does not); learning rate 0
    leaves the adaptor as it was (negative control)."""
    data = _tones(tmp_path / "tones", 24)
    conf = dataclasses.replace(load_encoder_conf(ENC_YAML), epochs=30, batch_size=8,
                               lr=0.005, time_masks=0, report_every=30, adaptor_epochs=30,
                               adaptor_lr=0.01, ctc_units="chars")
    info = pretrain(twin, twin / "model.pt", conf, data, tmp_path / "out", {"same": data},
                    units="chars")
    first, last = info["adaptor_epochs"][0]["same_error"], info["adaptor_epochs"][-1]["same_error"]
    assert first > 60 and last < 20, (first, last)
    assert info["adaptor_units"] == "chars"
    before, after = load_state(twin / "model.pt"), load_state(tmp_path / "out" / "init.pt")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adaptor = {k for k in before if k.startswith("audio_adaptor.")}
    assert adaptor and adaptor <= changed
    assert all(k.startswith(("audio_encoder.", "audio_adaptor.")) for k in changed)
    assert info["adaptor_weights_replaced"] == len(adaptor)
    rows = (tmp_path / "out" / "adaptor_log.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["epoch", "train_loss", "seconds", "same_error"]

    frozen = pretrain(twin, twin / "model.pt", dataclasses.replace(conf, adaptor_lr=0.0), data,
                      tmp_path / "frozen", {"same": data}, units="chars")
    assert frozen["adaptor_epochs"][-1]["same_error"] > 60
    kept = load_state(tmp_path / "frozen" / "init.pt")
    assert all(torch.equal(before[k], kept[k]) for k in adaptor)
