"""Tests of the generic shell tools in utils/: parse_options.sh, run.pl,
validate_data_dir.sh and the utt2spk/spk2utt filters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from funasr_recipe.datadir import (VALUE_RULES, Utt, clean_text, load_datadir, validate_datadir,
                                   write_datadir)
from funasr_recipe.errors import DataError
from helpers import check_log

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "utils"


def run(args: list[str | Path], cwd: Path | None = None, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run([str(a) for a in args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, encoding="utf-8", env=env, timeout=60)


# --------------------------------------------------------------------------
# parse_options.sh

CALLER = """#!/usr/bin/env bash
set -euo pipefail
stage=1
model_name=paraformer
use_lora=false
empty_opt=
help_message="Usage: caller.sh [options] <data-dir>
  --stage N   first stage to run"
. "{utils}/parse_options.sh" || exit 1
echo "stage=$stage model_name=$model_name use_lora=$use_lora empty_opt=$empty_opt"
echo "nargs=$#"
for a in "$@"; do echo "arg=[$a]"; done
"""


@pytest.fixture
def caller(tmp_path: Path) -> Path:
    script = tmp_path / "caller.sh"
    script.write_text(CALLER.format(utils=UTILS))
    return script


def test_parse_options_sets_variables_and_leaves_positionals(caller: Path) -> None:
    r = run(["bash", caller, "--stage", "3", "--model-name", "nano", "--empty-opt", "x y",
             "data/a b", "exp"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "stage=3 model_name=nano use_lora=false empty_opt=x y"
    assert lines[1:] == ["nargs=2", "arg=[data/a b]", "arg=[exp]"]


def test_parse_options_equals_form(caller: Path) -> None:
    r = run(["bash", caller, "--stage=5", "--model-name=a=b", "--use-lora=true"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["stage=5 model_name=a=b use_lora=true empty_opt=",
                                         "nargs=0"]


def test_parse_options_stops_at_first_non_option(caller: Path) -> None:
    r = run(["bash", caller, "--stage", "2", "data", "--stage", "9"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["stage=2 model_name=paraformer use_lora=false empty_opt=",
                                     "nargs=3", "arg=[data]", "arg=[--stage]", "arg=[9]"]


def test_parse_options_double_dash_ends_options(caller: Path) -> None:
    r = run(["bash", caller, "--stage", "4", "--", "--not-an-option"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == ["nargs=1", "arg=[--not-an-option]"]


def test_parse_options_unknown_option_is_named(caller: Path) -> None:
    r = run(["bash", caller, "--stag", "3", "data"])
    assert r.returncode == 1
    assert "ERROR: invalid option --stag" in r.stderr
    assert "--help" in r.stderr
    assert r.stdout == ""


def test_parse_options_boolean_accepts_only_true_false(caller: Path) -> None:
    r = run(["bash", caller, "--use-lora", "yes"])
    assert r.returncode == 1
    assert "--use-lora" in r.stderr and "'true' or 'false'" in r.stderr
    r = run(["bash", caller, "--use-lora", "true"])
    assert r.returncode == 0, r.stderr
    assert "use_lora=true" in r.stdout


def test_parse_options_missing_value(caller: Path) -> None:
    r = run(["bash", caller, "--stage"])
    assert r.returncode == 1
    assert "--stage needs a value" in r.stderr


def test_parse_options_help_prints_message_and_exits_0(caller: Path) -> None:
    r = run(["bash", caller, "--stage", "3", "--help"])
    assert r.returncode == 0
    assert r.stdout == "Usage: caller.sh [options] <data-dir>\n  --stage N   first stage to run\n"
    r = run(["bash", caller, "-h"])
    assert r.returncode == 0 and r.stdout.startswith("Usage: caller.sh")


def test_parse_options_config_file_then_command_line(caller: Path, tmp_path: Path) -> None:
    conf = tmp_path / "my.conf"
    conf.write_text("stage=7\nmodel_name=from_config\n")
    r = run(["bash", caller, "--model-name", "from_cli", "--config", conf, "x"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [
        "stage=7 model_name=from_cli use_lora=false empty_opt=", "nargs=1"]
    r = run(["bash", caller, f"--config={tmp_path / 'missing.conf'}"])
    assert r.returncode == 1
    assert "missing.conf" in r.stderr


def test_parse_options_refuses_to_run_unsourced() -> None:
    r = run(["bash", UTILS / "parse_options.sh", "--x", "1"])
    assert r.returncode == 1
    assert "must be sourced" in r.stderr


# --------------------------------------------------------------------------
# run.pl

RUN_PL = UTILS / "run.pl"


def test_run_pl_substitutes_job_index(tmp_path: Path) -> None:
    r = run([RUN_PL, "JOB=1:3", "exp/log/echo.JOB.log", "echo", "job", "JOB", "of", "3"],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        assert check_log(tmp_path / f"exp/log/echo.{i}.log", f"echo job {i} of 3", 0) == [
            f"job {i} of 3"]
    assert sorted(p.name for p in (tmp_path / "exp/log").iterdir()) == [
        "echo.1.log", "echo.2.log", "echo.3.log"]


def test_run_pl_any_range_name_pipes_and_stderr(tmp_path: Path) -> None:
    cmd = "echo part SPLIT | tr a-z A-Z > out.SPLIT.txt; echo to-stderr-SPLIT >&2"
    r = run([RUN_PL, "--num-threads", "4", "SPLIT=2:3", "log/SPLIT/x.log", cmd],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for i in (2, 3):
        assert (tmp_path / f"out.{i}.txt").read_text() == f"PART {i}\n"
        body = check_log(tmp_path / f"log/{i}/x.log", cmd.replace("SPLIT", str(i)), 0, threads=4)
        assert body == [f"to-stderr-{i}"]
    assert not (tmp_path / "log/1").exists()


def test_job_backends_run_through_a_linked_utils_dir(tmp_path: Path) -> None:
    """A Kaldi recipe links utils/ from elsewhere: the backends still find the
    module they share (utils/JobCommon.pm), whatever the working directory."""
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "utils").symlink_to(UTILS)
    for backend in ("run.pl", "slurm.pl", "queue.pl"):
        r = run([f"utils/{backend}", "--help"], cwd=tmp_path / "recipe")
        assert r.returncode == 0, (backend, r.stderr)
        assert f"utils/{backend} [options] [VAR=START:END] LOGFILE COMMAND" in r.stdout
    r = run(["recipe/utils/run.pl", "JOB=1:2", "log/JOB.log", "echo", "JOB"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert check_log(tmp_path / "log/2.log", "echo 2", 0) == ["2"]


def test_run_pl_single_job_and_cluster_options_ignored(tmp_path: Path) -> None:
    r = run([RUN_PL, "--gpu", "1", "--mem", "4G", "--time", "1:00:00", "a/b/c.log",
             "echo", "two  spaces", 'say "hi"'], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # several words: each is quoted for bash as needed, so it stays one word
    assert check_log(tmp_path / "a/b/c.log", """echo 'two  spaces' 'say "hi"'""", 0) == [
        'two  spaces say "hi"']


def test_run_pl_path_with_spaces_is_one_word(tmp_path: Path) -> None:
    (tmp_path / "my dir").mkdir()
    r = run([RUN_PL, "log", "cp", str(tmp_path / "my dir"), "-r", str(tmp_path / "copy of")],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "copy of").is_dir()


HOSTILE = ["d;touch${IFS}X;", "R&D", "cost$x", "a|b", "back`tick`", "it's", 'say "hi"',
           "(paren)", "star*", "病历 数据", "back\\slash", "", "--x=1", "A=b"]


def test_run_pl_passes_every_word_exactly(tmp_path: Path) -> None:
    # Several words: none of them is shell code, whatever it holds; JOB is still
    # replaced in every word.
    (tmp_path / "starfile").write_text("")
    r = run([RUN_PL, "JOB=1:2", "log/h.JOB.log", "printf", "[%s]\\n", *HOSTILE, "JOB"],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for i in (1, 2):
        body = (tmp_path / f"log/h.{i}.log").read_text().splitlines()[2:-2]
        assert body == [f"[{w}]" for w in HOSTILE] + [f"[{i}]"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log", "starfile"]  # no X, no R
    # a first word holding '=' is a command name, not a variable assignment
    r = run([RUN_PL, "log/a.log", "A=b", "x"], cwd=tmp_path)
    assert r.returncode != 0 and "A=b: command not found" in (tmp_path / "log/a.log").read_text()


def test_run_pl_single_word_is_shell_code(tmp_path: Path) -> None:
    r = run([RUN_PL, "log/s.log", "echo a$((1+2)) | tr a A > out; echo done"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").read_text() == "A3\n"
    assert check_log(tmp_path / "log/s.log", "echo a$((1+2)) | tr a A > out; echo done", 0) == [
        "done"]


def test_run_pl_failed_jobs_are_named(tmp_path: Path) -> None:
    r = run([RUN_PL, "JOB=1:4", "exp/x/log.JOB.log",
             "echo JOB; [ JOB -le 2 ] || exit 3"],
            cwd=tmp_path)
    assert r.returncode != 0
    assert "2 / 4 failed" in r.stderr
    named = r.stderr.split("log is in", 1)[1].split()
    assert named == ["exp/x/log.3.log", "exp/x/log.4.log"]
    for i, code in ((1, 0), (2, 0), (3, 3), (4, 3)):
        assert check_log(tmp_path / f"exp/x/log.{i}.log",
                         f"echo {i}; [ {i} -le 2 ] || exit 3", code) == [str(i)]


def test_run_pl_single_failed_job(tmp_path: Path) -> None:
    r = run([RUN_PL, "exp/one.log", "exit", "7"], cwd=tmp_path)
    assert r.returncode != 0
    assert "exp/one.log" in r.stderr
    check_log(tmp_path / "exp/one.log", "exit 7", 7)


SPAN_CMD = "date +%s.%N; sleep 0.5; date +%s.%N"


def peak_overlap(logs: list[Path]) -> int:
    """How many of the jobs (each logging its start and end time) ran at once, at most."""
    events = []
    for log in logs:
        start, end = map(float, check_log(log, log.read_text().splitlines()[0][2:], 0))
        events += [(start, 1), (end, -1)]
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    return peak


def test_run_pl_max_jobs_run(tmp_path: Path) -> None:
    # Each job logs when it starts and ends; at no time may more than 2 overlap.
    r = run([RUN_PL, "--max-jobs-run", "2", "JOB=1:5", "log/t.JOB.log", SPAN_CMD],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert peak_overlap([tmp_path / f"log/t.{i}.log" for i in range(1, 6)]) == 2


def fake_tool(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    """The environment with ``name`` on PATH being ``script`` (bash)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{script}\n")
    (bin_dir / name).chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize("cpus, jobs, peak", [
    (2, 5, 2),   # Kaldi's default: as many at once as CPUs...
    (4, 5, 5),   # ...all of them when there are fewer than 1.4 times as many jobs
    (1, 1, 1),
])
def test_run_pl_default_max_jobs_run_is_the_cpu_count(tmp_path: Path, cpus: int, jobs: int,
                                                     peak: int) -> None:
    env = fake_tool(tmp_path, "nproc", f"echo {cpus}")
    r = run([RUN_PL, f"JOB=1:{jobs}", "log/t.JOB.log", SPAN_CMD], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert peak_overlap([tmp_path / f"log/t.{i}.log" for i in range(1, jobs + 1)]) == peak


def test_run_pl_counts_cpus_whatever_omp_num_threads_says(tmp_path: Path) -> None:
    # GNU nproc prints OMP_NUM_THREADS when it is set, and path.sh sets it to 1
    # for the jobs' torch: the array must still run as many jobs as CPUs
    env = fake_tool(tmp_path, "nproc", 'echo "${OMP_NUM_THREADS:-3}"')
    env.update(OMP_NUM_THREADS="1", OMP_THREAD_LIMIT="1")
    r = run([RUN_PL, "JOB=1:3", "log/t.JOB.log", SPAN_CMD], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert peak_overlap([tmp_path / f"log/t.{i}.log" for i in range(1, 4)]) == 3


def test_run_pl_default_max_jobs_run_with_gpus(tmp_path: Path) -> None:
    env = fake_tool(tmp_path, "nvidia-smi", "echo 'GPU 0: X'; echo 'GPU 1: X'")
    r = run([RUN_PL, "--gpu", "1", "JOB=1:4", "log/t.JOB.log", SPAN_CMD], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert peak_overlap([tmp_path / f"log/t.{i}.log" for i in range(1, 5)]) == 2


# Fails the first time (no marker file yet), succeeds the next; the marker is per job.
FLAKY = "echo run JOB; if [ -e ok.JOB ]; then exit 0; fi; touch ok.JOB; [ JOB -le 2 ]"


def test_run_pl_pick_failed_reruns_only_the_failed_jobs(tmp_path: Path) -> None:
    r = run([RUN_PL, "JOB=1:4", "log/f.JOB.log", FLAKY], cwd=tmp_path)
    assert r.returncode == 1 and "2 / 4 failed" in r.stderr
    kept = {i: (tmp_path / f"log/f.{i}.log").read_text() for i in (1, 2)}
    for i in (1, 2):
        (tmp_path / f"ok.{i}").unlink()  # were they run again, they would fail now
    r = run([RUN_PL, "--pick", "failed", "JOB=1:4", "log/f.JOB.log", FLAKY], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert {i: (tmp_path / f"log/f.{i}.log").read_text() for i in (1, 2)} == kept
    for i in (3, 4):
        assert check_log(tmp_path / f"log/f.{i}.log", FLAKY.replace("JOB", str(i)), 0) == [
            f"run {i}"]
    # everything done: nothing runs, and the array succeeds
    r = run([RUN_PL, "--pick", "failed", "JOB=1:4", "log/f.JOB.log", "exit 9"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("pick", ["incomplete", "none"])
def test_run_pl_pick_incomplete_runs_only_unfinished_jobs(tmp_path: Path, pick: str) -> None:
    r = run([RUN_PL, "JOB=1:4", "log/f.JOB.log", FLAKY], cwd=tmp_path)
    assert r.returncode == 1
    (tmp_path / "log/f.2.log").write_text("# cut short\n# Started at then\n")  # killed job
    (tmp_path / "log/f.4.log").unlink()                                       # never ran
    (tmp_path / "ok.2").unlink()
    r = run([RUN_PL, "--pick", pick, "JOB=1:4", "log/f.JOB.log", "echo again JOB"],
            cwd=tmp_path)
    # job 3 failed before and is not run again: still failed
    assert r.returncode == 1 and "1 / 4 failed, log is in log/f.3.log" in r.stderr
    assert check_log(tmp_path / "log/f.3.log", FLAKY.replace("JOB", "3"), 1) == ["run 3"]
    for i in (2, 4):
        assert check_log(tmp_path / f"log/f.{i}.log", f"echo again {i}", 0) == [f"again {i}"]
    assert check_log(tmp_path / "log/f.1.log", FLAKY.replace("JOB", "1"), 0) == ["run 1"]


@pytest.mark.parametrize("args, message", [
    ([], "expected LOGFILE and COMMAND"),
    (["x.log"], "expected LOGFILE and COMMAND"),
    (["--bogus", "1", "x.log", "true"], "unknown option --bogus"),
    (["--max-jobs-run", "0", "JOB=1:2", "x.JOB.log", "true"], "--max-jobs-run"),
    (["--pick", "some", "JOB=1:2", "x.JOB.log", "true"], "--pick needs all, failed"),
    (["JOB=3:1", "x.JOB.log", "true"], "start is after end"),
    (["JOB=1:2", "x.log", "true"], "put JOB in its name"),
])
def test_run_pl_bad_usage(tmp_path: Path, args: list[str], message: str) -> None:
    r = run([RUN_PL, *args], cwd=tmp_path)
    assert r.returncode == 1
    assert message in r.stderr
    assert "Usage:" in r.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# utt2spk_to_spk2utt.pl / spk2utt_to_utt2spk.pl

def test_utt2spk_to_spk2utt_sorted_by_speaker_utts_in_input_order() -> None:
    r = run([UTILS / "utt2spk_to_spk2utt.pl"], stdin="张三-2 张三\nb-1 b\n张三-1 张三\na-9 a\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a a-9\nb b-1\n张三 张三-2 张三-1\n"


def test_spk2utt_to_utt2spk_and_round_trip(tmp_path: Path) -> None:
    spk2utt = "a a-1 a-2\n说话人 说话人-1\n"
    r = run([UTILS / "spk2utt_to_utt2spk.pl"], stdin=spk2utt)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a-1 a\na-2 a\n说话人-1 说话人\n"
    (tmp_path / "utt2spk").write_text(r.stdout, encoding="utf-8")
    back = run([UTILS / "utt2spk_to_spk2utt.pl", tmp_path / "utt2spk"])
    assert back.stdout == spk2utt


@pytest.mark.parametrize("tool, bad", [
    ("utt2spk_to_spk2utt.pl", "a-1 a\na-2\n"),
    ("utt2spk_to_spk2utt.pl", "a-1 a\na-1 b\n"),
    ("spk2utt_to_utt2spk.pl", "a a-1\nb\n"),
])
def test_filters_reject_bad_lines(tool: str, bad: str) -> None:
    r = run([UTILS / tool], stdin=bad)
    assert r.returncode == 1
    assert ":2:" in r.stderr


# --------------------------------------------------------------------------
# validate_data_dir.sh

VALIDATE = UTILS / "validate_data_dir.sh"
GOOD = {
    "wav.scp": "spk1-utt1 /data/a.wav\nspk1-utt2 /data/b.wav\nspk2-utt1 sox /data/c.flac -t wav - |\n",
    "text": "spk1-utt1 今天 天气 很好\nspk1-utt2 打开 空调\nspk2-utt1 hello 世界\n",
    "utt2spk": "spk1-utt1 spk1\nspk1-utt2 spk1\nspk2-utt1 spk2\n",
    "spk2utt": "spk1 spk1-utt1 spk1-utt2\nspk2 spk2-utt1\n",
    "utt2dur": "spk1-utt1 1.5\nspk1-utt2 2\nspk2-utt1 0.37\n",
}


def make_dir(path: Path, files: dict[str, str | bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (path / name).write_bytes(data)
    return path


def validate(*args: str | Path) -> subprocess.CompletedProcess:
    return run([VALIDATE, *args], env={**os.environ, "LC_ALL": "C"})


def test_validate_good_dir(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "train", GOOD)
    r = validate(d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(f"Successfully validated data-directory {d}")


def test_validate_good_dir_with_segments(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "seg", {
        **GOOD,
        "wav.scp": "rec1 /data/rec1.wav\nrec2 /data/rec2.wav\n",
        "segments": "spk1-utt1 rec1 0 1.5\nspk1-utt2 rec1 1.5 3.5\nspk2-utt1 rec2 0.2 0.57\n",
    })
    r = validate(d)
    assert r.returncode == 0, r.stderr


def test_validate_no_text_and_no_spk_sort(tmp_path: Path) -> None:
    files = {k: v for k, v in GOOD.items() if k != "text"}
    d = make_dir(tmp_path / "notext", files)
    r = validate(d)
    assert r.returncode == 1 and "--no-text" in r.stderr
    assert validate("--no-text", "--no-feats", d).returncode == 0
    # Speakers that are not prefixes of the utterance ids.
    d = make_dir(tmp_path / "nosort", {
        "wav.scp": "a /a.wav\nb /b.wav\n", "text": "a 一\nb 二\n",
        "utt2spk": "a zed\nb adam\n", "spk2utt": "adam b\nzed a\n"})
    r = validate(d)
    assert r.returncode == 1
    assert f"{d}/utt2spk:2" in r.stderr and "--no-spk-sort" in r.stderr
    r = validate("--no-spk-sort", d)
    assert r.returncode == 0, r.stderr


def _swap_lines(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join([lines[1], lines[0]] + lines[2:])


BAD_CASES = {
    "unsorted": ("text", _swap_lines(GOOD["text"]), "text:2", "sort order"),
    "duplicate": ("wav.scp", "spk1-utt1 /a.wav\nspk1-utt1 /b.wav\nspk2-utt1 /c.wav\n",
                  "wav.scp:2", "duplicate key 'spk1-utt1'"),
    "spk2utt_mismatch": ("spk2utt", "spk1 spk1-utt1\nspk2 spk1-utt2 spk2-utt1\n",
                         "spk2utt:1", "does not match utt2spk"),
    "spk2utt_missing_speaker": ("spk2utt", "spk1 spk1-utt1 spk1-utt2\n", "spk2utt",
                                "speaker 'spk2'"),
    "cr": ("text", GOOD["text"].replace("\n", "\r\n"), "text:1", "carriage return"),
    "empty_transcript": ("text", "spk1-utt1 今天\nspk1-utt2\nspk2-utt1 好\n", "text:2",
                         "empty transcript"),
    "blank_transcript": ("text", "spk1-utt1 今天\nspk1-utt2   \nspk2-utt1 好\n", "text:2",
                         "empty transcript"),
    "text_missing_utt": ("text", "spk1-utt1 今天\nspk2-utt1 好\n", "text:2",
                         "'spk1-utt2' of utt2spk is missing"),
    "wav_extra_utt": ("wav.scp", GOOD["wav.scp"] + "spk3-utt1 /d.wav\n", "wav.scp:4",
                      "'spk3-utt1' is not in utt2spk"),
    "utt2dur_short": ("utt2dur", "spk1-utt1 1.5\nspk1-utt2 2\n", "utt2dur",
                      "'spk2-utt1' of utt2spk is missing"),
    "tab_in_key": ("wav.scp", GOOD["wav.scp"].replace("spk1-utt2 ", "spk1-utt2\t"),
                   "wav.scp:2", "tab in key"),
    "not_utf8": ("text", GOOD["text"].replace("打开", "\udce4").encode("utf-8", "surrogateescape"),
                 "text:2", "not valid UTF-8"),
    "gbk": ("text", "spk1-utt1 a\nspk1-utt2 打开\nspk2-utt1 b\n".encode("gbk"), "text:2",
            "not valid UTF-8"),
    "unicode_space": ("text", GOOD["text"].replace("天气 ", "天气\u3000"), "text:1",
                      "U+3000"),
    "control_char": ("text", GOOD["text"].replace("空调", "空\x01调"), "text:2", "control"),
    "reserved_symbol": ("text", GOOD["text"].replace("hello", "<s> hello"), "text:3", "<s>"),
    "no_final_newline": ("utt2spk", GOOD["utt2spk"].rstrip("\n"), "utt2spk:3", "newline"),
    "utt2spk_three_fields": ("utt2spk", GOOD["utt2spk"].replace("spk2-utt1 spk2", "spk2-utt1 spk2 x"),
                             "utt2spk:3", "expected 'utterance-id speaker-id'"),
    "empty_line": ("utt2dur", "spk1-utt1 1.5\n\nspk1-utt2 2\nspk2-utt1 1\n", "utt2dur:2",
                   "empty line"),
    "bad_duration": ("utt2dur", "spk1-utt1 1.5\nspk1-utt2 -2\nspk2-utt1 1\n", "utt2dur:2",
                     "positive number"),
    "wav_no_value": ("wav.scp", "spk1-utt1 /a.wav\nspk1-utt2\nspk2-utt1 /c.wav\n",
                     "wav.scp:2", "has no value"),
    "tilde": ("wav.scp", GOOD["wav.scp"].replace("/data/a.wav", "~/a.wav"), "wav.scp:1", "~"),
    "empty_file": ("spk2utt", "", "spk2utt", "empty"),
    "leading_space": ("utt2spk", " " + GOOD["utt2spk"], "utt2spk:1", "starts with whitespace"),
    "bom": ("text", "\ufeff" + GOOD["text"], "text:1", "byte-order mark"),
    "num_samples_not_whole": ("utt2num_samples", "spk1-utt1 24000\nspk1-utt2 3.5\nspk2-utt1 9\n",
                              "utt2num_samples:2", "not a positive whole number"),
    "num_samples_short": ("utt2num_samples", "spk1-utt1 24000\nspk2-utt1 9\n",
                          "utt2num_samples:2", "'spk1-utt2' of utt2spk is missing"),
    "segments_end_before_start": ("segments", "spk1-utt1 rec1 0 1.5\nspk1-utt2 rec1 3 2\n"
                                  "spk2-utt1 rec2 0 1\n", "segments:2", "start < end"),
    # a value error is named after a format error further on, as Kaldi does
    "format_before_value": ("text", "spk1-utt1 a\x01\nspk1-utt2 b\nspk1-utt2 c\n", "text:3",
                            "duplicate key"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_validate_rejects_bad_dir(tmp_path: Path, case: str) -> None:
    name, content, where, what = BAD_CASES[case]
    d = make_dir(tmp_path / case, {**GOOD, name: content})
    r = validate(d)
    assert r.returncode == 1, r.stdout
    assert f"{d}/{where}" in r.stderr
    assert what in r.stderr
    assert "Successfully" not in r.stdout


@pytest.mark.parametrize("missing", ["wav.scp", "text", "utt2spk", "spk2utt"])
def test_validate_missing_required_file(tmp_path: Path, missing: str) -> None:
    d = make_dir(tmp_path / "d", {k: v for k, v in GOOD.items() if k != missing})
    r = validate(d)
    assert r.returncode == 1
    assert f"no such file {d}/{missing}" in r.stderr


def test_validate_bad_usage(tmp_path: Path) -> None:
    assert validate().returncode == 1
    r = validate("--bogus", tmp_path)
    assert r.returncode == 1 and "unknown option --bogus" in r.stderr
    r = validate(tmp_path / "nowhere")
    assert r.returncode == 1 and "no such directory" in r.stderr


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_python_validator_applies_the_same_rules(tmp_path: Path, case: str) -> None:
    """The shell wrapper and the package's validator are one: same file, line, message."""
    name, content, where, what = BAD_CASES[case]
    d = make_dir(tmp_path / case, {**GOOD, name: content})
    with pytest.raises(DataError) as e:
        validate_datadir(d)
    assert f"{d}/{where}" in str(e.value) and what in str(e.value)
    assert str(e.value) in validate(d).stderr


def test_every_value_rule_has_a_case() -> None:
    covered = {name for name, *_ in BAD_CASES.values()}
    assert set(VALUE_RULES) <= covered


def test_python_validator_options_and_segments(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "notext", {k: v for k, v in GOOD.items() if k != "text"})
    with pytest.raises(DataError, match="--no-text"):
        validate_datadir(d)
    validate_datadir(d, require_text=False)
    d = make_dir(tmp_path / "nosort", {
        "wav.scp": "a /a.wav\nb /b.wav\n", "text": "a 一\nb 二\n",
        "utt2spk": "a zed\nb adam\n", "spk2utt": "adam b\nzed a\n"})
    with pytest.raises(DataError, match="--no-spk-sort"):
        validate_datadir(d)
    validate_datadir(d, spk_sort=False)
    seg = make_dir(tmp_path / "seg", {
        **GOOD, "wav.scp": "rec1 /r1.wav\nrec2 /r2.wav\nrec3 /r3.wav\n",
        "segments": "spk1-utt1 rec1 0 1.5\nspk1-utt2 rec1 1.5 3.5\nspk2-utt1 rec2 0.2 0.57\n"})
    with pytest.raises(DataError, match=r"wav.scp:3: recording 'rec3' is not in segments"):
        validate_datadir(seg)
    assert validate(seg).returncode == 1
    (seg / "wav.scp").write_text("rec1 /r1.wav\nrec2 /r2.wav\n")
    validate_datadir(seg)
    with pytest.raises(DataError, match="one audio file per utterance"):
        load_datadir(seg)


@pytest.mark.parametrize("text, what", [
    ("a\x01b", r"control character \(U\+0001\)"),
    ("<s> hello", "reserved symbol '<s>'"),
    ("hello #0", "reserved symbol '#0'"),
])
def test_transcripts_and_written_dirs_follow_the_same_rules(tmp_path: Path, text: str,
                                                            what: str) -> None:
    """A transcript the validator would refuse is refused when read (so --skip-bad
    can drop it) and when a data dir is written, never left for a later stage."""
    with pytest.raises(DataError, match=f"in.jsonl:3: the transcript has .*{what}"):
        clean_text(text, "in.jsonl:3")
    utts = [Utt("s-1", "s", "/a.wav", "ok", 1.0), Utt("s-2", "s", "/b.wav", text, 1.0)]
    with pytest.raises(DataError, match=f"text:2: utterance 's-2' has .*{what}"):
        write_datadir(tmp_path / "d", utts)
    assert not (tmp_path / "d").exists()
    utts[1] = Utt("s-2", "s", "~/b.wav", "ok", 1.0)
    with pytest.raises(DataError, match="wav.scp:2: '~' in the path"):
        write_datadir(tmp_path / "d", utts)


def test_python_cli_checks_several_dirs_in_one_process(tmp_path: Path) -> None:
    """run.sh checks a pool's four dirs with one start of local/validate_data_dir.py."""
    tool = ROOT / "local" / "validate_data_dir.py"
    good = [make_dir(tmp_path / f"g{i}", GOOD) for i in (1, 2)]
    bad = make_dir(tmp_path / "bad", {**GOOD, "utt2dur": "spk1-utt1 1\nspk1-utt2 0\nspk2-utt1 1\n"})
    env = {**os.environ, "PYTHONPATH": str(ROOT / "local")}
    r = run([sys.executable, tool, "--no-feats", *good], env=env)
    assert r.returncode == 0, r.stderr
    assert [line.split()[-1] for line in r.stdout.splitlines()] == [str(d) for d in good]
    r = run([sys.executable, tool, "--no-feats", good[0], bad, good[1]], env=env)
    assert r.returncode == 1
    assert f"{bad}/utt2dur:2" in r.stderr and "positive number" in r.stderr
    assert str(good[1]) not in r.stdout


@pytest.mark.parametrize("name, value, what", [
    ("text", "", "empty transcript"),
    ("text", "a\u3000b", "Unicode whitespace U+3000"),
    ("text", "a\nb", "is not one line"),
    ("utt2spk", "s x", "expected 'utterance-id speaker-id'"),
    ("utt2dur", "0.000", "positive number of seconds"),
    ("utt2dur", "1e", "positive number of seconds"),
    ("utt2num_samples", "12.5", "positive whole number"),
    ("utt2num_samples", "0", "positive whole number"),
    ("wav.scp", " ", "has no value"),
])
def test_written_dirs_name_the_bad_value(tmp_path: Path, name: str, value: str,
                                         what: str) -> None:
    """check_utterances' quick whole-column test never lets a bad value through:
    the third utterance's bad value is named with its line."""
    from funasr_recipe.datadir_rules import check_utterances

    keys = ["s-1", "s-2", "s-3", "s-4"]
    cols = {"wav.scp": ["/a.wav"] * 4, "text": ["一", "二", "三", "四"],
            "utt2spk": ["s"] * 4, "utt2dur": ["1.5"] * 4, "utt2num_samples": ["24000"] * 4}
    check_utterances(tmp_path, keys, cols)
    cols[name][2] = value
    with pytest.raises(DataError, match=f"{name}:3: .*{re.escape(what)}"):
        check_utterances(tmp_path, keys, cols)
    with pytest.raises(DataError, match=r"wav.scp:3: key 's-2' comes after 's-3'"):
        check_utterances(tmp_path, ["s-1", "s-3", "s-2", "s-4"], {"utt2spk": ["s"] * 4})
    with pytest.raises(DataError, match=r"utt2spk:3: .*does not sort by speaker"):
        check_utterances(tmp_path, keys, {"utt2spk": ["a", "b", "a", "b"]})
