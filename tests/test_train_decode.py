"""Training a stage (chain check, skip, resume), export, batched decoding and RESULTS.md.

One tiny twin and a handful of synthetic utterances: the behaviour, not the
accuracy, is under test (the mini recipe test covers learning).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from funasr_recipe.datadir import Utt, write_datadir
from funasr_recipe.decoding import Item, duration_batches, job_batches
from funasr_recipe.errors import DataError
from funasr_recipe.jsonl import paraformer_lines
from funasr_recipe.training import (compare_loaded, load_state, overrides,
                                    section_settings, state_checksum)
from funasr_recipe.twin_paraformer import load_arch, make_paraformer_twin
from helpers import ROOT, run_tool, tone

TEXTS = ["你好", "世界", "你好世界", "好"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("td")
    utts = []
    for i in range(8):
        wav = d / "wav" / f"s-{i}.wav"
        sec = 0.6 + 0.1 * i
        tone(wav, sec, 120 + 30 * i, i)
        utts.append(Utt(f"s-{i}", "s", str(wav), TEXTS[i % 4], sec))
    write_datadir(d / "data", utts)
    jsonl = d / "train.jsonl"
    jsonl.write_text("".join(x + "\n" for x in paraformer_lines(d / "data")), encoding="utf-8")
    twin = make_paraformer_twin(d / "twin", list("你好世界"), jsonl,
                                load_arch(ROOT / "conf" / "paraformer" / "twin.yaml"), seed=0)
    conf = d / "train.yaml"
    conf.write_text((ROOT / "conf" / "paraformer" / "train.yaml").read_text()
                    .replace("train_conf.max_epoch: 6", "train_conf.max_epoch: 1"))
    return {"dir": d, "data": d / "data", "jsonl": jsonl, "twin": twin, "conf": conf}


def train(setup, out, init=None, section="stage1"):
    args = ["--conf", setup["conf"], "--section", section, "--model-dir", setup["twin"],
            "--train", setup["jsonl"], "--valid", setup["jsonl"],
            "--extra-valid", f"general={setup['jsonl']}", "--out", out, "--threads", "1"]
    if init is not None:
        args += ["--init", init]
    return run_tool("train.py", *args)


def test_settings_to_overrides():
    cfg = {"common": {"a.b": 1, "x": None}, "stages": {"s1": {"a.b": 2, "f": ["enc", "dec"],
                                                              "t": True}}}
    assert overrides(section_settings(cfg, "s1")) == ["++a.b=2", "++x=null", "++f=[enc,dec]",
                                                      "++t=true"]
    with pytest.raises(DataError, match="no settings for 's2'"):
        section_settings(cfg, "s2")


def test_compare_loaded_finds_differences():
    a = {"w": torch.ones(2, 2), "b": torch.zeros(2)}
    assert compare_loaded(a, {k: v.clone() for k, v in a.items()})["differ"] == []
    rep = compare_loaded(a, {"w": torch.ones(2, 2) * 2})
    assert rep["differ"] == ["w"] and rep["absent"] == ["b"]
    rep = compare_loaded(dict(a, **{"l.lora_A": torch.ones(1)}), a)
    assert rep["new"] == ["l.lora_A"] and rep["absent"] == [] and rep["unused"] == []
    # a LoRA checkpoint loaded into a model without LoRA: its adapter would be dropped
    rep = compare_loaded(a, dict(a, **{"l.lora_B": torch.ones(1)}))
    assert rep["unused"] == ["l.lora_B"]
    assert state_checksum(a) == state_checksum({k: v.clone() for k, v in a.items()})
    assert state_checksum(a) != state_checksum({"w": torch.ones(2, 2), "b": torch.ones(2)})


@pytest.mark.slow
def test_stage_trains_chains_and_skips(setup):
    out = setup["dir"] / "stage1"
    r = train(setup, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "chain check" in r.stdout + r.stderr  # hydra logs to stdout
    chain = json.loads((out / "chain.json").read_text())
    init_state = load_state(setup["twin"] / "model.pt")
    assert chain["init"] == str((setup["twin"] / "model.pt").resolve())
    assert chain["checksum_ckpt"] == chain["checksum_model"]
    assert chain["shared"] == len(init_state) and chain["differ"] == []
    assert (out / "final.pt").resolve() == (out / "model.pt.avg3").resolve()
    assert chain["checksum_final"] == state_checksum(load_state(out / "final.pt"))
    assert chain["checksum_final"] != state_checksum(init_state)  # it trained
    tsv = (out / "valid_general.tsv").read_text().splitlines()
    assert tsv[0] == "epoch\tloss\tacc\tutterances" and tsv[1].startswith("1\t")
    assert math.isfinite(float(tsv[1].split("\t")[1]))
    # a second run with the same inputs is skipped and changes nothing
    before = (out / "final.pt").read_bytes()
    r = train(setup, out)
    assert r.returncode == 0 and "skipped" in r.stdout + r.stderr
    assert (out / "final.pt").read_bytes() == before
    # the next stage starts from this one's checkpoint
    r = train(setup, setup["dir"] / "stage2", init=out / "final.pt", section="stage2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((setup["dir"] / "stage2" / "chain.json").read_text())["init"] == str(
        (out / "model.pt.avg3").resolve())


@pytest.mark.slow
def test_missing_init_fails_naming_it(setup):
    missing = setup["dir"] / "nope" / "final.pt"
    r = train(setup, setup["dir"] / "s_missing", init=missing)
    assert r.returncode == 1 and str(missing) in r.stderr and "does not exist" in r.stderr
    assert not (setup["dir"] / "s_missing" / ".stamp.json").exists()


@pytest.mark.slow
def test_wrong_init_fails(setup):
    # a checkpoint of another model: a twin with a different vocabulary
    other = make_paraformer_twin(setup["dir"] / "other", list("甲乙丙丁戊己庚"), setup["jsonl"],
                                 load_arch(ROOT / "conf" / "paraformer" / "twin.yaml"), seed=1)
    r = train(setup, setup["dir"] / "s_wrong", init=other / "model.pt")
    assert r.returncode == 1
    assert "did not load" in r.stderr and str(other / "model.pt") in r.stderr, r.stderr[-2000:]
    assert not (setup["dir"] / "s_wrong" / ".stamp.json").exists()


@pytest.mark.slow
def test_interrupted_stage_resumes(setup):
    out = setup["dir"] / "s_resume"
    r = train(setup, out)
    assert r.returncode == 0, r.stderr[-2000:]
    (out / ".stamp.json").unlink()  # as if killed after the epoch's checkpoint was saved
    r = run_tool("train.py", "--conf", setup["conf"], "--section", "stage1", "--model-dir",
                 setup["twin"], "--train", setup["jsonl"], "--valid", setup["jsonl"], "--out",
                 out, "--threads", "1", "--set", "train_conf.max_epoch=2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumes" in r.stdout + r.stderr
    assert (out / "model.pt.ep2").exists()
    # funasr's checkpoints load with torch's safe unpickler (what the recipe uses)
    assert torch.load(out / "model.pt", weights_only=True)["epoch"] == 2


@pytest.mark.slow
def test_other_settings_do_not_resume_the_old_run(setup):
    """funasr would resume OUT/model.pt with its old optimizer and learning rate:
    a run with other settings moves the old one aside and starts from epoch 1."""
    out = setup["dir"] / "s_changed"
    r = train(setup, out)
    assert r.returncode == 0, r.stderr[-2000:]
    old_sum = state_checksum(load_state(out / "final.pt"))
    r = run_tool("train.py", "--conf", setup["conf"], "--section", "stage1", "--model-dir",
                 setup["twin"], "--train", setup["jsonl"], "--valid", setup["jsonl"], "--out",
                 out, "--threads", "1", "--set", "optim_conf.lr=0.0003")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-2000:]
    assert "training from the start" in log and "resumes" not in log
    prev = [p for p in setup["dir"].iterdir() if p.name.startswith("s_changed.prev-")]
    assert len(prev) == 1 and state_checksum(load_state(prev[0] / "final.pt")) == old_sum
    assert torch.load(out / "model.pt", weights_only=True)["epoch"] == 1
    assert "++optim_conf.lr=0.0003" in json.loads((out / ".run.json").read_text())["opts"]
    assert f"set aside as {prev[0]}" in log


def train_args(setup, out, epochs):
    return ["--conf", setup["conf"], "--section", "stage1", "--model-dir", setup["twin"],
            "--train", setup["jsonl"], "--valid", setup["jsonl"],
            "--extra-valid", f"general={setup['jsonl']}", "--out", out, "--threads",
            "1", "--set", f"train_conf.max_epoch={epochs}"]


def train_epochs(setup, out, epochs, *extra):
    return run_tool("train.py", *train_args(setup, out, epochs), *extra)


@pytest.mark.slow
def test_torn_checkpoint_is_set_aside_and_the_stage_resumes(setup):
    """A crash during funasr's torch.save leaves a truncated model.pt: the re-run sets
    it aside (never deletes it) and resumes from the newest readable model.pt.epN."""
    out = setup["dir"] / "s_torn"
    r = train_epochs(setup, out, 2)
    assert r.returncode == 0, r.stderr[-2000:]
    torn_bytes = (out / "model.pt").read_bytes()[:5000]
    (out / "model.pt").write_bytes(torn_bytes)  # killed mid-save
    r = train_epochs(setup, out, 3)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "PytorchStreamReader" not in log
    assert "torn checkpoint" in log and "resuming from model.pt.ep2" in log
    kept = list(out.glob("model.pt.torn-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == torn_bytes
    assert torch.load(out / "model.pt", weights_only=True)["epoch"] == 3
    assert (out / "model.pt.ep3").is_file()


def test_torn_checkpoint_without_a_readable_epoch_starts_over(tmp_path):
    from funasr_recipe.training import recover_torn_checkpoint
    assert recover_torn_checkpoint(tmp_path) is None  # nothing to resume: nothing to do
    torch.save({"epoch": 1}, tmp_path / "model.pt")
    assert recover_torn_checkpoint(tmp_path) is None  # readable: left alone
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 torn")
    (tmp_path / "model.pt.ep1").write_bytes(b"PK\x03\x04 torn too")
    said = recover_torn_checkpoint(tmp_path)
    assert "training from the start" in said and "model.pt.ep1 is unreadable" in said
    assert not (tmp_path / "model.pt").exists()
    assert {p.name.split(".torn-")[0] for p in tmp_path.iterdir()} == {"model.pt",
                                                                       "model.pt.ep1"}


@pytest.mark.slow
def test_resumed_stage_equals_an_uninterrupted_one(setup):
    """kill -9 after epoch 1's checkpoint + resume == a run never interrupted:
    the random states saved with each epoch's checkpoint are restored."""
    whole, resumed = setup["dir"] / "s_whole", setup["dir"] / "s_resumed"
    r = train_epochs(setup, whole, 2)
    assert r.returncode == 0, r.stderr[-2000:]
    r = train_epochs(setup, resumed, 1)
    assert r.returncode == 0, r.stderr[-2000:]
    r = train_epochs(setup, resumed, 2)  # as after kill -9: model.pt holds epoch 1
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-2000:]
    assert "Checkpoint loaded successfully" in log and "random states saved then" in log
    a, b = load_state(whole / "model.pt.ep2"), load_state(resumed / "model.pt.ep2")
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert differ == [], f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    assert (whole / "valid_general.tsv").read_text() == (resumed / "valid_general.tsv").read_text()


@pytest.mark.slow
def test_export_decode_and_results(setup, tmp_path):
    model = tmp_path / "model"
    r = run_tool("export_model.py", "--model-dir", setup["twin"], "--checkpoint",
                 setup["twin"] / "model.pt", "--out", model)
    assert r.returncode == 0, r.stderr
    assert {"config.yaml", "configuration.json", "tokens.json", "am.mvn", "model.pt"} <= {
        p.name for p in model.iterdir()}
    # equal durations (no padding): batches decode exactly as single utterances
    same = []
    for i in range(6):
        tone(tmp_path / "eq" / f"e-{i}.wav", 1.0, 100 + 40 * i, i)
        same.append(Utt(f"e-{i}", "e", str(tmp_path / "eq" / f"e-{i}.wav"), "你", 1.0))
    write_datadir(tmp_path / "eqdata", same)
    outs = {}
    for bs in (1, 4):
        out = tmp_path / f"dec{bs}"
        r = run_tool("decode.py", "--model-dir", model, "--data-dir", tmp_path / "eqdata",
                     "--out", out, "--batch-size", bs, "--timestamps")
        assert r.returncode == 0, r.stderr[-2000:]
        outs[bs] = (out / "text").read_text(encoding="utf-8")
        assert len((out / "timestamps").read_text().splitlines()) == 6
    assert outs[1] == outs[4]
    r = run_tool("decode.py", "--model-dir", model, "--data-dir", setup["data"], "--out",
                 tmp_path / "dec", "--batch-size", 3)
    assert r.returncode == 0, r.stderr[-2000:]
    keys = [line.split()[0] for line in (tmp_path / "dec" / "text").read_text().splitlines()]
    assert keys == sorted(f"s-{i}" for i in range(8))
    # different durations, padded in a batch: still what one-at-a-time decoding gives
    r = run_tool("decode.py", "--model-dir", model, "--data-dir", setup["data"], "--out",
                 tmp_path / "dec1", "--batch-size", 1)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "dec1" / "text").read_text() == (tmp_path / "dec" / "text").read_text()
    # a 2-job decode, merged in key order as run.sh does, equals the 1-job run
    for j in (1, 2):
        r = run_tool("decode.py", "--model-dir", model, "--data-dir", setup["data"], "--out",
                     tmp_path / "dec2", "--batch-size", 3, "--nj", 2, "--job", j)
        assert r.returncode == 0, r.stderr[-2000:]
    assert all((tmp_path / "dec2" / f"text.{j}").stat().st_size > 0 for j in (1, 2))
    merged = subprocess.run(["sort", "-m", *(str(tmp_path / "dec2" / f"text.{j}")
                                            for j in (1, 2))],
                            capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    assert merged.stdout == (tmp_path / "dec" / "text").read_text(encoding="utf-8")
    # two sets with one model load (--data-dir/--out pairs, as run.sh decodes a model's
    # test sets): each set's output is what its own decode gave
    r = run_tool("decode.py", "--model-dir", model, "--batch-size", 3,
                 "--data-dir", setup["data"], "--out", tmp_path / "two" / "a",
                 "--data-dir", tmp_path / "eqdata", "--out", tmp_path / "two" / "b")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "two" / "a" / "text").read_text() == (tmp_path / "dec" / "text").read_text()
    assert (tmp_path / "two" / "b" / "text").read_text(encoding="utf-8") == outs[1]
    r = run_tool("decode.py", "--model-dir", model, "--data-dir", setup["data"],
                 "--data-dir", tmp_path / "eqdata", "--out", tmp_path / "two" / "c")
    assert r.returncode != 0 and "one --out for each --data-dir" in r.stderr
    # RESULTS.md from the decodes
    exp = tmp_path / "exp"
    data = tmp_path / "data_root"
    shutil.copytree(setup["data"], data / "tset")
    shutil.copytree(tmp_path / "dec", exp / "decode_base_default" / "tset")
    r = run_tool("make_results.py", "--exp", exp, "--models", "base", "--sets", "tset",
                 "--data", data, "--mix-summary", tmp_path / "none.tsv")
    assert r.returncode == 0, r.stderr
    md = (exp / "RESULTS.md").read_text()
    assert "| base | as downloaded |" in md
    assert (exp / "decode_base_default" / "tset" / "score.txt").read_text().startswith("%WER")


def test_utterance_ids_need_not_be_file_names(setup, tmp_path):
    """funasr names a result after its audio file; a Kaldi data dir's ids carry
    the speaker, and two speakers' folders hold the same file names. Each
    utterance still gets its own hypothesis: the one its audio gives under its
    file's own name."""
    import shutil as sh

    from funasr_recipe.datadir import load_datadir

    ref = tmp_path / "ref"
    r = run_tool("decode.py", "--model-dir", setup["twin"], "--data-dir", setup["data"],
                 "--out", ref, "--batch-size", 3)
    assert r.returncode == 0, r.stderr[-2000:]
    want = dict(line.split(" ", 1) if " " in line else (line, "")
                for line in (ref / "text").read_text(encoding="utf-8").splitlines())
    utts = []
    for i, u in enumerate(sorted(load_datadir(setup["data"]), key=lambda u: u.key)):
        wav = tmp_path / "audio" / f"spk{i % 2}" / f"{i // 2:03d}.wav"   # 000.wav twice ...
        wav.parent.mkdir(parents=True, exist_ok=True)
        sh.copy(u.wav, wav)
        utts.append(Utt(f"spk{i % 2}-{u.key}", f"spk{i % 2}", str(wav), u.text, u.dur))
    write_datadir(tmp_path / "kaldi", utts)
    out = tmp_path / "kaldi_dec"
    r = run_tool("decode.py", "--model-dir", setup["twin"], "--data-dir", tmp_path / "kaldi",
                 "--out", out, "--batch-size", 3)
    assert r.returncode == 0, r.stderr[-2000:]
    got = dict(line.split(" ", 1) if " " in line else (line, "")
               for line in (out / "text").read_text(encoding="utf-8").splitlines())
    assert sorted(got) == sorted(u.key for u in utts)
    assert {k.split("-", 1)[1]: v for k, v in got.items()} == want
    assert sum(bool(v) for v in want.values()) >= 4
    assert "no output" not in r.stderr


def test_results_are_matched_to_the_utterances_of_their_batch():
    from funasr_recipe.decoding import batch_results
    from funasr_recipe.errors import RunError

    batch = [Item("spkA-1", "/a/001.wav", 1.0), Item("spkB-1", "/b/001.wav", 1.0),
             Item("u3", "/c/u3.flac", 1.0)]
    named = [{"key": "001", "text": "x"}, {"key": "001", "text": "y"}, {"key": "u3", "text": "z"}]
    got = batch_results(batch, named)
    assert {k: r["text"] for k, r in got.items()} == {"spkA-1": "x", "spkB-1": "y", "u3": "z"}
    assert all(r["key"] == k for k, r in got.items())
    # funasr's one keyless result of a batch without a token: nothing matched
    assert batch_results(batch, [{"text": ""}]) == {}
    # fewer results: by id, or by a file name only one utterance has
    assert {k: r["text"] for k, r in batch_results(batch, [{"key": "u3", "text": "z"}]).items()} \
        == {"u3": "z"}
    with pytest.raises(RunError, match="cannot be matched"):
        batch_results(batch, [{"key": "001", "text": "x"}])     # two utterances have 001
    with pytest.raises(RunError, match="cannot be matched"):
        batch_results(batch, [{"key": "zz", "text": "x"}] * 3)


def test_feature_workers_give_funasrs_hypotheses(setup):
    """Features computed in DataLoader workers, overlapping the model: the same
    texts and timestamps as funasr's generate() computing them itself."""
    from funasr_recipe.datadir import load_datadir
    from funasr_recipe.decoding import (Item, decode, duration_batches, load_model,
                                        supports_feature_workers)

    am = load_model(setup["twin"])
    assert supports_feature_workers(am)
    items = [Item(u.key, u.wav, u.dur) for u in load_datadir(setup["data"])]
    batches = duration_batches(items, 3)   # durations differ: padded batches

    def view(res):
        return {k: (r["text"], r.get("timestamp")) for k, r in sorted(res.items())}
    ref = view(decode(am, batches, timestamps=True))
    assert len(ref) == 8 and sum(bool(t) for t, _ in ref.values()) >= 4
    for workers in (1, 2):
        assert view(decode(am, batches, timestamps=True, feature_workers=workers)) == ref


def test_batched_predictor_sees_no_padding(setup, tmp_path):
    """In a batch, the CIF weights of a short utterance equal its weights alone."""
    from funasr_recipe.decoding import load_model, mask_encoder_padding
    from funasr.utils.load_utils import extract_fbank

    am = load_model(setup["twin"])
    m = am.model
    wavs = []
    for i, sec in enumerate((1.7, 0.9)):
        tone(tmp_path / f"p{i}.wav", sec, 150 + 60 * i, i)
        wavs.append(torch.from_numpy(sf.read(str(tmp_path / f"p{i}.wav"), dtype="float32")[0]))

    def alphas(batch):
        feats, lens = extract_fbank(batch, data_type="sound", frontend=am.kwargs["frontend"])
        with torch.no_grad():
            enc, enc_lens = m.encode(feats, lens)
            return m.calc_predictor(enc, enc_lens)[2], enc_lens

    both, lens = alphas(wavs)
    alone, alone_lens = alphas(wavs[1:])
    n = int(alone_lens[0])
    assert int(lens[1]) == n < int(lens[0])  # the short one is padded in the batch
    torch.testing.assert_close(both[1, :n], alone[0, :n], atol=1e-5, rtol=1e-4)
    assert not mask_encoder_padding(m)  # installed once by load_model, not twice


def test_duration_batches_longest_first():
    items = [Item(f"k{i}", f"/w{i}", d) for i, d in enumerate([1.0, 3.0, 2.0, 5.0, 4.0])]
    batches = duration_batches(items, 2)
    assert [[it.dur for it in b] for b in batches] == [[5.0, 4.0], [3.0, 2.0], [1.0]]
    with pytest.raises(DataError):
        duration_batches(items, 0)


def test_job_batches_deal_whole_batches():
    batches = [[Item(f"k{i}{j}", "/w", 1.0) for j in range(2)] for i in range(5)]
    parts = [job_batches(batches, j, 2) for j in (1, 2)]
    assert parts[0] == batches[0::2] and parts[1] == batches[1::2]
    assert job_batches(batches, 1, 1) == batches
    with pytest.raises(DataError):
        job_batches(batches, 3, 2)


def test_decode_rejects_hub_name(tmp_path, setup):
    r = run_tool("decode.py", "--model-dir", "paraformer-zh", "--data-dir", setup["data"],
                 "--out", tmp_path / "o")
    assert r.returncode == 1 and "paraformer-zh" in r.stderr and "local directory" in r.stderr


def export_and_decode(setup, checkpoint: Path, tmp_path: Path) -> None:
    """A stage's chosen checkpoint exports as a model dir that decodes every utterance."""
    model = tmp_path / "model"
    r = run_tool("export_model.py", "--model-dir", setup["twin"], "--checkpoint", checkpoint,
                 "--out", model)
    assert r.returncode == 0, r.stderr
    r = run_tool("decode.py", "--model-dir", model, "--data-dir", setup["data"], "--out",
                 tmp_path / "dec")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len((tmp_path / "dec" / "text").read_text().splitlines()) == 8


def check_rank_metrics(out: Path, single: Path, epochs: int) -> None:
    """Each rank of a 2-process run recorded its metrics; the valid rows (reduced
    over the ranks) are the same on both, and before training (same weights)
    they equal a single-process run's."""
    from funasr_recipe.metrics import read_metrics
    ranks = [read_metrics(out / "metrics.tsv"), read_metrics(out / "metrics.rank1.tsv")]
    valid = [{(x.set, x.epoch): x for x in rows if x.set != "train"} for rows in ranks]
    assert set(valid[0]) == {(s, e) for s in ("valid", "general") for e in range(epochs + 1)}
    assert valid[0] == valid[1]
    assert all(x.loss is not None and math.isfinite(x.loss) for x in valid[0].values())
    one = {(x.set, x.epoch): x for x in read_metrics(single / "metrics.tsv") if x.set != "train"}
    for key in (("valid", 0), ("general", 0)):
        assert valid[0][key].loss == pytest.approx(one[key].loss, rel=1e-4), key
        assert valid[0][key].acc == pytest.approx(one[key].acc, abs=0.02), key


@pytest.fixture(scope="module")
def single_run(setup):
    """One epoch in one process, with the general valid set: the DDP tests' reference."""
    out = setup["dir"] / "s_single"
    r = train(setup, out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.mark.slow
def test_two_process_ddp_trains_and_decodes(setup, single_run, tmp_path):
    """The multi-process path (torchrun, DDP over gloo on CPUs) with the extra (general)
    valid set trains one epoch; every rank records its metrics; the checkpoint loads,
    exports and decodes like a single-process one."""
    out = tmp_path / "ddp"
    r = run_tool("train.py", "--conf", setup["conf"], "--section", "stage1", "--model-dir",
                 setup["twin"], "--train", setup["jsonl"], "--valid", setup["jsonl"],
                 "--extra-valid", f"general={setup['jsonl']}", "--out",
                 out, "--threads", "2", "--nproc", "2")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "rank: 1" in log and "++backend=gloo" in log  # two ranks really ran
    check_rank_metrics(out, single_run, 1)
    assert len((out / "valid_general.tsv").read_text().splitlines()) == 2  # rank 0 writes it
    chain = json.loads((out / "chain.json").read_text())
    assert chain["differ"] == [] and chain["shared"] == len(load_state(setup["twin"] / "model.pt"))
    state = load_state(out / "final.pt")
    assert not any(k.startswith("module.") for k in state)  # DDP's wrapper is not saved
    assert chain["checksum_final"] != state_checksum(load_state(setup["twin"] / "model.pt"))
    export_and_decode(setup, out / "final.pt", tmp_path)


@pytest.mark.slow
def test_deepspeed_zero2_trains_resumes_and_decodes(setup, single_run, tmp_path):
    """funasr's DeepSpeed trainer (ZeRO-2, 2 ranks over gloo on CPUs) with the extra
    (general) valid set: its checkpoints are directories, resume reads OUT/model.pt/,
    every rank records its metrics, and the stage's chosen model is the averaged
    file, which exports and decodes."""
    out = tmp_path / "ds"
    args = ["--conf", setup["conf"], "--section", "stage1", "--model-dir", setup["twin"],
            "--train", setup["jsonl"], "--valid", setup["jsonl"],
            "--extra-valid", f"general={setup['jsonl']}", "--out", out,
            "--threads", "2", "--nproc", "2",
            "--deepspeed", ROOT / "conf" / "deepspeed" / "zero2_fp32.json"]
    r = run_tool("train.py", *args)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "++use_deepspeed=true" in log and "rank: 1" in log
    assert (out / "model.pt" / "mp_rank_00_model_states.pt").is_file()  # a directory
    assert (out / "model.pt.ep1").is_dir()
    assert len(list((out / "model.pt").glob("zero_pp_rank_*_optim_states.pt"))) == 2  # ZeRO
    chain = json.loads((out / "chain.json").read_text())
    assert chain["differ"] == [] and chain["shared"] == len(load_state(setup["twin"] / "model.pt"))
    first = state_checksum(load_state(out / "final.pt"))
    assert first != state_checksum(load_state(setup["twin"] / "model.pt"))
    # one more epoch: not the same inputs, so funasr resumes from the model.pt directory
    r = run_tool("train.py", *args, "--set", "train_conf.max_epoch=2")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "Checkpoint loaded successfully" in log and (out / "model.pt.ep2").is_dir()
    assert state_checksum(load_state(out / "final.pt")) != first
    check_rank_metrics(out, single_run, 2)
    export_and_decode(setup, out / "final.pt", tmp_path)


def test_deepspeed_config_checked(tmp_path):
    from funasr_recipe.training import check_deepspeed_config
    z3 = tmp_path / "z3.json"
    z3.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    with pytest.raises(DataError, match="ZeRO-3"):
        check_deepspeed_config(z3)
    with pytest.raises(DataError, match="no such file"):
        check_deepspeed_config(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        check_deepspeed_config(bad)
    for name in ("zero2_fp32.json", "zero2_bf16.json"):
        assert check_deepspeed_config(ROOT / "conf" / "deepspeed" / name).is_file()


def test_torchrun_command_standalone_and_srun():
    from funasr_recipe.training import torchrun_command
    cmd = torchrun_command(["t.py", "A"], 2)
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                       "t.py", "A"]
    with pytest.raises(DataError, match="srun launcher"):
        torchrun_command(["t.py"], 2, num_nodes=2)
    with pytest.raises(DataError, match="inside a Slurm job"):
        torchrun_command(["t.py"], 2, num_nodes=2, launcher="srun", env={})
    env = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "gpu[07-08]",
           "SLURM_CPUS_PER_TASK": "16"}
    seen = []

    def hostnames(spec):
        seen.append(spec)
        return ["gpu07", "gpu08"]
    cmd = torchrun_command(["t.py", "A"], 8, num_nodes=2, launcher="srun", env=env,
                           hostnames=hostnames)
    assert seen == ["gpu[07-08]"]
    assert cmd[:6] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                       "--kill-on-bad-exit=1", "--cpus-per-task=16"]
    assert cmd[7:] == ["-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=8",
                       "--rdzv-backend=c10d", "--rdzv-endpoint=gpu07:21234",
                       "--rdzv-id=1234", "t.py", "A"]
    with pytest.raises(DataError, match="has 2 node"):
        torchrun_command(["t.py"], 8, num_nodes=3, launcher="srun", env=env,
                         hostnames=hostnames)


@pytest.mark.cluster
def test_srun_launcher_in_a_real_slurm_job(setup, tmp_path):
    """Multi-node launch path (srun + torchrun per node, c10d rendezvous) inside a real
    Slurm job, on the one node CI has: 2 ranks train and the chain is verified."""
    from test_backends import scheduler_down
    why = scheduler_down("slurm")
    if why:
        if os.environ.get("FUNASR_RECIPE_REQUIRE_SLURM") == "1":
            pytest.fail(f"FUNASR_RECIPE_REQUIRE_SLURM=1 but Slurm is down: {why}")
        pytest.skip(f"no slurm: {why} (start one with: sudo .ci/start_slurm.sh)")
    out, log = tmp_path / "srun", tmp_path / "train.log"
    r = subprocess.run(
        [str(ROOT / "utils" / "slurm.pl"), "--num-nodes", "1", "--num-threads", "2", str(log),
         sys.executable, str(ROOT / "local" / "train.py"), "--conf", str(setup["conf"]),
         "--section", "stage1", "--model-dir", str(setup["twin"]), "--train",
         str(setup["jsonl"]), "--valid", str(setup["jsonl"]), "--out", str(out),
         "--threads", "2", "--nproc", "2", "--launcher", "srun"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    text = log.read_text() if log.exists() else ""
    assert r.returncode == 0, r.stderr[-2000:] + text[-4000:]
    assert "DDP: srun --nodes=1 --ntasks=1 --ntasks-per-node=1" in text
    assert "--rdzv-backend=c10d" in text and "rank: 1" in text
    chain = json.loads((out / "chain.json").read_text())
    assert chain["differ"] == [] and (out / "final.pt").is_file()


@pytest.mark.slow
def test_metrics_tsv_agrees_with_funasr_log_resumes_and_is_plotted(setup, tmp_path):
    """OUT/metrics.tsv (the recipe's Trainer): a row per step funasr logs, with
    its numbers; the valid sets before training (epoch 0) and after each epoch;
    a resumed run continues it without duplicates; plot_curves draws from it."""
    from funasr_recipe.curves import parse_log
    from funasr_recipe.metrics import read_metrics

    exp = tmp_path / "exp"
    out = exp / "stage1"
    small = ("--set", "dataset_conf.batch_size=2", "--set", "train_conf.log_interval=1")
    r = train_epochs(setup, out, 2, *small)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    rows = read_metrics(out / "metrics.tsv")
    scraped = parse_log(log.splitlines(keepends=True), "stage1", main_set="valid")
    train = [x for x in rows if x.set == "train"]
    assert len(train) == 8 and [x.step for x in train] == list(range(1, 9))  # 4 batches x 2
    assert [(x.step, x.epoch) for x in train] == [(p.step, p.epoch) for p in scraped.train]
    for x, p in zip(train, scraped.train):   # funasr logs 3 decimals, lr 3 significant
        assert x.loss == pytest.approx(p.loss, abs=6e-4)
        assert x.loss_avg == pytest.approx(p.loss_avg, abs=6e-4)
        assert x.acc_avg == pytest.approx(p.acc_avg, abs=6e-4)
        assert x.lr == pytest.approx(p.lr, rel=6e-3)
    valid = {(x.set, x.epoch): x for x in rows if x.set != "train"}
    assert set(valid) == {(s, e) for s in ("valid", "general") for e in (0, 1, 2)}
    assert valid[("valid", 0)].step == 0 and valid[("valid", 2)].step == 8
    assert valid[("valid", 2)].checkpoint == "model.pt.ep2"
    seen = {(v.set, v.epoch): v for v in scraped.valid}
    for e in (1, 2):   # funasr's own validation (ranking) and the extra set, as logged
        assert valid[("valid", e)].loss == pytest.approx(seen[("valid", e)].loss, abs=6e-4)
        assert valid[("general", e)].loss == pytest.approx(seen[("general", e)].loss, abs=6e-5)
    tsv = (out / "valid_general.tsv").read_text().splitlines()[1:]
    assert [float(x.split("\t")[1]) for x in tsv] == pytest.approx(
        [valid[("general", e)].loss for e in (1, 2)], abs=1e-6)
    # the same set (valid and general are one jsonl here) before training gives one loss
    assert valid[("valid", 0)].loss == pytest.approx(valid[("general", 0)].loss, rel=1e-6)
    # interrupted in epoch 3 after a row was written: the resumed run drops it
    with open(out / "metrics.tsv", "a", encoding="utf-8") as f:
        f.write("9\t3\ttrain\t9.0\t\t9.0\t0.0\t1e-3\t\n10\t3\ttr")   # and a torn line
    r = train_epochs(setup, out, 3, *small)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    again = read_metrics(out / "metrics.tsv")
    assert again[:len(rows)] == rows                  # the first run's rows, unchanged
    steps = [(x.set, x.step) for x in again]
    assert len(steps) == len(set(steps))             # no row twice
    assert [x.step for x in again if x.set == "train"] == list(range(1, 13))
    assert all(x.loss != 9.0 for x in again)
    assert {x.epoch for x in again if x.set == "general"} == {0, 1, 2, 3}
    # a forgetting budget set afterwards: the same run (nothing retrained), the choice
    # made from metrics.tsv; every epoch within a wide budget: funasr's own average
    plan = tmp_path / "stages.yaml"
    plan.write_text("stages:\n  - {name: stage1, general: 1, domain: 1, general_budget: 10}\n")
    r = train_epochs(setup, out, 3, *small, "--plan", plan)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "set aside" not in log and not (out / "model.pt.ep4").exists()
    assert "forgetting budget 10" in log and "chosen epochs [" in log
    rep = json.loads((out / "budget.json").read_text())
    assert sorted(rep["chosen"]) == sorted(rep["unconstrained"]) == [1, 2, 3]
    assert rep["start_general_loss"] == valid[("general", 0)].loss
    assert (out / "final.pt").resolve() == (out / "model.pt.budget").resolve()
    ours, funasrs = load_state(out / "final.pt"), load_state(out / "model.pt.avg3")
    assert ours.keys() == funasrs.keys() and all(torch.equal(ours[k], funasrs[k]) for k in ours)
    r = run_tool("train.py", *train_args(setup, out, 3), *small, "--plan", plan)
    assert r.returncode == 0 and "skipped" in r.stdout + r.stderr
    # the plot reads metrics.tsv (no logs at all under EXP/logs)
    r = run_tool("plot_curves.py", "--exp", exp, "--out", tmp_path / "curves")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "curves" / "curves.png").read_bytes().startswith(b"\x89PNG")
    drawn = (tmp_path / "curves" / "train.tsv").read_text().splitlines()
    assert len(drawn) == 1 + 12
    vdrawn = [x.split("\t") for x in (tmp_path / "curves" / "valid.tsv").read_text().splitlines()]
    general = {int(x[2]): float(x[5]) for x in vdrawn if x[1] == "general"}
    assert general == pytest.approx({e: x.loss for (s, e), x in valid.items() if s == "general"}
                                    | {3: [x for x in again if x.set == "general"][-1].loss})
