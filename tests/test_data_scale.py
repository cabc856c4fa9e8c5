"""Data stages at scale: every header read once (in parallel), exact sample
counts carried in utt2num_samples, blocks of lines decoded at once, jsonl
shards for funasr's trainer. Every shortcut must give the same bytes as the
plain way; nothing here depends on timing."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from funasr_recipe import textfile
from funasr_recipe.audio import Prober, audio_info, probe, wav_header_info
from funasr_recipe.datadir import (NUM_SAMPLES, Utt, build_utts, load_datadir, read_kaldi,
                                   validate_datadir, write_datadir)
from funasr_recipe.errors import DataError
from funasr_recipe.jsonl import paraformer_lines, shard_paths, write_jsonl
from helpers import run_tool, write_wav


# ----------------------------------------------------------------------------
# Headers

def _riff(chunks: list[tuple[bytes, bytes]], riff_size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
                              for cid, data in chunks)
    return b"RIFF" + struct.pack("<I", riff_size if riff_size is not None else len(body)) + body


def _fmt(tag=1, channels=1, rate=16000, bits=16, extra=b""):
    block = channels * bits // 8
    return b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits) + extra


def wav_variants(d: Path) -> list[Path]:
    """WAV files soundfile writes, and hand-made ones with other chunk layouts."""
    rng = np.random.default_rng(0)
    out = []
    for i, (sub, sr, ch, n) in enumerate([("PCM_16", 16000, 1, 8001), ("PCM_24", 16000, 1, 333),
                                          ("PCM_32", 8000, 2, 1000), ("FLOAT", 16000, 1, 4000),
                                          ("DOUBLE", 22050, 1, 99), ("PCM_U8", 16000, 1, 777),
                                          ("PCM_16", 44100, 2, 12345), ("PCM_16", 16000, 1, 1)]):
        p = d / f"sf{i}.wav"
        sf.write(str(p), rng.standard_normal((n, ch)).astype("float32") * 0.1, sr, subtype=sub)
        out.append(p)
    p = d / "sf.flac"
    sf.write(str(p), rng.standard_normal(5000).astype("float32") * 0.1, 16000)
    out.append(p)
    pcm = rng.integers(-3000, 3000, size=1601).astype("<i2").tobytes()
    made = {
        "list_before_data": [_fmt(), (b"LIST", b"INFOISFT\x05\0\0\0abcd\0"), (b"data", pcm)],
        "odd_chunk_padding": [_fmt(), (b"junk", b"abc"), (b"data", pcm)],
        "list_after_data": [_fmt(), (b"data", pcm), (b"LIST", b"INFO")],
        "fmt_18": [_fmt(extra=b"\0\0"), (b"data", pcm)],
        "stereo_odd_bytes": [_fmt(channels=2), (b"data", pcm[:-1])],
        "extensible": [_fmt(tag=0xFFFE, extra=b"\x16\0" + b"\0" * 22), (b"data", pcm)],
        "alaw": [_fmt(tag=6, bits=8), (b"fact", struct.pack("<I", 10)), (b"data", b"\x55" * 10)],
    }
    for name, chunks in made.items():
        p = d / f"{name}.wav"
        p.write_bytes(_riff(chunks))
        out.append(p)
    truncated = d / "truncated.wav"  # the data chunk claims more than the file holds
    raw = _riff([_fmt(), (b"data", pcm)])
    truncated.write_bytes(raw[:-100])
    out.append(truncated)
    zero = d / "zero_size_data.wav"  # streamed: sizes left 0
    zero.write_bytes(b"RIFF\0\0\0\0WAVE" + _riff([_fmt()])[12:] + b"data\0\0\0\0" + pcm)
    out.append(zero)
    return out


def test_wav_header_is_what_soundfile_reports(tmp_path):
    read_directly = 0
    for p in wav_variants(tmp_path):
        try:
            want = audio_info(p)
        except DataError:
            want = None
        got = wav_header_info(p)
        if got is not None:
            read_directly += 1
            assert got == want, p.name
        # whatever the fast path makes of it, probe() gives soundfile's figures
        probed = probe(str(p))
        if want is None:
            assert isinstance(probed, str) and "cannot read audio" in probed
        else:
            assert probed == (str(p.resolve()), want), p.name
    assert read_directly >= 10  # the plain files do not need soundfile


def test_probe_names_missing_empty_and_resolves_links(tmp_path):
    wav = write_wav(tmp_path / "real" / "a.wav", seconds=0.25)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "b.wav").symlink_to(wav)
    (tmp_path / "empty.wav").write_bytes(b"")
    assert probe(str(tmp_path / "nope.wav")) == "missing"
    assert probe(str(tmp_path / "real")) == "missing"  # a folder is no audio file
    assert "zero-length audio file (0 bytes)" in probe(str(tmp_path / "empty.wav"))
    for p in (tmp_path / "link" / "a.wav", tmp_path / "b.wav", tmp_path / "real" / ".." / "b.wav"):
        assert probe(str(p)) == (str(wav.resolve()), audio_info(wav)), p
        assert probe(str(p))[0] == str(Path(p).resolve())


# ----------------------------------------------------------------------------
# Stage 1: the same data dir whatever --nj, with exact sample counts

def kaldi_input(tmp_path: Path, n: int = 40) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    lines, texts = [], []
    for i in range(n):
        sr = 8000 if i == 7 else 16000  # one bad rate, refused or dropped
        wav = write_wav(tmp_path / "w" / f"f{i}.wav", seconds=0.2 + 0.0173 * i, sr=sr, seed=i)
        path = str(wav) if i != 11 else str(tmp_path / "w" / "gone.wav")
        lines.append(f"spk{i % 3}-{i:03d} {path}\n")
        texts.append(f"spk{i % 3}-{i:03d} 今天 第{i}句\n")
    (src / "wav.scp").write_text("".join(sorted(lines)))
    (src / "text").write_text("".join(sorted(texts)))
    return src


def files_of(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_parallel_header_reads_give_the_same_data_dir(tmp_path, monkeypatch):
    src = kaldi_input(tmp_path)
    monkeypatch.setattr(Prober, "min_parallel", 2)
    outs = {}
    for nj in (1, 3):
        out = tmp_path / f"out{nj}"
        r = run_tool("prepare_data.py", "--in", src / "wav.scp", "--text", src / "text",
                     "--out", out, "--skip-bad", "--nj", nj)
        assert r.returncode == 0, r.stderr
        outs[nj] = files_of(out)
    assert outs[1] == outs[3]
    assert "dropped 2 of 40 items" in r.stdout
    dropped = outs[1]["dropped.tsv"].decode()
    assert "8000 Hz" in dropped and "gone.wav' does not exist" in dropped
    # the same in this process, through the pool (min_parallel lowered)
    items = read_kaldi(src / "wav.scp", src / "text")
    a = build_utts(items, tmp_path / "x", skip_bad=True, nj=1)
    b = build_utts(items, tmp_path / "x", skip_bad=True, nj=2)
    assert a == b and len(a) == 38
    # utt2num_samples: the exact counts, keyed like every other file
    nums = dict(line.split() for line in outs[1][NUM_SAMPLES].decode().splitlines())
    wavs = dict(line.split() for line in outs[1]["wav.scp"].decode().splitlines())
    assert nums.keys() == wavs.keys()
    assert all(int(nums[k]) == sf.info(wavs[k]).frames for k in wavs)
    # and the first bad item stops the run the same way whatever --nj
    errs = set()
    for nj in (1, 3):
        r = run_tool("prepare_data.py", "--in", src / "wav.scp", "--text", src / "text",
                     "--out", tmp_path / f"bad{nj}", "--nj", nj)
        assert r.returncode == 1
        errs.add(r.stderr.strip().splitlines()[-1])
    assert len(errs) == 1 and "8000 Hz" in errs.pop()


def test_utt2num_samples_travels_and_is_checked(tmp_path):
    src = kaldi_input(tmp_path, n=12)
    out = tmp_path / "all"
    r = run_tool("prepare_data.py", "--in", src / "wav.scp", "--text", src / "text",
                 "--out", out, "--skip-bad")
    assert r.returncode == 0, r.stderr
    r = run_tool("split_data.py", "--src", out, "--out-prefix", tmp_path / "p", "--ratios", "2:1:1")
    assert r.returncode == 0, r.stderr
    for part in ("train", "valid", "test"):
        d = tmp_path / f"p_{part}"
        assert (d / NUM_SAMPLES).read_text().splitlines() == [
            line for line in (out / NUM_SAMPLES).read_text().splitlines()
            if line.split()[0] in (d / "wav.scp").read_text()]
    d = tmp_path / "p_train"
    good = (d / NUM_SAMPLES).read_text()
    (d / NUM_SAMPLES).write_text(good.replace(good.split("\n")[0].split()[1], "3.5", 1))
    with pytest.raises(DataError, match=r"utt2num_samples:\d+: key '.*': '3.5' is not a positive whole"):
        validate_datadir(d)
    (d / NUM_SAMPLES).write_text("".join(good.splitlines(keepends=True)[1:]))
    with pytest.raises(DataError, match=r"utterance '.*' of utt2spk is missing from .*utt2num_samples"):
        load_datadir(d)
    # a data dir written without counts drops an earlier run's file
    utts = load_datadir(tmp_path / "p_valid")
    write_datadir(d, [Utt(u.key, u.spk, u.wav, u.text, u.dur) for u in utts])
    assert not (d / NUM_SAMPLES).exists()


def test_jsonl_from_utt2num_samples_needs_no_audio(tmp_path):
    src = kaldi_input(tmp_path, n=12)
    out = tmp_path / "all"
    assert run_tool("prepare_data.py", "--in", src / "wav.scp", "--text", src / "text",
                    "--out", out, "--skip-bad").returncode == 0
    from_headers = tmp_path / "h"
    from_headers.mkdir()
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur"):
        (from_headers / name).write_bytes((out / name).read_bytes())
    want = paraformer_lines(from_headers)  # reads every header
    (tmp_path / "w").rename(tmp_path / "w.away")  # no audio any more
    assert paraformer_lines(out) == want
    r = run_tool("make_jsonl.py", "--data-dir", out, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines() == want


# ----------------------------------------------------------------------------
# Reading and writing tables

def test_blocks_of_lines_read_as_line_by_line(tmp_path, monkeypatch):
    p = tmp_path / "t"
    body = "".join(f"k{i:03d} 值{i}\n" for i in range(50))
    p.write_bytes(body.encode() + b"k050 bad\rline\nk051 x\n")
    expect = [(i + 1, f"k{i:03d} 值{i}") for i in range(50)]
    for block in (1 << 22, 5, 64):
        monkeypatch.setattr(textfile, "_BLOCK", block)
        got = []
        with pytest.raises(DataError, match=r":51: carriage return"):
            for x in textfile.read_lines(p):
                got.append(x)
        assert got == expect
        p2 = tmp_path / "u"
        p2.write_bytes(body.encode() + "k050 末行".encode())  # no final newline
        assert list(textfile.read_lines(p2)) == expect + [(51, "k050 末行")]
        p3 = tmp_path / "v"
        p3.write_bytes(body.encode() + b"k050 \xff\n")
        with pytest.raises(DataError, match=r":51: not valid UTF-8"):
            list(textfile.read_lines(p3))


def test_write_datadir_refuses_before_writing(tmp_path):
    utts = [Utt("a-1", "a", "/x/1.wav", "一", 1.0, 16000), Utt("a-1", "a", "/x/2.wav", "二", 1.0, 16000)]
    with pytest.raises(DataError, match="duplicate key 'a-1'"):
        write_datadir(tmp_path / "d", utts)
    assert not (tmp_path / "d").exists()
    utts = [Utt("a-1", "a", "/x/1.wav", "一", 0.0001, 2)]
    with pytest.raises(DataError, match="utt2dur:1: duration of 'a-1' must be one positive number of seconds, got '0.000'"):
        write_datadir(tmp_path / "d", utts)
    assert not (tmp_path / "d").exists()


# ----------------------------------------------------------------------------
# Shards

def test_shards_hold_every_line_once_dealt_round_robin(tmp_path):
    lines = [json.dumps({"key": f"{'d' if i % 4 else 'g'}-{i:03d}"}) for i in range(23)]
    out = tmp_path / "dump" / "stage1_train.jsonl"
    assert write_jsonl(out, iter(lines), shards=4) == 23
    assert out.read_text().splitlines() == lines
    listing, folder = shard_paths(out)
    assert listing == tmp_path / "dump" / "stage1_train.list"
    shards = [Path(x) for x in listing.read_text().splitlines()]
    assert shards == [(folder / f"{i:05d}.jsonl").resolve() for i in range(4)]
    for i, s in enumerate(shards):
        assert s.read_text().splitlines() == lines[i::4]
    # fewer shards later: the extra files go; none: the list and folder go
    write_jsonl(out, iter(lines), shards=2)
    assert sorted(os.listdir(folder)) == ["00000.jsonl", "00001.jsonl"]
    write_jsonl(out, iter(lines), shards=1)
    assert not listing.exists() and not folder.exists()
    assert out.read_text().splitlines() == lines
    with pytest.raises(DataError, match="--shards 0"):
        write_jsonl(out, iter(lines), shards=0)


@pytest.mark.slow
def test_training_reads_the_shards(tmp_path):
    """A tiny twin trained on a shard list: train.py sets data_split_num to
    the number of shards, funasr loads one shard per slice, and both slices
    are trained on; the shards' content is an input of the stage."""
    from funasr_recipe.twin_paraformer import load_arch, make_paraformer_twin
    from helpers import ROOT

    texts = ["你好", "世界", "你好世界", "好"]
    utts = [Utt(f"s-{i}", "s", str(write_wav(tmp_path / "w" / f"s-{i}.wav", 0.5 + 0.1 * i,
                                                seed=i)), texts[i % 4], 0.5 + 0.1 * i)
            for i in range(6)]
    write_datadir(tmp_path / "data", utts)
    jsonl = tmp_path / "dump" / "train.jsonl"
    r = run_tool("make_jsonl.py", "--data-dir", tmp_path / "data", "--out", jsonl, "--shards", 2)
    assert r.returncode == 0, r.stderr
    listing, folder = shard_paths(jsonl)
    twin = make_paraformer_twin(tmp_path / "twin", list("你好世界"), jsonl,
                                load_arch(ROOT / "conf" / "paraformer" / "twin.yaml"), seed=0)
    conf = tmp_path / "train.yaml"
    conf.write_text((ROOT / "conf" / "paraformer" / "train.yaml").read_text()
                    .replace("train_conf.max_epoch: 6", "train_conf.max_epoch: 1"))
    out = tmp_path / "stage1"
    r = run_tool("train.py", "--conf", conf, "--section", "stage1", "--model-dir", twin,
                 "--train", listing, "--valid", jsonl, "--out", out, "--threads", "1")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    # the one epoch loaded the training index twice, one shard each time
    assert log.count("is_training: True, data_split_num: 2, data_split_i:") == 2
    for i in range(2):
        shard = f"{folder.resolve()}/{i:05d}.jsonl"
        assert f"data_split_num: 2, data_split_i: {i}, \nfile_list: ['{shard}\\n']" in log
    assert (out / "final.pt").exists()
    # the shards are inputs: a changed shard makes the stage run again, the same skips
    r = run_tool("train.py", "--conf", conf, "--section", "stage1", "--model-dir", twin,
                 "--train", listing, "--valid", jsonl, "--out", out, "--threads", "1")
    assert r.returncode == 0 and "complete for the same inputs, skipped" in r.stderr + r.stdout
    shard0 = folder / "00000.jsonl"
    shard0.write_text(shard0.read_text().splitlines()[0] + "\n")
    r = run_tool("train.py", "--conf", conf, "--section", "stage1", "--model-dir", twin,
                 "--train", listing, "--valid", jsonl, "--out", out, "--threads", "1")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "complete for the same inputs, skipped" not in log and "00000.jsonl" in log
    shard0.unlink()
    r = run_tool("train.py", "--conf", conf, "--section", "stage1", "--model-dir", twin,
                 "--train", listing, "--valid", jsonl, "--out", out, "--threads", "1")
    assert r.returncode != 0 and f"{listing}:1: shard" in r.stderr, r.stderr[-2000:]


# ----------------------------------------------------------------------------
# An existing Kaldi utt2dur in place of the headers (prepare_data.py --utt2dur)

def _kaldi_input(tmp_path: Path, n: int = 4) -> Path:
    """A wav.scp + text + utt2dur whose files are NOT audio: reading a header
    fails, so only a run that opens no file can prepare them."""
    src = tmp_path / "src"
    src.mkdir()
    scp, text, durs = [], [], []
    for i in range(n):
        p = src / f"u{i}.wav"
        p.write_bytes(b"not audio: a header read fails here")
        scp.append(f"s{i % 2}-u{i} {p}")
        text.append(f"s{i % 2}-u{i} 你好 {i}")
        durs.append(f"s{i % 2}-u{i} {1.25 + i / 1000:.3f}")
    (src / "wav.scp").write_text("\n".join(scp) + "\n")
    (src / "text").write_text("\n".join(text) + "\n")
    (src / "utt2dur").write_text("\n".join(durs) + "\n")
    return src


def test_prepare_takes_an_existing_utt2dur_and_opens_no_audio_file(tmp_path):
    src = _kaldi_input(tmp_path)
    args = ["--in", src / "wav.scp", "--text", src / "text"]
    # control: without --utt2dur every header is read, and these files are not audio
    r = run_tool("prepare_data.py", *args, "--out", tmp_path / "headers")
    assert r.returncode != 0 and "cannot read audio" in r.stderr
    r = run_tool("prepare_data.py", *args, "--utt2dur", src / "utt2dur", "--out", tmp_path / "d",
                 "--nj", "2")
    assert r.returncode == 0, r.stderr
    assert "durations of 4 utterances from" in r.stdout and "not opened" in r.stdout
    d = tmp_path / "d"
    validate_datadir(d)
    assert (d / "utt2dur").read_text().splitlines() == sorted(
        (src / "utt2dur").read_text().splitlines())
    nums = dict(line.split() for line in (d / NUM_SAMPLES).read_text().splitlines())
    assert nums == {f"s{i % 2}-u{i}": str(round((1.25 + i / 1000) * 16000)) for i in range(4)}
    # the jsonl stage takes the lengths from there: still no file opened
    lines = [json.loads(x) for x in paraformer_lines(d)]
    assert [x["source_len"] for x in lines] == [int(int(nums[x["key"]]) / 160) for x in lines]


def test_utt2dur_flaws_name_the_key_and_lose_nothing(tmp_path):
    src = _kaldi_input(tmp_path)
    durs = (src / "utt2dur").read_text().splitlines()
    (src / "u2.wav").unlink()  # a file the wav.scp names is gone: still found out
    (src / "utt2dur").write_text("\n".join([durs[0], durs[1].split()[0] + " 0", durs[2]]) + "\n")
    args = ["--in", src / "wav.scp", "--text", src / "text", "--utt2dur", src / "utt2dur"]
    r = run_tool("prepare_data.py", *args, "--out", tmp_path / "strict")
    assert r.returncode != 0
    assert "s1-u1" in r.stderr and "positive number of seconds" in r.stderr
    r = run_tool("prepare_data.py", *args, "--skip-bad", "--out", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    kept = (tmp_path / "d" / "wav.scp").read_text().split()[::2]
    assert kept == ["s0-u0"]
    why = {row.split("\t")[1]: row for row in
           (tmp_path / "d" / "dropped.tsv").read_text().splitlines()[1:]}
    assert set(why) == {"s1-u1", "s0-u2", "s1-u3"}
    assert "positive number of seconds" in why["s1-u1"]
    assert "does not exist" in why["s0-u2"]
    assert "no duration for it" in why["s1-u3"] and "utt2dur" in why["s1-u3"]


def test_utt2dur_with_keys_the_wav_scp_lacks_or_with_resample_is_refused(tmp_path):
    src = _kaldi_input(tmp_path)
    with open(src / "utt2dur", "a") as f:
        f.write("s9-stray 1.000\n")
    with pytest.raises(DataError, match=r"utt2dur: 1 key\(s\) have no audio .* 's9-stray'"):
        read_kaldi(src / "wav.scp", src / "text", utt2dur=src / "utt2dur")
    r = run_tool("prepare_data.py", "--in", src / "wav.scp", "--text", src / "text",
                 "--utt2dur", src / "utt2dur", "--resample", "--out", tmp_path / "d")
    assert r.returncode != 0 and "--resample" in r.stderr and "--utt2dur" in r.stderr
    r = run_tool("prepare_data.py", "--in", src, "--utt2dur", src / "utt2dur",
                 "--out", tmp_path / "d")
    assert r.returncode != 0 and "goes with a wav.scp input" in r.stderr
