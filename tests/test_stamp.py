"""The one skip mechanism (funasr_recipe/stamp.py, local/stamp.py) and run.sh's use of it.

Unit tests per kind of input, then run.sh's data stage (stage 1) on a small
folder: one test per kind of change a user makes to the inputs (each must
redo the stage), and an unchanged re-run (must skip it).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from funasr_recipe import stamp
from helpers import ROOT, run_tool, write_utt, write_wav


def test_file_content_changes_are_seen(tmp_path):
    src, out = tmp_path / "list.txt", tmp_path / "out"
    src.write_text("a\n")
    out.mkdir()
    assert stamp.check(out, [src], ["x=1"])  # never stamped
    stamp.mark(out, [src], ["x=1"])
    assert stamp.check(out, [src], ["x=1"]) == []
    src.write_text("b\n")  # same size: content, not size or time, decides
    os.utime(src, ns=(0, 0))
    assert any("list.txt changed" in w for w in stamp.check(out, [src], ["x=1"]))
    src.write_text("a\n")
    assert stamp.check(out, [src], ["x=1"]) == []
    assert any("options changed" in w for w in stamp.check(out, [src], ["x=2"]))
    assert stamp.check(out, [src], ["x=1"], outputs=[tmp_path / "nope"]) == [
        f"missing output {tmp_path / 'nope'}"]


def test_begin_skips_a_complete_step_and_prepares_an_incomplete_one(tmp_path, caplog):
    src, out = tmp_path / "in.txt", tmp_path / "step"
    src.write_text("a\n")
    caplog.set_level("INFO", logger="funasr_recipe.stamp")
    assert stamp.begin(out, [src], ["x=1"], what="pre-training")  # never made
    assert out.is_dir() and "(re)doing the pre-training: missing output" in caplog.text
    (out / "result.txt").write_text("done\n")
    stamp.mark(out, [src], ["x=1"])
    caplog.clear()
    assert not stamp.begin(out, [src], ["x=1"], outputs=[out / "result.txt"], what="pre-training")
    assert "pre-training complete for these inputs, skipped" in caplog.text
    assert stamp.read(out) is not None  # a skipped step keeps its stamp
    # a changed option redoes it, and the stale stamp goes first (a crash
    # during the redo must not leave the old stamp over half-written files)
    assert stamp.begin(out, [src], ["x=2"], outputs=[out / "result.txt"], what="pre-training")
    assert stamp.read(out) is None
    assert "options changed" in caplog.text
    # a missing output redoes it, with the same stamp
    stamp.mark(out, [src], ["x=2"])
    assert stamp.begin(out, [src], ["x=2"], outputs=[out / "gone.txt"])


def test_audio_by_size_and_time_and_dirs_file_by_file(tmp_path):
    folder, out = tmp_path / "pool", tmp_path / "out.jsonl"
    write_utt(folder, "spk", "u1", "你好")
    out.write_text("{}\n")
    stamp.mark(out, [folder])
    assert stamp.stamp_path(out).name == ".out.jsonl.stamp.json"
    assert stamp.check(out, [folder]) == []
    (folder / "spk" / ".hidden").write_text("ignored")
    assert stamp.check(out, [folder]) == []
    wav = folder / "spk" / "u1.wav"
    st = wav.stat()
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert "1 changed (e.g. spk/u1.wav)" in stamp.check(out, [folder])[0]
    stamp.mark(out, [folder])
    write_utt(folder, "spk", "u2", "世界")
    assert "2 added" in stamp.check(out, [folder])[0]


def test_audio_of_a_wav_scp_and_missing_inputs(tmp_path):
    wav = write_wav(tmp_path / "a.wav")
    scp, out = tmp_path / "wav.scp", tmp_path / "out"
    scp.write_text(f"a {wav}\nb sox x.wav -t wav - |\n")
    out.mkdir()
    later = tmp_path / "later.txt"
    stamp.mark(out, [f"audio-of:{scp}", later])
    assert stamp.check(out, [f"audio-of:{scp}", later]) == []
    write_wav(wav, seconds=0.7)  # re-saved audio
    assert stamp.check(out, [f"audio-of:{scp}", later])
    stamp.mark(out, [f"audio-of:{scp}", later])
    later.write_text("now here\n")
    assert stamp.check(out, [f"audio-of:{scp}", later]) == [f"{later} changed"]


def test_cli_check_and_mark(tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out"
    src.write_text("x\n")
    out.mkdir()
    r = run_tool("stamp.py", "check", "--out", out, "--inputs", src, "--opts", "a=1")
    assert r.returncode == 1 and "redo: no stamp" in r.stdout
    assert run_tool("stamp.py", "mark", "--out", out, "--inputs", src, "--opts",
                    "a=1").returncode == 0
    r = run_tool("stamp.py", "check", "--out", out, "--inputs", src, "--opts", "a=1")
    assert r.returncode == 0 and r.stdout == ""
    r = run_tool("stamp.py", "check", "--clear", "--out", out, "--inputs", src, "--opts", "a=2")
    assert r.returncode == 1 and "options changed" in r.stdout
    assert not stamp.stamp_path(out).exists()  # a failed redo cannot look complete


# ----------------------------------------------------------------------------
# run.sh stage 1 on a small folder: every kind of input change redoes it

GEN = ["今天天气很好", "我们去公园", "你好世界", "早上好", "谢谢你", "再见朋友", "晚安",
       "好久不见", "欢迎光临", "请坐"]
DOM = ["血压正常", "心率偏快", "请按时服药", "头痛三天", "需要复查", "体温正常", "咳嗽两周",
       "饭后服用", "多喝水", "注意休息"]


def make_pools(tmp: Path) -> None:
    for pool, texts in (("gen", GEN), ("dom", DOM)):
        for i, t in enumerate(texts):
            write_utt(tmp / pool, f"{pool}spk{i % 3}", f"{pool}{i:02d}", t, seed=i)
    (tmp / "heldout.txt").write_text("domspk2\n")


def stage1(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """run.sh stage 1 from ``tmp`` with paths relative to it (resolved against the
    caller's directory, not run.sh's)."""
    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "1", "--stop-stage", "1",
                        "--data", "dom", "--general", "gen", "--heldout-spk", "heldout.txt",
                        "--datadir", "data", "--expdir", "exp", *extra],
                       cwd=tmp, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def redone(r: subprocess.CompletedProcess, pool: str = "domain") -> bool:
    return f"{pool}: complete for the same inputs, skipped" not in r.stdout


# run.sh stage 1 runs take ~13 s each
slow = pytest.mark.slow


@pytest.fixture
def prepared(tmp_path):
    make_pools(tmp_path)
    r = stage1(tmp_path)
    assert redone(r) and redone(r, "general")
    assert (tmp_path / "data" / "domain_all" / "text").is_file()  # relative to the caller
    r = stage1(tmp_path)  # unchanged: skipped, both pools
    assert not redone(r) and not redone(r, "general")
    return tmp_path


@slow
def test_unchanged_rerun_is_skipped_and_an_edited_transcript_redone(prepared):
    txt = prepared / "dom" / "domspk0" / "dom00.txt"
    txt.write_text("血压偏高\n", encoding="utf-8")
    r = stage1(prepared)
    assert redone(r) and not redone(r, "general")
    assert "dom00.txt" in r.stdout  # it says what changed
    assert "血压偏高" in (prepared / "data" / "domain_all" / "text").read_text()


@slow
def test_an_added_utterance_redoes_the_stage(prepared):
    write_utt(prepared / "gen", "genspk0", "gen99", "新的一句", seed=99)
    r = stage1(prepared)
    assert redone(r, "general") and not redone(r)
    assert "gen99" in (prepared / "data" / "general_all" / "text").read_text()


@slow
def test_a_changed_heldout_list_redoes_the_stage(prepared):
    (prepared / "heldout.txt").write_text("domspk1\n")
    r = stage1(prepared)
    assert redone(r)
    test_spks = {line.split()[1] for line in
                 (prepared / "data" / "domain_test" / "utt2spk").read_text().splitlines()}
    assert "domspk1" in test_spks


@slow
def test_a_changed_option_redoes_the_stage(prepared):
    r = stage1(prepared, "--split-seed", "3")
    assert redone(r) and redone(r, "general")


@slow
def test_a_changed_text_file_of_a_wav_scp_redoes_the_stage(tmp_path):
    make_pools(tmp_path)
    wavs = sorted((tmp_path / "dom").glob("*/*.wav"))
    (tmp_path / "wav.scp").write_text("".join(f"{w.stem} {w}\n" for w in wavs))
    text = tmp_path / "text"
    text.write_text("".join(f"{w.stem} {DOM[i]}\n" for i, w in enumerate(wavs)),
                    encoding="utf-8")
    extra = ("--data", "wav.scp", "--text", "text")
    stage1(tmp_path, *extra)
    assert not redone(stage1(tmp_path, *extra))
    text.write_text(text.read_text(encoding="utf-8").replace("血压正常", "血压很高"),
                    encoding="utf-8")
    r = stage1(tmp_path, *extra)
    assert redone(r) and "血压很高" in (tmp_path / "data" / "domain_all" / "text").read_text()
    # the audio a list names: re-saved audio is seen too
    time.sleep(0.01)
    write_wav(wavs[0], seconds=0.8)
    assert redone(stage1(tmp_path, *extra))


@slow
def test_fixing_an_item_skip_bad_dropped_redoes_the_stage(tmp_path):
    make_pools(tmp_path)
    bad = tmp_path / "dom" / "domspk1" / "dom04.txt"
    bad.write_bytes(b"")  # empty transcript: dropped with --skip-bad
    r = stage1(tmp_path, "--skip-bad", "true")
    assert "dropped 1 of 10 items" in r.stdout and "dropped.tsv" in r.stdout  # on the console
    assert "dom04" not in (tmp_path / "data" / "domain_all" / "text").read_text()
    assert not redone(stage1(tmp_path, "--skip-bad", "true"))
    bad.write_text("头痛三天\n", encoding="utf-8")
    r = stage1(tmp_path, "--skip-bad", "true")
    assert redone(r)
    assert "dom04" in (tmp_path / "data" / "domain_all" / "text").read_text()
    assert not (tmp_path / "data" / "domain_all" / "dropped.tsv").exists()
