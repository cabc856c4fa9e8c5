"""local/prepare_data.py and funasr_recipe.datadir: good input, and every bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import soundfile as sf

from funasr_recipe.datadir import load_datadir, validate_datadir
from funasr_recipe.errors import DataError
from funasr_recipe.tables import read_table
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
    "lone CR": (lambda d: write_utt(d, "s1", "x", b"hello\rworld\n"), "carriage return"),
    "zero-length audio": (lambda d: write_utt(d, "s1", "x", "hi", seconds=0), "zero-length"),
    "0-byte audio": (lambda d: (write_utt(d, "s1", "x", "hi"), (d / "s1" / "x.wav").write_bytes(b"")),
                     "zero-length audio file (0 bytes)"),
    "punctuation only (CJK)": (lambda d: write_utt(d, "s1", "x", "。。。！？"), "only punctuation"),
    "punctuation only (ASCII)": (lambda d: write_utt(d, "s1", "x", "..."), "only punctuation"),
    "punctuation only (mixed)": (lambda d: write_utt(d, "s1", "x", "“……” ，-"), "only punctuation"),
    "orphan transcript": (lambda d: ((d / "s1").mkdir(parents=True),
                                     (d / "s1" / "x.txt").write_text("no audio for me\n")),
                          "transcript without audio"),
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


@pytest.mark.slow
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


# --------------------------------------------------------------------------
# Encoding artefacts (BOM, CRLF) are normalised; other encodings are named

@pytest.mark.slow
def test_bom_and_crlf_are_normalised_everywhere(tmp_path):
    import openpyxl  # noqa: F401  (the xlsx path is covered above)

    a = write_wav(tmp_path / "audio" / "a.wav", seed=1)
    b = write_wav(tmp_path / "audio" / "b.wav", seed=2)
    rows = [{"path": "audio/a.wav", "text": "甲 一", "spk": "p1"},
            {"path": str(b), "text": "乙", "spk": "p2"}]
    # Python's csv module writes CRLF by default; Excel's "CSV UTF-8" adds a BOM
    with open(tmp_path / "python.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["path", "text", "spk"])
        w.writeheader()
        w.writerows(rows)
    with open(tmp_path / "excel.csv", "w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, ["path", "text", "spk"])
        w.writeheader()
        w.writerows(rows)
    assert (tmp_path / "excel.csv").read_bytes().startswith(b"\xef\xbb\xbfpath,text,spk\r\n")
    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbf" + "".join(
        f"{r['path']}\t{r['text']}\t{r['spk']}\r\n" for r in
        [{"path": "path", "text": "text", "spk": "spk"}] + rows).encode())
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + "".join(
        json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode())
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(
        rows, ensure_ascii=False, indent=1).replace("\n", "\r\n").encode())
    (tmp_path / "wav.scp").write_bytes(f"\ufeffp1-a {a}\r\np2-b {b}\r\n".encode())
    (tmp_path / "text").write_bytes("\ufeffp1-a 甲 一\r\np2-b 乙\r\n".encode())
    (tmp_path / "utt2spk").write_bytes(b"p1-a p1\r\np2-b p2\r\n")
    outs = []
    for name, extra, n_files in (
            ("python.csv", [], 1), ("excel.csv", [], 1), ("bom.tsv", [], 1),
            ("bom.jsonl", [], 1), ("bom.json", [], 1),
            ("wav.scp", ["--text", tmp_path / "text", "--utt2spk", tmp_path / "utt2spk"], 3)):
        out = tmp_path / f"d_{name}"
        r = run_tool("prepare_data.py", "--in", tmp_path / name, *extra, "--out", out)
        assert r.returncode == 0, (name, r.stderr)
        assert f"normalised {n_files} files" in r.stdout, (name, r.stdout)
        outs.append({f: (out / f).read_bytes() for f in ("wav.scp", "text", "utt2spk")})
    assert all(o == outs[0] for o in outs)
    assert outs[0]["text"] == "p1-a 甲 一\np2-b 乙\n".encode()


def test_bom_and_crlf_transcripts_in_a_folder(tmp_path):
    src = tmp_path / "in"
    write_utt(src, "s1", "bom", "\ufeff你好".encode())
    write_utt(src, "s1", "crlf", b"hello world\r\n")
    write_utt(src, "s1", "both", "\ufeff早上好\r\n".encode())
    write_utt(src, "s1", "clean", "clean")
    out = tmp_path / "d"
    r = run_tool("prepare_data.py", "--in", src, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "normalised 3 files (BOM and CRLF removed" in r.stdout
    assert (out / "text").read_bytes() == (
        "s1-bom 你好\ns1-both 早上好\ns1-clean clean\ns1-crlf hello world\n").encode()
    validate_datadir(out)
    # nothing to normalise: no such line
    write_utt(tmp_path / "clean", "s1", "clean", "clean")
    r = run_tool("prepare_data.py", "--in", tmp_path / "clean", "--out", tmp_path / "x")
    assert r.returncode == 0 and r.stdout == ""


def test_other_encoding_names_file_and_iconv_or_is_read_with_encoding(tmp_path):
    src = tmp_path / "in"
    write_utt(src, "s1", "x", "你好".encode("gbk"))
    r = run_tool("prepare_data.py", "--in", src, "--out", tmp_path / "d")
    assert r.returncode == 1
    assert f"{src / 's1' / 'x.txt'}: not valid UTF-8" in r.stderr
    assert f"iconv -f GBK -t UTF-8 {src / 's1' / 'x.txt'}" in r.stderr
    assert "--encoding" in r.stderr
    r = run_tool("prepare_data.py", "--in", src, "--out", tmp_path / "d", "--encoding", "gbk")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "text").read_bytes() == "s1-x 你好\n".encode()
    # a GBK csv with a BOM-less header, and a list in an encoding it is not
    write_wav(tmp_path / "a.wav")
    (tmp_path / "l.csv").write_bytes("path,text\na.wav,病历\n".encode("gbk"))
    r = run_tool("prepare_data.py", "--in", tmp_path / "l.csv", "--out", tmp_path / "e")
    assert r.returncode == 1 and f"{tmp_path / 'l.csv'}:2: not valid UTF-8" in r.stderr
    r = run_tool("prepare_data.py", "--in", tmp_path / "l.csv", "--out", tmp_path / "e",
                 "--encoding", "gb18030")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "e" / "text").read_text(encoding="utf-8") == "a 病历\n"
    r = run_tool("prepare_data.py", "--in", src, "--out", tmp_path / "f", "--encoding", "klingon")
    assert r.returncode == 1 and "unknown encoding 'klingon'" in r.stderr


# --------------------------------------------------------------------------
# Messages a user can act on

def test_missing_text_field_says_which_names_are_accepted(tmp_path):
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "b.wav")
    (tmp_path / "l.jsonl").write_text('{"path": "a.wav", "text": "ok"}\n'
                                      '{"path": "b.wav", "txt": "typo"}\n')
    r = run_tool("prepare_data.py", "--in", tmp_path / "l.jsonl", "--out", tmp_path / "d")
    assert r.returncode == 1
    assert (f"{tmp_path / 'l.jsonl'}:2: no transcript field; accepted names: text, transcript, "
            f"target, sentence, label (any case); this row has: path, txt") in r.stderr
    assert "empty transcript" not in r.stderr
    r = run_tool("prepare_data.py", "--in", tmp_path / "l.jsonl", "--out", tmp_path / "d",
                 "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert "no transcript field" in (tmp_path / "d" / "dropped.tsv").read_text()
    assert r.stdout.splitlines()[0] == (f"dropped 1 of 2 items; reasons in "
                                        f"{tmp_path / 'd' / 'dropped.tsv'}")
    # an empty value is an empty transcript, not a missing field
    (tmp_path / "e.jsonl").write_text('{"path": "a.wav", "text": ""}\n')
    r = run_tool("prepare_data.py", "--in", tmp_path / "e.jsonl", "--out", tmp_path / "e")
    assert r.returncode == 1 and "e.jsonl:1: empty transcript" in r.stderr
    # a table without a transcript column: the header is named
    (tmp_path / "l.csv").write_text("wav,words\na.wav,ok\n")
    r = run_tool("prepare_data.py", "--in", tmp_path / "l.csv", "--out", tmp_path / "c",
                 "--skip-bad")
    assert r.returncode == 1
    assert (f"{tmp_path / 'l.csv'}:1: the header has no transcript column; accepted names: "
            f"text, transcript, target, sentence, label (any case); the header is: wav, words"
            ) in r.stderr
    (tmp_path / "p.tsv").write_text("file_name\ttext\na.wav\tok\n")
    r = run_tool("prepare_data.py", "--in", tmp_path / "p.tsv", "--out", tmp_path / "c")
    assert r.returncode == 1 and "header has no audio path column; accepted names: path" in r.stderr


def test_folder_accounts_for_orphans_and_other_files(tmp_path):
    src = tmp_path / "in"
    write_utt(src, "s1", "ok", "好的")
    (src / "s1" / "orphan.txt").write_text("我没有音频\n", encoding="utf-8")
    (src / "README").write_text("about this data\n")
    (src / "s1" / "meta.json").write_text("{}\n")
    (src / ".DS_Store").write_bytes(b"\0")
    out = tmp_path / "d"
    r = run_tool("prepare_data.py", "--in", src, "--out", out)
    assert r.returncode == 1
    assert (f"{src / 's1' / 'orphan.txt'}: transcript without audio (no orphan.wav, .flac, "
            f".mp3, .ogg, .opus beside it)") in r.stderr
    r = run_tool("prepare_data.py", "--in", src, "--out", out, "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert list(read_table(out / "wav.scp")) == ["s1-ok"]
    dropped = (out / "dropped.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[:2] for row in dropped] == [[str(src / "s1" / "orphan.txt"),
                                                         "s1-orphan"]]
    ignored = (out / "ignored.tsv").read_text().splitlines()
    assert ignored[0] == "file\twhy"
    assert [row.split("\t")[0] for row in ignored[1:]] == [
        str(src / ".DS_Store"), str(src / "README"), str(src / "s1" / "meta.json")]
    assert all("neither audio" in row for row in ignored[1:])
    for name in (".DS_Store", "README", "meta.json"):  # each named once in the log
        assert r.stderr.count(f"ignored: {src}") == 3 and r.stderr.count(name) == 1
    assert f"ignored 3 files (neither audio nor transcripts); list in {out / 'ignored.tsv'}" \
        in r.stdout
    assert f"dropped 1 of 2 items; reasons in {out / 'dropped.tsv'}" in r.stdout
    # fixed input: the lists of an earlier run go
    (src / "s1" / "orphan.txt").unlink()
    for p in (src / "README", src / "s1" / "meta.json", src / ".DS_Store"):
        p.unlink()
    assert run_tool("prepare_data.py", "--in", src, "--out", out).returncode == 0
    assert not (out / "dropped.tsv").exists() and not (out / "ignored.tsv").exists()


# --------------------------------------------------------------------------
# The messy folder: every kind of bad input, encoding artefacts, other files
# and hostile names; every file must be accounted for.

HOSTILE = "R&D;touch${IFS}X;|(p)*'q\"`b` 病历 数据"


def make_messy_folder(root: Path, n_good: int = 4) -> dict[str, tuple[str, str, str]]:
    """Write the messy folder; return {file: (fate, detail, via)} for every file
    in it: ("data", key, audio), ("dropped", reason text, where) or
    ("ignored", "", file); ``via`` is the file whose entry accounts for it."""
    fate: dict[str, tuple[str, str, str]] = {}
    hs = root / HOSTILE                      # a speaker folder with a hostile name
    spk = "R&D;touch${IFS}X;|(p)*'q\"`b`_病历_数据"

    def utt(folder: Path, name: str, text, key: str | None, reason: str = "", **kw) -> Path:
        wav = write_utt(folder.parent, folder.name, name, text, **kw)
        state = ("data", key, str(wav)) if key else ("dropped", reason, str(wav))
        fate[str(wav)] = fate[str(wav.with_suffix(".txt"))] = state
        return wav

    utt(hs, "cost$x it's \"q\" 病历 数据", "病历数据", f"{spk}-cost$x_it's_\"q\"_病历_数据")
    utt(hs, "bom", "\ufeff你好".encode(), f"{spk}-bom")
    utt(hs, "crlf", b"hello world\r\n", f"{spk}-crlf")
    utt(hs, "both", "\ufeff早上好\r\n".encode(), f"{spk}-both")
    s2 = root / "s2"
    for i in range(n_good):
        utt(s2, f"good{i}", f"好的 {i}", f"s2-good{i}", seed=i)
    utt(s2, "empty", "   ", None, "empty transcript")
    utt(s2, "multi", "one\ntwo", None, "one line")
    utt(s2, "gbk", "你好".encode("gbk"), None, "not valid UTF-8")
    utt(s2, "lonecr", b"a\rb\n", None, "carriage return")
    utt(s2, "punct", "。。。！？", None, "only punctuation")
    utt(s2, "dots", "...", None, "only punctuation")
    utt(s2, "zerolen", "hi", None, "zero-length audio", seconds=0)
    utt(s2, "rate8k", "hi", None, "--resample", sr=8000)
    wav = utt(s2, "zerobyte", "hi", None, "zero-length audio file (0 bytes)")
    wav.write_bytes(b"")
    wav = utt(s2, "garbage", "hi", None, "cannot read audio")
    wav.write_bytes(b"RIFF0000garbage")
    wav = write_wav(s2 / "stereo.wav", channels=2)
    (s2 / "stereo.txt").write_text("hi\n")
    fate[str(wav)] = fate[str(s2 / "stereo.txt")] = ("dropped", "2 channel(s)", str(wav))
    wav = write_wav(s2 / "notext.wav")
    fate[str(wav)] = ("dropped", "missing transcript", str(wav))
    # same stem, same speaker: the first in C order (dup.flac) is kept
    utt(s2, "dup", "重复", None, "duplicate key 's2-dup'")
    write_wav(s2 / "dup.flac")
    fate[str(s2 / "dup.flac")] = fate[str(s2 / "dup.txt")] = ("data", "s2-dup",
                                                              str(s2 / "dup.flac"))
    for orphan in (s2 / "orphan.txt", hs / "orphan 孤儿 $x.txt"):
        orphan.write_text("我没有音频\n", encoding="utf-8")
        fate[str(orphan)] = ("dropped", "transcript without audio", str(orphan))
    # other files, listed as ignored; an Excel "CSV UTF-8" list (BOM + CRLF) among them
    (root / "README").write_text("about\n")
    (hs / "notes.json").write_text("{}\n")
    (root / ".DS_Store").write_bytes(b"\0\1")
    with open(root / "list.csv", "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)  # Excel and Python's csv module: CRLF
        w.writerow(["Audio", "Transcript"])
        w.writerow([f"{HOSTILE}/bom.wav", "你好"])
        w.writerow(["s2/good0.wav", "好的"])
        w.writerow(["s2/nothere.wav", "好的"])
        w.writerow(["s2/good1.wav", "！！"])
    for p in (root / "README", hs / "notes.json", root / ".DS_Store", root / "list.csv"):
        fate[str(p)] = ("ignored", "", str(p))
    return fate


def test_messy_folder_every_file_accounted_for(tmp_path):
    root = tmp_path / f"messy {HOSTILE}"
    fate = make_messy_folder(root)
    on_disk = {str(p) for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(fate)  # the expectation covers every file
    out = tmp_path / "data"
    # without --skip-bad: stops, naming a file of the folder, writing nothing
    r = run_tool("prepare_data.py", "--in", root, "--out", out)
    assert r.returncode == 1
    named = [f for f, (what, _, _) in fate.items() if what == "dropped" and f in r.stderr]
    assert named, r.stderr
    assert not (out / "wav.scp").exists()
    # with --skip-bad: every file is in the data dir, dropped.tsv or ignored.tsv
    r = run_tool("prepare_data.py", "--in", root, "--out", out, "--skip-bad")
    assert r.returncode == 0, r.stderr
    wavs = read_table(out / "wav.scp")
    texts = read_table(out / "text")
    dropped = {row.split("\t")[0]: row.split("\t")[2]
               for row in (out / "dropped.tsv").read_text().splitlines()[1:]}
    ignored = [row.split("\t")[0] for row in (out / "ignored.tsv").read_text().splitlines()[1:]]
    assert len(ignored) == len(set(ignored))
    for f, (what, detail, via) in fate.items():
        if what == "data":
            assert wavs[detail] == via and texts[detail], f
        elif what == "dropped":
            assert detail in dropped[via], (f, dropped.get(via))
        else:
            assert via in ignored, f
    # and nothing else is in them
    assert set(wavs.values()) == {v for w, _, v in fate.values() if w == "data"}
    assert set(dropped) == {v for w, _, v in fate.values() if w == "dropped"}
    assert set(ignored) == {v for w, _, v in fate.values() if w == "ignored"}
    assert texts["R&D;touch${IFS}X;|(p)*'q\"`b`_病历_数据-bom"] == "你好"
    assert (out / "text").read_bytes().count(b"\r") == 0 and b"\xef\xbb\xbf" not in (
        out / "text").read_bytes()
    lines = r.stdout.splitlines()
    assert lines[0] == f"dropped {len(dropped)} of {len(dropped) + len(wavs)} items; reasons " \
                       f"in {out / 'dropped.tsv'}"
    assert lines[1].startswith(f"ignored {len(ignored)} files")
    assert lines[2].startswith("normalised 3 files (BOM and CRLF removed")
    validate_datadir(out)
    assert not list(tmp_path.rglob("X"))  # no name was run as shell code

    # the Excel CSV in it: BOM + CRLF, hostile relative paths, bad rows by line
    lst = root / "list.csv"
    r = run_tool("prepare_data.py", "--in", lst, "--out", tmp_path / "l")
    assert r.returncode == 1 and f"{lst}:4: audio file" in r.stderr
    r = run_tool("prepare_data.py", "--in", lst, "--out", tmp_path / "l", "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert sorted(read_table(tmp_path / "l" / "wav.scp").values()) == [
        str(root / HOSTILE / "bom.wav"), str(root / "s2" / "good0.wav")]
    rows = (tmp_path / "l" / "dropped.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[0] for row in rows] == [f"{lst}:4", f"{lst}:5"]
    assert "only punctuation" in rows[1]
    assert "normalised 1 files (BOM and CRLF removed" in r.stdout


@pytest.mark.slow
def test_run_sh_messy_hostile_folders_end_to_end(tmp_path):
    """run.sh stages 1-3 on the local backend with --data and --general in
    folders whose names hold ; & | $ ` ' " ( ) * and unicode: no name is run as
    shell code, every file is accounted for; without --skip-bad the run stops at
    stage 1 naming a file."""
    import os
    import subprocess

    from helpers import ROOT

    data = tmp_path / f"dom {HOSTILE}"
    fate = make_messy_folder(data, n_good=10)
    general = tmp_path / f"gen {HOSTILE}"
    for i in range(20):
        write_utt(general, f"g{i % 4} {HOSTILE}", f"u{i} $x", f"一般 {i}", seconds=1.0, seed=i)
    out = tmp_path / "o"

    def run_sh(*extra):
        return subprocess.run(
            ["bash", ROOT / "run.sh", "--data", data, "--general", general, "--stop-stage", "3",
             "--datadir", out / "data", "--dumpdir", out / "dump", "--expdir", out / "exp",
             *extra], capture_output=True, text=True, cwd=tmp_path, timeout=600,
            env=dict(os.environ, cmd_backend="local"))

    r = run_sh()
    assert r.returncode != 0
    log = (out / "exp" / "logs" / "prepare_general.log").read_text()
    assert "# Ended (code 0)" in log  # the general pool is clean
    log = (out / "exp" / "logs" / "prepare_domain.log").read_text()
    assert "# Ended (code 1)" in log and f"ERROR: {data}" in log
    assert not (out / "data" / "domain_all" / "wav.scp").exists()

    r = run_sh("--skip-bad", "true")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not list(tmp_path.rglob("X")) and not (ROOT / "X").exists()
    d = out / "data" / "domain_all"
    wavs = read_table(d / "wav.scp")
    assert set(wavs.values()) == {v for w, _, v in fate.values() if w == "data"}
    dropped = {row.split("\t")[0] for row in (d / "dropped.tsv").read_text().splitlines()[1:]}
    assert dropped == {v for w, _, v in fate.values() if w == "dropped"}
    ignored = {row.split("\t")[0] for row in (d / "ignored.tsv").read_text().splitlines()[1:]}
    assert ignored == {v for w, _, v in fate.values() if w == "ignored"}
    assert f"dropped {len(dropped)} of {len(dropped) + len(wavs)} items" in (
        out / "exp" / "logs" / "prepare_domain.log").read_text()
    assert len(read_table(out / "data" / "general_all" / "wav.scp")) == 20
    # every set's jsonl names the hostile paths exactly
    jsonl = (out / "dump" / "paraformer" / "domain_train.jsonl").read_text(encoding="utf-8")
    dump_sources = {json.loads(line)["source"] for line in jsonl.splitlines()}
    assert dump_sources and dump_sources <= set(wavs.values())
    for s in ("stage1", "stage2", "stage3"):
        assert (out / "dump" / "paraformer" / f"{s}_train.jsonl").stat().st_size > 0


@pytest.mark.parametrize("text", ["。。。！？", "...", "，、；：", "“”《》", "-- !", "'", "…",
                                  "好。", "ok!", "3.5%", "+", "A1", "don't"])
def test_nothing_to_recognise_is_what_the_scorer_sees_as_empty(text):
    from funasr_recipe.datadir import clean_text
    from funasr_recipe.normalize import make_scoring_normalizer

    empty_for_scorer = make_scoring_normalizer("basic")(text) == ""
    try:
        clean_text(text, "x")
        refused = False
    except DataError as e:
        refused = "only punctuation" in str(e)
    assert refused == empty_for_scorer
