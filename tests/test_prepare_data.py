"""local/prepare_data.py and funasr_recipe.datadir: good input, and every bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import soundfile as sf

from funasr_recipe.datadir import load_datadir, validate_datadir
from funasr_recipe.io import DataError, read_table
from helpers import run_tool, write_utt, write_wav


def good_folder(root: Path) -> Path:
    write_utt(root, "spkB", "u1", "今天天气很好", seed=1)
    write_utt(root, "spkA", "u2", "hello world", seed=2)
    write_utt(root, "spkA", "spkA_u3", "我用 iPhone 打电话", seed=3)
    return root


def test_folder_to_datadir(tmp_path):
    src = good_folder(tmp_path / "in")
    out = tmp_path / "data"
    r = run_tool("prepare_data.py", "--in", src, "--out", out)
    assert r.returncode == 0, r.stderr
    wav = read_table(out / "wav.scp")
    # keys are speaker-prefixed (an already prefixed stem is kept) and C-sorted
    assert list(wav) == ["spkA-u2", "spkA_u3", "spkB-u1"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in wav.values())
    assert read_table(out / "text")["spkB-u1"] == "今天天气很好"
    assert read_table(out / "utt2spk") == {"spkA-u2": "spkA", "spkA_u3": "spkA", "spkB-u1": "spkB"}
    assert read_table(out / "spk2utt") == {"spkA": "spkA-u2 spkA_u3", "spkB": "spkB-u1"}
    assert float(read_table(out / "utt2dur")["spkA-u2"]) == pytest.approx(0.5, abs=1e-3)
    assert not (out / "dropped.tsv").exists()
    validate_datadir(out)
    assert "3 utterances" in r.stderr


def test_second_run_is_identical(tmp_path):
    src = good_folder(tmp_path / "in")
    out = tmp_path / "data"
    assert run_tool("prepare_data.py", "--in", src, "--out", out).returncode == 0
    first = {f.name: f.read_bytes() for f in out.iterdir()}
    assert run_tool("prepare_data.py", "--in", src, "--out", out).returncode == 0
    assert {f.name: f.read_bytes() for f in out.iterdir()} == first


BAD_CASES = {
    "missing transcript": (lambda d: write_wav(d / "s1" / "x.wav"), "missing transcript"),
    "empty transcript": (lambda d: write_utt(d, "s1", "x", "   "), "empty transcript"),
    "non-utf8": (lambda d: write_utt(d, "s1", "x", "你好".encode("gbk")), "not valid UTF-8"),
    "crlf": (lambda d: write_utt(d, "s1", "x", b"hello\r\n"), "CRLF"),
    "bom": (lambda d: write_utt(d, "s1", "x", "\ufeffhello".encode()), "byte-order mark"),
    "zero-length audio": (lambda d: write_utt(d, "s1", "x", "hi", seconds=0), "zero-length"),
    "unreadable audio": (lambda d: ((d / "s1").mkdir(parents=True),
                                    (d / "s1" / "x.wav").write_bytes(b"RIFF0000garbage"),
                                    (d / "s1" / "x.txt").write_text("hi\n")),
                         "cannot read audio"),
    "8 kHz audio": (lambda d: write_utt(d, "s1", "x", "hi", sr=8000), "--resample"),
    "two-line transcript": (lambda d: write_utt(d, "s1", "x", "one\ntwo"), "one line"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_named(tmp_path, case):
    make, message = BAD_CASES[case]
    src = tmp_path / "in"
    write_utt(src, "s0", "ok", "好的")
    make(src)
    out = tmp_path / "data"
    r = run_tool("prepare_data.py", "--in", src, "--out", out)
    assert r.returncode == 1
    assert message in r.stderr
    assert str(src / "s1" / "x") in r.stderr  # names the culprit file
    assert not (out / "wav.scp").exists()  # nothing half-written


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_skip_bad_writes_dropped(tmp_path, case):
    make, message = BAD_CASES[case]
    src = tmp_path / "in"
    write_utt(src, "s0", "ok", "好的")
    make(src)
    out = tmp_path / "data"
    r = run_tool("prepare_data.py", "--in", src, "--out", out, "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert list(read_table(out / "wav.scp")) == ["s0-ok"]
    rows = (out / "dropped.tsv").read_text().splitlines()
    assert rows[0] == "where\tkey\treason"
    assert len(rows) == 2 and message in rows[1] and "s1" in rows[1]


def test_duplicate_key_is_named(tmp_path):
    src = tmp_path / "in"
    write_utt(src, "s1", "x", "one")
    write_wav(src / "s1" / "x.flac")  # same stem, same speaker: same key
    (src / "s1" / "x.txt").write_text("one\n")
    r = run_tool("prepare_data.py", "--in", src, "--out", tmp_path / "d")
    assert r.returncode == 1 and "duplicate key 's1-x'" in r.stderr


def test_resample_converts(tmp_path):
    src = tmp_path / "in"
    write_utt(src, "s1", "x", "hi", seconds=1.0, sr=8000)
    out = tmp_path / "data"
    r = run_tool("prepare_data.py", "--in", src, "--out", out, "--resample")
    assert r.returncode == 0, r.stderr
    wav = read_table(out / "wav.scp")["s1-x"]
    info = sf.info(wav)
    assert info.samplerate == 16000 and info.channels == 1 and wav.startswith(str(out.resolve()))
    assert float(read_table(out / "utt2dur")["s1-x"]) == pytest.approx(1.0, abs=0.01)


def test_path_with_spaces(tmp_path):
    src = tmp_path / "my data"
    write_utt(src, "speaker one", "take 1", "你好")
    out = tmp_path / "data"
    r = run_tool("prepare_data.py", "--in", src, "--out", out)
    assert r.returncode == 0, r.stderr
    wav = read_table(out / "wav.scp")
    assert list(wav) == ["speaker_one-take_1"]  # no whitespace in keys
    assert wav["speaker_one-take_1"] == str((src / "speaker one" / "take 1.wav").resolve())
    assert read_table(out / "utt2spk")["speaker_one-take_1"] == "speaker_one"


def test_lists_jsonl_csv_xlsx_and_scp(tmp_path):
    import openpyxl

    a = write_wav(tmp_path / "audio" / "a.wav", seed=1)
    b = write_wav(tmp_path / "audio" / "b.wav", seed=2)
    rows = [{"path": "audio/a.wav", "text": "甲", "spk": "p1"},
            {"path": str(b), "text": "乙", "spk": "p2"}]
    (tmp_path / "l.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                              for r in rows), encoding="utf-8")
    with open(tmp_path / "l.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["path", "text", "spk"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    wb = openpyxl.Workbook()
    wb.active.append(["Path", "Transcript", "Speaker"])
    for r in rows:
        wb.active.append([r["path"], r["text"], r["spk"]])
    wb.save(tmp_path / "l.xlsx")
    (tmp_path / "wav.scp").write_text(f"p1-a {a}\np2-b {b}\n")
    (tmp_path / "text").write_text("p1-a 甲\np2-b 乙\n", encoding="utf-8")
    (tmp_path / "utt2spk").write_text("p1-a p1\np2-b p2\n")
    outs = []
    for name, extra in (("l.jsonl", []), ("l.csv", []), ("l.xlsx", []),
                        ("wav.scp", ["--text", tmp_path / "text", "--utt2spk", tmp_path / "utt2spk"])):
        out = tmp_path / f"d_{name}"
        r = run_tool("prepare_data.py", "--in", tmp_path / name, *extra, "--out", out)
        assert r.returncode == 0, (name, r.stderr)
        outs.append({f: (out / f).read_text() for f in ("wav.scp", "text", "utt2spk")})
    assert all(o == outs[0] for o in outs)
    assert outs[0]["text"] == "p1-a 甲\np2-b 乙\n"


def test_list_bad_row_names_line(tmp_path):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "l.jsonl").write_text('{"path": "a.wav", "text": "ok"}\n'
                                      '{"path": "missing.wav", "text": "x"}\n')
    r = run_tool("prepare_data.py", "--in", tmp_path / "l.jsonl", "--out", tmp_path / "d")
    assert r.returncode == 1
    assert f"{tmp_path / 'l.jsonl'}:2" in r.stderr and "does not exist" in r.stderr


def test_validate_rejects_unsorted_and_mismatch(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("b-1 /x.wav\na-1 /y.wav\n")
    (d / "text").write_text("b-1 x\na-1 y\n")
    (d / "utt2spk").write_text("b-1 b\na-1 a\n")
    (d / "spk2utt").write_text("a a-1\nb b-1\n")
    with pytest.raises(DataError, match="not sorted"):
        validate_datadir(d)
    (d / "wav.scp").write_text("a-1 /y.wav\nb-1 /x.wav\n")
    (d / "text").write_text("a-1 y\nb-1 x\n")
    (d / "utt2spk").write_text("a-1 a\nb-1 a\n")
    with pytest.raises(DataError, match="spk2utt does not match"):
        validate_datadir(d)


def test_load_datadir_roundtrip(tmp_path):
    src = good_folder(tmp_path / "in")
    out = tmp_path / "data"
    assert run_tool("prepare_data.py", "--in", src, "--out", out).returncode == 0
    utts = load_datadir(out)
    assert [u.key for u in utts] == ["spkA-u2", "spkA_u3", "spkB-u1"]
    assert utts[2].text == "今天天气很好" and utts[2].spk == "spkB"


def test_help():
    r = run_tool("prepare_data.py", "--help")
    assert r.returncode == 0 and "--skip-bad" in r.stdout and "--resample" in r.stdout
