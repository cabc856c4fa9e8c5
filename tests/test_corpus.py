"""Tests of funasr_recipe.corpus and the local/make_corpus.py tool."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from funasr_recipe import corpus, synth
from funasr_recipe.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "conf" / "corpus.yaml"
TOOL = ROOT / "local" / "make_corpus.py"
ZH_RE = re.compile(r"^[\u4e00-\u9fff]+$")
EN_RE = re.compile(r"^[a-z]+( [a-z]+)*$")


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          cwd=ROOT)


def write_config(path: Path, **changes) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    cfg.update(changes)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("n,text", [
    (0, "零"), (7, "七"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"),
    (110, "一百一十"), (123, "一百二十三"), (1005, "一千零五"), (1050, "一千零五十"),
    (2300, "二千三百"), (9999, "九千九百九十九"),
])
def test_zh_number(n, text):
    assert corpus.zh_number(n) == text


def test_other_number_readings():
    assert corpus.zh_quantity(2) == "两" and corpus.zh_quantity(3) == "三"
    assert corpus.zh_digits(2025) == "二零二五" and corpus.zh_digits(7, 3) == "零零七"
    assert corpus.zh_decimal(385) == "三十八点五" and corpus.zh_decimal(40) == "四点零"
    assert corpus.en_number(0) == "zero"
    assert corpus.en_number(40) == "forty"
    assert corpus.en_number(125) == "one hundred twenty five"
    assert corpus.en_number(300) == "three hundred"
    with pytest.raises(ValueError):
        corpus.zh_number(10000)


# --------------------------------------------------------------------------- texts

def test_generate_texts_is_deterministic_per_seed():
    for pool in corpus.POOLS:
        a = corpus.generate_texts(pool, 200, seed=3)
        assert a == corpus.generate_texts(pool, 200, seed=3)
        assert a != corpus.generate_texts(pool, 200, seed=4)
        assert len(a) == 200


@pytest.mark.parametrize("pool", corpus.POOLS)
def test_transcripts_are_clean_short_and_in_vocabulary(pool):
    vocab = set(corpus.vocabulary())
    texts = corpus.generate_texts(pool, 3000, seed=1)
    for text in texts:
        if corpus.language_of(text) == "en":
            assert EN_RE.match(text), text
            assert 5 <= len(text.split()) <= 10, text
        else:
            assert ZH_RE.match(text), text
            assert 6 <= len(text) <= 15, text
        assert set(corpus.transcript_tokens(text)) <= vocab, text
    n_en = sum(corpus.language_of(t) == "en" for t in texts)
    assert n_en == round(3000 * 0.18)
    assert len(set(texts)) > 0.8 * len(texts)


def test_english_fraction_is_honoured():
    texts = corpus.generate_texts("general", 100, seed=1, english_fraction=0.0)
    assert all(corpus.language_of(t) == "zh" for t in texts)
    texts = corpus.generate_texts("domain", 40, seed=1, english_fraction=0.25)
    assert sum(corpus.language_of(t) == "en" for t in texts) == 10


def test_vocabulary_is_small_and_covers_the_domain():
    vocab = corpus.vocabulary()
    assert vocab == sorted(set(vocab))
    chars = [t for t in vocab if not t.isascii()]
    words = [t for t in vocab if t.isascii()]
    assert 150 <= len(chars) <= 400
    assert 50 <= len(words) <= 200
    assert all(len(c) == 1 for c in chars)
    assert all(w == w.lower() and " " not in w for w in words)
    for term in corpus.domain_terms():
        assert set(corpus.transcript_tokens(term)) <= set(vocab), term
    assert {"心", "电", "图", "胰", "insulin", "blood"} <= set(vocab)


def test_domain_terms_never_in_general_texts():
    terms = corpus.domain_terms()
    assert {"心电图", "血压", "胰岛素", "blood pressure"} <= set(terms)
    for seed in (1, 2):
        for text in corpus.generate_texts("general", 3000, seed=seed):
            assert not [t for t in terms if t in text], text


def test_every_chinese_domain_term_has_a_character_general_never_uses():
    general = set(corpus.pool_vocabulary("general"))
    for term in corpus.domain_terms():
        if not term.isascii():
            assert set(term) - general, term


def test_domain_texts_are_dense_with_terms():
    terms = corpus.domain_terms()
    texts = corpus.generate_texts("domain", 1000, seed=1)
    assert all(any(t in text for t in terms) for text in texts)
    used = {t for t in terms for text in texts if t in text}
    assert used == set(terms)


def test_every_vocabulary_character_is_one_mandarin_syllable():
    chars = [t for t in corpus.vocabulary() if not t.isascii()]
    syllables = synth.phonemes("，".join(chars), "cmn").split()
    assert len(syllables) == len(chars)
    assert all(s.count("ˈ") == 1 for s in syllables)


# --------------------------------------------------------------------------- config and plan

def test_default_config_loads():
    cfg = corpus.load_config(CONFIG)
    assert cfg.num_general > 0 and cfg.num_domain > 0
    assert 0.15 <= cfg.english_fraction <= 0.2
    assert set(cfg.heldout) <= {v for _, v in cfg.all_voices()}
    over = corpus.load_config(CONFIG, {"seed": 9, "num_general": 5, "num_domain": None})
    assert (over.seed, over.num_general, over.num_domain) == (9, 5, cfg.num_domain)


def test_plan_spreads_utterances_over_all_speakers_heldout_included():
    cfg = corpus.load_config(CONFIG)
    heldout = {synth.speaker_id(v) for v in cfg.heldout}
    assert heldout
    for pool in corpus.POOLS:
        utts = corpus.plan_pool(cfg, pool)
        assert len(utts) == cfg.num(pool)
        assert len({u.utt_id for u in utts}) == len(utts)
        for lang in corpus.LANGUAGES:
            counts = Counter(u.speaker for u in utts if corpus.language_of(u.text) == lang)
            assert set(counts) == {synth.speaker_id(v) for v in cfg.voices[lang]}
            assert max(counts.values()) - min(counts.values()) <= 1
        counts = Counter(u.speaker for u in utts)
        for spk in heldout:
            assert counts[spk] >= 20, (pool, spk, counts[spk])
        for u in utts:
            assert u.utt_id.startswith(u.speaker + "_" + corpus.POOL_PREFIX[pool])
            assert re.fullmatch(r"[a-z0-9-]+", u.speaker)
            assert cfg.rate[0] <= u.rate <= cfg.rate[1] and cfg.pitch[0] <= u.pitch <= cfg.pitch[1]
            assert corpus.language_of(u.text) == ("en" if u.voice.startswith("en") else "zh")
    assert len({u.rate for u in utts}) > 10 and len({u.pitch for u in utts}) > 10


@pytest.mark.parametrize("change,needle", [
    ({"voices": {"zh": ["cmn+nosuch"], "en": ["en-us+m1"]}, "heldout": []},
     "variant 'nosuch' does not exist"),
    ({"voices": {"zh": ["zz"], "en": ["en-us+m1"]}, "heldout": []}, "'zz' does not exist"),
    ({"heldout": ["cmn+m7"]}, "'heldout'"),
    ({"voices": {"zh": ["cmn+m1", "cmn+f1"], "en": ["en-us+f1"]}, "heldout": ["en-us+f1"]},
     "voices.en"),
    ({"voices": {"zh": ["cmn+Gene", "cmn+Gene2"], "en": ["en-us+m1"]}, "heldout": []}, "prefix"),
    ({"rate": [10, 200]}, "'rate'"),
    ({"num_domain": -1}, "'num_domain'"),
    ({"speed": 3}, "unknown key"),
])
def test_bad_config_is_a_clear_error(tmp_path, change, needle):
    path = write_config(tmp_path / "bad.yaml", **change)
    with pytest.raises(DataError, match=needle) as err:
        corpus.load_config(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- the tool

def test_help():
    out = run_tool("--help")
    assert out.returncode == 0
    for opt in ("--config", "--out", "--seed", "--num-general", "--num-domain", "--nj"):
        assert opt in out.stdout


def test_make_corpus_layout_and_skip(tmp_path):
    out = tmp_path / "corpus"
    first = run_tool("--out", str(out), "--num-general", "12", "--num-domain", "12", "--seed", "5")
    assert first.returncode == 0, first.stderr
    assert re.search(r"^general: 12 utterances .* h, \d+ speakers", first.stdout, re.M)
    assert re.search(r"^domain: 12 utterances", first.stdout, re.M)

    cfg = corpus.load_config(CONFIG, {"seed": 5, "num_general": 12, "num_domain": 12})
    for pool, prefix in (("general", "g"), ("domain", "d")):
        wavs = sorted((out / pool).glob("*/*.wav"))
        assert len(wavs) == 12
        for wav in wavs:
            assert re.fullmatch(rf"{wav.parent.name}_{prefix}\d{{6}}\.wav", wav.name)
            info = sf.info(str(wav))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 1.0 < info.duration < 5.0
            text = wav.with_suffix(".txt").read_text(encoding="utf-8")
            assert text.endswith("\n") and text.count("\n") == 1
            assert set(corpus.transcript_tokens(text.strip())) <= set(corpus.vocabulary())
        planned = {u.relpath: u.text for u in corpus.plan_pool(cfg, pool)}
        assert {f"{pool}/{w.parent.name}/{w.stem}" for w in wavs} == set(planned)
    assert (out / "domain_terms.txt").read_text(encoding="utf-8").splitlines() == \
        corpus.domain_terms()
    assert (out / "heldout_speakers.txt").read_text(encoding="utf-8").split() == \
        [synth.speaker_id(v) for v in cfg.heldout]
    assert (out / "vocabulary.txt").read_text(encoding="utf-8").splitlines() == \
        corpus.vocabulary()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["complete"] is True
    assert manifest["config"]["seed"] == 5
    assert manifest["pools"]["general"]["utterances"] == 12
    assert 0 < manifest["pools"]["domain"]["hours"] < 0.1
    assert not list(out.rglob("*.tmp"))

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    second = run_tool("--out", str(out), "--num-general", "12", "--num-domain", "12", "--seed", "5")
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stderr
    assert second.stdout == first.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    # A missing file, or a changed setting, makes it regenerate; stale files go.
    victim = next((out / "domain").glob("*/*.wav"))
    victim.unlink()
    third = run_tool("--out", str(out), "--num-general", "12", "--num-domain", "12", "--seed", "5")
    assert third.returncode == 0 and "nothing to do" not in third.stderr
    assert victim.is_file()
    fourth = run_tool("--out", str(out), "--num-general", "6", "--num-domain", "4", "--seed", "5")
    assert fourth.returncode == 0, fourth.stderr
    assert len(list((out / "general").glob("*/*.wav"))) == 6
    assert len(list((out / "domain").glob("*/*.txt"))) == 4


def test_make_corpus_audio_is_identical_across_runs_and_jobs_and_differs_by_seed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_tool("--out", str(a), "--num-general", "10", "--num-domain", "6").returncode == 0
    assert run_tool("--out", str(b), "--num-general", "10", "--num-domain", "6",
                    "--nj", "2").returncode == 0
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = tmp_path / "c"
    assert run_tool("--out", str(c), "--num-general", "10", "--num-domain", "6",
                    "--seed", "2").returncode == 0
    audio_a = {p.read_bytes() for p in a.rglob("*.wav")}
    audio_c = {p.read_bytes() for p in c.rglob("*.wav")}
    assert len(audio_c) == 16 and not audio_a & audio_c


def test_make_corpus_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me\n", encoding="utf-8")
    out = run_tool("--out", str(tmp_path), "--num-general", "2", "--num-domain", "2")
    assert out.returncode == 1
    assert out.stderr.startswith("ERROR:") and "no manifest.json" in out.stderr
    assert os.listdir(tmp_path) == ["precious.txt"]


def test_make_corpus_unknown_voice_fails_clearly(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", voices={"zh": ["cmn+f3", "cmn+bogus"],
                                                    "en": ["en-us+m1"]}, heldout=[])
    out = run_tool("--config", str(cfg), "--out", str(tmp_path / "o"))
    assert out.returncode == 1
    assert "ERROR:" in out.stderr and "bogus" in out.stderr and str(cfg) in out.stderr
    assert not (tmp_path / "o").exists()
