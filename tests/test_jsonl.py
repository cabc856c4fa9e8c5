"""local/make_jsonl.py: funasr's Paraformer jsonl, byte-identical to its scp2jsonl."""

from __future__ import annotations

import json


from funasr_recipe.datadir import Utt, write_datadir
from funasr_recipe.jsonl import paraformer_lines
from helpers import run_tool, write_wav


def make_dir(tmp_path, n=6):
    texts = ["今天天气很好", "hello world", "我用 iPhone 打电话", "一二三", "ok", "利率上调"]
    utts = []
    for i in range(n):
        wav = write_wav(tmp_path / "w" / f"s-{i}.wav", seconds=0.3 + 0.137 * i, seed=i)
        utts.append(Utt(f"s-{i}", "s", str(wav), texts[i % len(texts)], 0.3 + 0.137 * i))
    write_datadir(tmp_path / "d", utts)
    return tmp_path / "d"


def test_identical_to_funasr_scp2jsonl(tmp_path):
    from funasr.datasets.audio_datasets.scp2jsonl import gen_jsonl_from_wav_text_list

    d = make_dir(tmp_path)
    ref = tmp_path / "ref.jsonl"
    gen_jsonl_from_wav_text_list([str(d / "wav.scp"), str(d / "text")],
                                 data_type_list=("source", "target"), jsonl_file_out=str(ref))
    theirs = sorted(ref.read_text(encoding="utf-8").splitlines())
    ours = paraformer_lines(d)
    assert ours == theirs
    first = json.loads(ours[0])
    assert list(first) == ["key", "source", "source_len", "target", "target_len"]


def test_cli_nj_same_output(tmp_path):
    d = make_dir(tmp_path, n=12)
    outs = []
    for nj in (1, 3):
        out = tmp_path / f"o{nj}.jsonl"
        r = run_tool("make_jsonl.py", "--data-dir", d, "--out", out, "--nj", nj)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    lines = outs[0].decode().splitlines()
    assert [json.loads(x)["key"] for x in lines] == sorted(f"s-{i}" for i in range(12))
    by_key = {json.loads(x)["key"]: json.loads(x) for x in lines}
    assert by_key["s-2"]["target_len"] == 3  # "我用 iPhone 打电话": words, as it has a space
    assert by_key["s-3"]["target_len"] == 3  # "一二三": characters


def test_key_without_text_is_named(tmp_path):
    d = make_dir(tmp_path)
    (d / "text").write_text("".join(line + "\n" for line in
                                    (d / "text").read_text().splitlines()[1:]))
    r = run_tool("make_jsonl.py", "--data-dir", d, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 1 and "'s-0'" in r.stderr and not (tmp_path / "o.jsonl").exists()


def test_non_16k_audio_rejected(tmp_path):
    d = make_dir(tmp_path)
    write_wav(tmp_path / "w" / "s-0.wav", sr=8000)
    r = run_tool("make_jsonl.py", "--data-dir", d, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 1 and "8000 Hz" in r.stderr and "s-0" in r.stderr
