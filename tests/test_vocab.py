"""Vocabulary audit and extension (funasr_recipe.vocab, local/vocab_audit.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from funasr_recipe.datadir import Utt, write_datadir
from funasr_recipe.errors import DataError
from funasr_recipe.vocab import (DOUBLE_SPACE, audit, extension_plan, grow_state, load_conf,
                                 load_vocab, read_texts)
from helpers import ROOT, run_tool

TEXTS = ["病人做心电图", "他有高血压", "check blood pressure 正常", "今天天气很好",
         "Hello  world 你好", "ABC 测试 x-ray"]


def model_dir(root: Path, tokens: list[str], seg: dict[str, str] | None = None) -> Path:
    """A Paraformer model dir as far as its tokenizer goes (config, tokens, seg_dict)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(
        {"model": "Paraformer", "tokenizer": "CharTokenizer",
         "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True,
                            "token_list": "tokens.json"}}))
    (root / "tokens.json").write_text(json.dumps(["<blank>", "<s>", "</s>", *tokens, "<unk>"],
                                                 ensure_ascii=False))
    metas = {"tokenizer_conf": {"token_list": "tokens.json"}}
    if seg is not None:
        (root / "seg_dict").write_text("".join(f"{k} {v}\n" for k, v in seg.items()),
                                       encoding="utf-8")
        metas["tokenizer_conf"]["seg_dict_file"] = "seg_dict"
    (root / "configuration.json").write_text(json.dumps({"file_path_metas": metas}))
    return root


@pytest.mark.parametrize("with_seg", [False, True])
def test_units_are_funasr_char_tokenizer_tokens(tmp_path, with_seg):
    from funasr.tokenizer.char_tokenizer import CharTokenizer

    chars = sorted({c for t in TEXTS for c in t if not c.isspace()})
    seg = {c: c for c in chars if not c.isascii()} | {"check": "che@@ ck", "blood": "blood",
                                                       "hello": "hel@@ lo", "a": "a"}
    d = model_dir(tmp_path / "m", chars + ["che@@", "ck", "blood", "hel@@", "lo"],
                  seg if with_seg else None)
    v = load_vocab(d)
    assert (v.seg_dict is not None) == with_seg
    ref = CharTokenizer(token_list=str(d / "tokens.json"), split_with_space=True,
                        seg_dict=str(d / "seg_dict") if with_seg else None)
    for text in TEXTS:
        assert [t for _, ts in v.units(text) for t in ts] == ref.text2tokens(text), text


def make_sets(root: Path) -> dict[str, Path]:
    sets = {
        "train": ["病人做心电图", "心电图正常", "他有高血压", "check blood pressure", "今天很好"],
        "test": ["病人的心电图", "测血压", "胰岛素"],
        "domain": ["病人做心电图", "他有高血压", "check blood pressure", "胰岛素"],
    }
    out = {}
    for name, texts in sets.items():
        utts = [Utt(f"s-{name}-{i}", "s", f"/x/{i}.wav", t, 1.0) for i, t in enumerate(texts)]
        write_datadir(root / name, utts)
        out[name] = root / name
    (root / "terms.txt").write_text("心电图\n高血压\n胰岛素\nblood pressure\n", encoding="utf-8")
    return out


def test_audit_counts_what_cannot_be_emitted(tmp_path):
    sets = make_sets(tmp_path)
    # no 电, 压, 胰; English letters only partly (no seg_dict: spelled letter by letter)
    tokens = list("病人做心图正常他有高血今天很好的测岛素") + list("checkblod")
    v = load_vocab(model_dir(tmp_path / "m", tokens))
    a = audit(v, {"train": read_texts([sets["train"]]), "test": read_texts([sets["test"]])},
              read_texts([sets["domain"]]), ["心电图", "高血压", "胰岛素", "blood pressure"])
    assert set(a.uncovered) == {"电", "压", "胰", "pressure"}
    assert a.uncovered["pressure"].missing == ["p", "r", "s", "s", "u", "r"]   # e is a token
    assert a.uncovered["电"].utts == {"train": 2, "test": 1}
    assert a.uncovered["压"].utts == {"train": 1, "test": 1}
    assert a.uncovered["胰"].utts == {"test": 1}
    assert a.uncovered["电"].terms == {"心电图"} and a.uncovered["电"].term_occ == 3
    assert a.affected_utts == {"train": 4, "test": 3}
    assert a.worst()[0] == "电"
    # per term: training utterances (the "samples per term" question)
    assert a.terms["心电图"].utts["train"] == 2 and a.terms["胰岛素"].utts["train"] == 0
    assert a.terms["blood pressure"].utts["train"] == 1
    assert a.terms["胰岛素"].missing_units == ["胰"]
    # domain: 6 + 5 + 3 + 3 units; 电, 压, pressure, 胰 cannot be emitted
    assert (a.domain_uncovered, a.domain_units) == (4, 17)
    tokens_, seg = extension_plan(a)
    assert set(tokens_) == {"电", "压", "p", "r", "s", "u"} and seg == []   # 胰: test only


def test_seg_dict_words(tmp_path):
    sets = make_sets(tmp_path)
    tokens = list("病人做心电图正常他有高血压今天很好的测岛素胰") + ["check", "blood"]
    seg = {c: c for c in "病人做心电图正常他有高血压今天很好的测岛素胰"} | \
        {"check": "check", "blood": "blood"}
    v = load_vocab(model_dir(tmp_path / "m", tokens, seg))
    a = audit(v, {"train": read_texts([sets["train"]])}, read_texts([sets["domain"]]),
              ["blood pressure"])
    assert set(a.uncovered) == {"pressure"} and set(a.uncovered["pressure"].missing) == {"<unk>"}
    assert a.terms["blood pressure"].missing_units == ["pressure"]
    assert extension_plan(a) == (["pressure"], ["pressure"])
    assert v.units("a  b")[1] == (DOUBLE_SPACE, ["<unk>"])       # funasr: <unk> too


def test_cli_limit_stops_and_names_the_options(tmp_path):
    sets = make_sets(tmp_path)
    d = model_dir(tmp_path / "m", list("病人做心图正常他有高血今天很好的测岛素") + list("checkblodprsu"))
    conf = tmp_path / "audit.yaml"
    conf.write_text("max_uncovered_share: 0.05\nshow_worst: 3\n")
    args = ["--model-dir", d, "--train", sets["train"], "--test", sets["test"],
            "--domain", sets["domain"], "--terms", tmp_path / "terms.txt", "--conf", conf,
            "--out", tmp_path / "exp" / "vocab_audit.tsv"]
    p = run_tool("vocab_audit.py", *args)
    assert p.returncode == 1
    assert "ERROR: 17.65% of the domain transcripts' characters/words (3 of 17)" in p.stderr
    assert "worst: '电' (2 train utterances), '压' (1 train utterances)" in p.stderr
    assert "--extend-vocab true" in p.stderr and "max_uncovered_share" in p.stderr
    tsv = (tmp_path / "exp" / "vocab_audit.tsv").read_text(encoding="utf-8").splitlines()
    assert tsv[0].split("\t")[:6] == ["kind", "item", "model_tokens", "missing_tokens",
                                      "train_utts", "train_occ"]
    assert tsv[1].split("\t")[:6] == ["char", "电", "电", "电", "2", "2"]
    term_rows = [r.split("\t") for r in tsv if r.startswith("term\t")]
    assert term_rows[0][1] == "胰岛素" and term_rows[0][4] == "0"    # fewest train utts first
    summary = (tmp_path / "exp" / "vocab_audit.txt").read_text(encoding="utf-8")
    assert summary == p.stdout and "3 of 17" in summary
    conf.write_text("max_uncovered_share: 0.2\n")
    assert run_tool("vocab_audit.py", *args).returncode == 0
    conf.write_text("max_uncovered_share: 5\n")
    p = run_tool("vocab_audit.py", *args)
    assert p.returncode == 1 and "between 0 and 1" in p.stderr


def test_conf_file_is_the_default_one():
    conf = load_conf(ROOT / "conf" / "paraformer" / "vocab_audit.yaml")
    assert 0 < conf["max_uncovered_share"] < 1
    with pytest.raises(DataError, match="no such file"):
        load_conf(ROOT / "conf" / "nope.yaml")


# ---------------------------------------------------------------- extension

#: one tone per character: an utterance is its characters' tones in a row
FREQS = {"你": 300, "好": 500, "世": 700, "界": 900, "甲": 1200, "乙": 1600}
KNOWN = "你好世界"          # the twin's vocabulary lacks 甲 and 乙


def speak(path: Path, text: str, seed: int) -> float:
    rng = np.random.default_rng(seed)
    sil = np.zeros(1600)
    parts = [sil]
    for c in text:
        t = np.arange(int(0.3 * 16000)) / 16000
        parts += [0.3 * np.sin(2 * np.pi * FREQS[c] * t), np.zeros(800)]
    x = np.concatenate(parts + [sil])
    x = x + 0.005 * rng.standard_normal(len(x))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype("float32"), 16000, subtype="PCM_16")
    return len(x) / 16000


@pytest.fixture(scope="module")
def twin_setup(tmp_path_factory):
    from funasr_recipe.jsonl import paraformer_lines
    from funasr_recipe.twin_paraformer import load_arch, make_paraformer_twin

    d = tmp_path_factory.mktemp("vocab_twin")
    rng = np.random.default_rng(0)
    chars = list(FREQS)
    utts = []
    for i in range(36):
        text = "".join(rng.choice(chars, size=int(rng.integers(2, 4))))
        if i % 3 == 0:
            text = text[:-1] + "甲乙"[i % 2]          # every third one ends in a new character
        wav = d / "wav" / f"s-{i:02d}.wav"
        utts.append(Utt(f"s-{i:02d}", "s", str(wav), text, speak(wav, text, i)))
    write_datadir(d / "train", utts)
    write_datadir(d / "test", utts[:12])
    jsonl = d / "train.jsonl"
    jsonl.write_text("".join(x + "\n" for x in paraformer_lines(d / "train")), encoding="utf-8")
    twin = make_paraformer_twin(d / "twin", list(KNOWN), jsonl,
                                load_arch(ROOT / "conf" / "paraformer" / "twin.yaml"), seed=0)
    conf = d / "train.yaml"
    cfg = yaml.safe_load((ROOT / "conf" / "paraformer" / "train.yaml").read_text())
    cfg["stages"]["stage1"].update({"train_conf.max_epoch": 25, "optim_conf.lr": 0.003,
                                    "scheduler_conf.warmup_steps": 20})
    cfg["common"]["dataset_conf.batch_size"] = 6
    conf.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return {"dir": d, "twin": twin, "jsonl": jsonl, "conf": conf}


def test_grow_state_keeps_old_rows_and_adds_mean_rows(twin_setup):
    import torch

    from funasr_recipe.training import load_state

    twin = twin_setup["twin"]
    cfg = yaml.safe_load((twin / "config.yaml").read_text())
    old = load_state(twin / "model.pt")
    n = len(json.loads((twin / "tokens.json").read_text()))
    new, grown = grow_state(old, cfg, n, n + 2)
    assert set(grown) == {"decoder.embed.0.weight", "decoder.output_layer.weight",
                          "decoder.output_layer.bias"}
    for k in grown:
        assert new[k].shape[0] == n + 2 and torch.equal(new[k][:n], old[k])
        assert torch.allclose(new[k][n], old[k].mean(0)) and torch.equal(new[k][n], new[k][n + 1])
    assert all(torch.equal(new[k], old[k]) for k in old if k not in grown)
    with pytest.raises(DataError, match="only the vocabulary dimension may differ"):
        grow_state(old, cfg, n + 5, n + 7)


def decode_texts(model_dir: Path, data: Path, out: Path, checkpoint: Path | None = None
                 ) -> dict[str, str]:
    args = ["--model-dir", model_dir, "--data-dir", data, "--out", out]
    if checkpoint is not None:
        args += ["--checkpoint", checkpoint]
    p = run_tool("decode.py", *args)
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(line.split(" ", 1) if " " in line else (line, "")
                for line in (out / "text").read_text(encoding="utf-8").splitlines())


@pytest.mark.slow
def test_extended_twin_learns_to_emit_new_characters(twin_setup):
    d, twin = twin_setup["dir"], twin_setup["twin"]
    out = d / "exp"
    p = run_tool("vocab_audit.py", "--model-dir", twin, "--train", d / "train", "--test",
                 d / "test", "--domain", d / "train", "--conf",
                 ROOT / "conf" / "paraformer" / "vocab_audit.yaml",
                 "--out", out / "vocab_audit.tsv")
    assert p.returncode == 1 and "'甲'" in p.stderr and "'乙'" in p.stderr   # over the limit
    p = run_tool("vocab_audit.py", "--model-dir", twin, "--train", d / "train", "--test",
                 d / "test", "--domain", d / "train", "--conf",
                 ROOT / "conf" / "paraformer" / "vocab_audit.yaml",
                 "--out", out / "vocab_audit.tsv", "--extend-out", out / "base_vocab")
    assert p.returncode == 0, p.stderr
    assert "extended: 2 tokens added (" in p.stdout and "after extension: 0 of" in p.stdout
    ext = out / "base_vocab"
    assert json.loads((ext / "tokens.json").read_text())[-2:] in (["甲", "乙"], ["乙", "甲"])

    results = {}
    for name, model in (("plain", twin), ("extended", ext)):
        r = run_tool("train.py", "--conf", twin_setup["conf"], "--section", "stage1",
                     "--model-dir", model, "--init", model / "model.pt",
                     "--train", twin_setup["jsonl"], "--valid", twin_setup["jsonl"],
                     "--out", out / name, "--threads", "1")
        assert r.returncode == 0, r.stderr[-3000:]
        results[name] = decode_texts(model, d / "test", out / f"decode_{name}",
                                     out / name / "final.pt")
    refs = dict(line.split(" ", 1) for line in (d / "test" / "text").read_text().splitlines())
    new_refs = [k for k, v in refs.items() if set(v) & set("甲乙")]
    assert new_refs
    # without extension the model has no way to say them
    assert not any(set(h) & set("甲乙") for h in results["plain"].values())
    # with it, it says them where they were said
    # (measured: all 9 test utterances with them transcribed exactly, 3 clean ones too)
    hit = [k for k in new_refs if set(results["extended"][k]) >= (set(refs[k]) & set("甲乙"))]
    assert hit == new_refs, (results["extended"], refs)


@pytest.mark.slow
def test_run_sh_audits_before_training(tmp_path):
    """run.sh stage 5 with a base model: the audit runs first and stops the
    recipe before any training when the limit is exceeded."""
    import subprocess

    sets = make_sets(tmp_path)
    data = tmp_path / "data"
    for name, src in (("general_train", "train"), ("domain_train", "train"),
                      ("general_test", "test"), ("domain_test", "domain")):
        src_dir = sets[src]
        (data / name).mkdir(parents=True)
        for f in src_dir.iterdir():
            (data / name / f.name).write_bytes(f.read_bytes())
    base = model_dir(tmp_path / "base", list("病人做心图正常他有高血今天很好的测岛素") +
                     list("checkblodprsu"))
    for name in ("model.pt", "am.mvn"):  # the files run.sh's model-dir check asks for first
        (base / name).write_bytes(b"")

    def run(*extra):
        return subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "5", "--stop-stage", "5",
                               "--base-model", str(base), "--datadir", str(data),
                               "--expdir", str(tmp_path / "exp"), "--dumpdir",
                               str(tmp_path / "dump"), "--terms", str(tmp_path / "terms.txt"),
                               *extra], capture_output=True, text=True, cwd=tmp_path)

    p = run()
    out = p.stdout + p.stderr
    assert p.returncode == 1 and "vocabulary audit against" in out
    assert "cannot be emitted by" in out and "'电'" in out and "--extend-vocab true" in out
    assert "Stage 5: fine-tune" not in out                       # stopped before training
    assert (tmp_path / "exp" / "paraformer" / "vocab_audit.tsv").is_file()
    p = run("--model", "nano", "--extend-vocab", "true")
    assert p.returncode == 1 and "Paraformer only" in p.stdout + p.stderr


@pytest.mark.slow
def test_extend_with_seg_dict_and_test_only_tokens(twin_setup, tmp_path):
    """A model with a seg_dict: missing words and characters get seg_dict entries and
    tokens, funasr's own tokenizer then maps them to real ids; what occurs only in
    the test sets cannot be taught and still stops the recipe."""
    import shutil

    from funasr.tokenizer.char_tokenizer import CharTokenizer

    m = tmp_path / "seg_model"
    shutil.copytree(twin_setup["twin"], m)
    (m / "seg_dict").write_text("".join(f"{c} {c}\n" for c in KNOWN), encoding="utf-8")
    metas = json.loads((m / "configuration.json").read_text())
    metas["file_path_metas"]["tokenizer_conf"]["seg_dict_file"] = "seg_dict"
    (m / "configuration.json").write_text(json.dumps(metas))
    for name, texts in (("train", ["你好 pressure", "甲世界"]), ("test", ["乙界", "你好"])):
        write_datadir(tmp_path / name, [Utt(f"s-{i}", "s", "/x.wav", t, 1.0)
                                        for i, t in enumerate(texts)])
    conf = tmp_path / "a.yaml"
    conf.write_text("max_uncovered_share: 0.0\n")
    p = run_tool("vocab_audit.py", "--model-dir", m, "--train", tmp_path / "train", "--test",
                 tmp_path / "test", "--domain", tmp_path / "train", tmp_path / "test",
                 "--conf", conf, "--out", tmp_path / "exp" / "vocab_audit.tsv",
                 "--extend-out", tmp_path / "exp" / "ext")
    assert p.returncode == 1                                    # 乙: test only
    assert "'乙' (0 train utterances)" in p.stderr and "occur in no training" in p.stderr
    ext = tmp_path / "exp" / "ext"
    info = json.loads((ext / "vocab_extend.json").read_text())
    assert info["added_tokens"] == ["pressure", "甲"]            # worst first, ties in C order
    assert sorted(info["added_seg_dict_entries"]) == ["pressure", "甲"]
    tok = CharTokenizer(token_list=str(ext / "tokens.json"), split_with_space=True,
                        seg_dict=str(ext / "seg_dict"))
    ids = tok.encode("你好 pressure 甲")
    assert tok.unk_id not in ids and len(ids) == 4
    assert tok.unk_id in tok.encode("乙")
    # the same inputs again: the extended dir is kept as it is
    before = (ext / "model.pt").stat().st_mtime_ns
    run_tool("vocab_audit.py", "--model-dir", m, "--train", tmp_path / "train", "--domain",
             tmp_path / "train", "--conf", conf, "--out", tmp_path / "exp" / "vocab_audit.tsv",
             "--extend-out", ext)
    assert (ext / "model.pt").stat().st_mtime_ns == before
