"""The cluster job backends: utils/slurm.pl and utils/queue.pl through cmd.sh.

Two layers:
- Against a real scheduler, Slurm (single node, started by .ci/start_slurm.sh)
  and Grid Engine (set up by hand as docs/backends.md shows): a job array, a
  failing job, a job killed without writing its exit code, --max-jobs-run,
  and real recipe stages (run.sh stages 0-1) with cmd_backend=slurm/sge.
  Skipped with a reason when the scheduler does not answer, except Slurm
  under FUNASR_RECIPE_REQUIRE_SLURM=1 (CI sets it): then it fails.
- Against stand-in sbatch/qsub programs (below) that run each array task at
  once and record their arguments: the option-to-flag mapping of
  conf/slurm.conf and conf/queue.conf, the array flags, and the whole job
  script path of queue.pl, which CI has no Grid Engine for.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ROOT, check_log

SLURM_PL = ROOT / "utils" / "slurm.pl"
QUEUE_PL = ROOT / "utils" / "queue.pl"


def run(args: list[str | Path], cwd: Path = ROOT, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


def with_cmd_sh(backend: str, command: str, env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess:
    """Run a bash command line in the recipe root after sourcing cmd.sh for a backend."""
    script = f'set -euo pipefail; cmd_backend={backend}; . ./cmd.sh; {command}'
    return run(["bash", "-c", script], env=env)


def as_code(command: str) -> str:
    """Shell code as one word quoted for bash: a backend given exactly one
    command word runs it as shell code (Kaldi's rule); several words are
    passed to the command exactly as given."""
    return shlex.quote(command)


# --------------------------------------------------------------------------
# a real scheduler

def scheduler_down(backend: str) -> str:
    """Why the backend's scheduler cannot run jobs here, or '' when it can."""
    probe = {"slurm": ["sinfo", "-h", "-o", "%T"], "sge": ["qstat", "-f"]}[backend]
    if shutil.which(probe[0]) is None:
        return f"{probe[0]} not found"
    try:
        r = run(probe, timeout=15)
    except subprocess.TimeoutExpired:
        return f"{probe[0]} did not answer within 15 s"
    if backend == "slurm":
        up = any(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in r.stdout.split())
    else:  # a queue instance line "all.q@host BIP 0/0/2 load arch [states]" with no states
        up = any(len(line.split()) == 5 and "@" in line for line in r.stdout.splitlines())
    if r.returncode != 0 or not up:
        return f"no node up ({probe[0]}: {(r.stdout + r.stderr).strip()[:200]!r})"
    return ""


@pytest.fixture(scope="module", params=["slurm", "sge"])
def backend(request) -> str:
    """A cmd.sh backend whose scheduler runs here. Slurm is started by
    .ci/start_slurm.sh (CI sets FUNASR_RECIPE_REQUIRE_SLURM=1: failure, not
    skip, when it is down); Grid Engine by the steps in docs/backends.md."""
    why = scheduler_down(request.param)
    if why:
        if request.param == "slurm" and os.environ.get("FUNASR_RECIPE_REQUIRE_SLURM") == "1":
            pytest.fail(f"FUNASR_RECIPE_REQUIRE_SLURM=1 but Slurm is down: {why}")
        hint = {"slurm": "start one with: sudo .ci/start_slurm.sh",
                "sge": "set one up as docs/backends.md shows"}[request.param]
        pytest.skip(f"no {request.param}: {why} ({hint})")
    return request.param


@pytest.mark.cluster
def test_array_through_cmd_sh(backend: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = (f"echo job JOB > {out}.JOB ; echo task ${{SLURM_ARRAY_TASK_ID:-$SGE_TASK_ID}} ; "
           "echo mem ${SLURM_MEM_PER_CPU:-none}")
    r = with_cmd_sh(backend, f"${{decode_cmd}} --mem 100M --num-threads 1 JOB=1:3 "
                    f"{tmp_path}/log/echo.JOB.log {as_code(cmd)}")
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        body = check_log(tmp_path / f"log/echo.{i}.log", cmd.replace("JOB", str(i)), 0)
        # ran as array task i; Slurm got --mem-per-cpu=100M
        assert body == [f"task {i}", "mem 100" if backend == "slurm" else "mem none"]
        assert Path(f"{out}.{i}").read_text() == f"job {i}\n"
        assert (tmp_path / f"log/q/echo.{i}.done").read_text() == "0\n"
        assert re.search(rf"{backend} job \d+ task {i},",
                         (tmp_path / f"log/q/echo.{i}.out").read_text())
    assert (tmp_path / "log/q/echo.JOB.sh").is_file()


@pytest.mark.cluster
def test_failing_job_code_comes_back(backend: str, tmp_path: Path) -> None:
    cmd = "echo JOB; [ JOB -le 1 ] || exit 3"
    r = with_cmd_sh(backend, f"${{train_cmd}} JOB=1:2 {tmp_path}/x.JOB.log {as_code(cmd)}")
    assert r.returncode == 1
    assert f"1 / 2 failed, log is in {tmp_path}/x.2.log" in r.stderr
    assert check_log(tmp_path / "x.1.log", cmd.replace("JOB", "1"), 0) == ["1"]
    assert check_log(tmp_path / "x.2.log", cmd.replace("JOB", "2"), 3) == ["2"]
    r = with_cmd_sh(backend, f"${{train_cmd}} {tmp_path}/one.log exit 7")
    assert r.returncode == 1
    assert f"job failed, log is in {tmp_path}/one.log" in r.stderr
    check_log(tmp_path / "one.log", "exit 7", 7)


@pytest.mark.cluster
def test_job_killed_without_trailer_is_noticed(backend: str, tmp_path: Path) -> None:
    # The command kills its job script, so no trailer and no done file are
    # written: only asking the scheduler can tell that the task has ended.
    start = time.monotonic()
    r = with_cmd_sh(backend, f"${{train_cmd}} {tmp_path}/k.log {as_code('kill -9 $PPID')}")
    assert r.returncode == 1
    assert re.search(r"task 1 ended \(.+\) without writing its exit code", r.stderr), r.stderr
    assert f"job failed, log is in {tmp_path}/k.log" in r.stderr
    lines = (tmp_path / "k.log").read_text().splitlines()
    assert lines[0] == "# kill -9 $PPID" and "without writing its exit code" in lines[-1]
    assert time.monotonic() - start < 60


# Words a path or name may hold; none may be run as shell code by a backend.
HOSTILE = ["d;touch${IFS}X;", "R&D", "cost$x", "a|b", "back`tick`", "it's", 'say "hi"',
           "(paren)", "star*", "病历 数据", "back\\slash", "", "A=b"]
# A log folder with such a name (no '%': Slurm expands it in --output).
HOSTILE_DIR = "logs d;touch${IFS}Y;&R|(x)*'q\"`b` 病历"


def check_hostile_words(tmp_path: Path, tool_call: str, env: dict[str, str] | None = None,
                        backend: str = "slurm") -> None:
    log = tmp_path / HOSTILE_DIR / "h.JOB.log"
    r = with_cmd_sh(backend, f"{tool_call} JOB=1:2 {shlex.quote(str(log))} printf '[%s]\\n' "
                    + " ".join(shlex.quote(w) for w in HOSTILE) + " JOB", env=env)
    assert r.returncode == 0, r.stderr
    for i in (1, 2):
        lines = (tmp_path / HOSTILE_DIR / f"h.{i}.log").read_text().splitlines()
        assert lines[2:-2] == [f"[{w}]" for w in HOSTILE] + [f"[{i}]"]
        assert lines[-1].startswith("# Ended (code 0)")
    assert not (ROOT / "X").exists() and not (ROOT / "Y").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "fakebin" and p.name != "args") \
        == [HOSTILE_DIR]


@pytest.mark.cluster
def test_every_word_reaches_the_job_exactly(backend: str, tmp_path: Path) -> None:
    check_hostile_words(tmp_path, "${decode_cmd}", backend=backend)


@pytest.mark.cluster
def test_max_jobs_run(backend: str, tmp_path: Path) -> None:
    cmd = "date +%s.%N; sleep 1; date +%s.%N"
    r = with_cmd_sh(backend, f"${{decode_cmd}} --max-jobs-run 1 JOB=1:2 {tmp_path}/t.JOB.log "
                    f"{as_code(cmd)}")
    assert r.returncode == 0, r.stderr
    (s1, e1), (s2, e2) = (map(float, check_log(tmp_path / f"t.{i}.log", cmd, 0)) for i in (1, 2))
    assert e1 <= s2 or e2 <= s1  # one after the other (the node has room for both)


@pytest.mark.cluster
def test_recipe_stages(backend: str, tmp_path: Path) -> None:
    """run.sh stages 0-1 (corpus synthesis, data preparation and split) as cluster jobs."""
    conf = tmp_path / "corpus.yaml"
    conf.write_text((ROOT / "conf" / "corpus.yaml").read_text()
                    .replace("num_general: 800", "num_general: 40")
                    .replace("num_domain: 600", "num_domain: 30"))
    r = run(["bash", ROOT / "run.sh", "--stage", "0", "--stop-stage", "1",
             "--corpus-conf", conf, "--corpus-dir", tmp_path / "corpus",
             "--datadir", tmp_path / "data", "--expdir", tmp_path / "exp"],
            env=dict(os.environ, cmd_backend=backend), timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    logs = tmp_path / "exp" / "logs"
    for name in ("make_corpus", "prepare_general", "split_general", "prepare_domain",
                 "split_domain"):
        check_log(logs / f"{name}.log", (logs / f"{name}.log").read_text().splitlines()[0][2:], 0)
        assert re.search(rf"{backend} job \d+ task 1,", (logs / "q" / f"{name}.1.out").read_text())
    for pool in ("general", "domain"):
        for part in ("train", "valid", "test"):
            assert (tmp_path / "data" / f"{pool}_{part}" / "wav.scp").stat().st_size > 0


@pytest.mark.cluster
def test_run_sh_hostile_folder_names(backend: str, tmp_path: Path) -> None:
    """run.sh stages 1-2 as cluster jobs on --data/--general folders whose names
    hold shell syntax and unicode: every path reaches the jobs exactly."""
    from helpers import write_utt

    data, general = tmp_path / f"dom {HOSTILE_DIR}", tmp_path / f"gen {HOSTILE_DIR}"
    for i in range(10):
        write_utt(data, f"d {HOSTILE_DIR}", f"u{i} $x", f"病历 {i}", seed=i)
    for i in range(10):
        write_utt(general, f"g {HOSTILE_DIR}", f"u{i} $x", f"一般 {i}", seconds=1.0, seed=i)
    r = run(["bash", ROOT / "run.sh", "--data", data, "--general", general,
             "--stage", "1", "--stop-stage", "2", "--datadir", tmp_path / "data",
             "--expdir", tmp_path / "exp"],
            env=dict(os.environ, cmd_backend=backend), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wavs = (tmp_path / "data" / "domain_all" / "wav.scp").read_text(encoding="utf-8")
    assert f"{data}/d {HOSTILE_DIR}/u0 $x.wav" in wavs
    assert (tmp_path / "data" / "stage1_train" / "wav.scp").stat().st_size > 0
    assert not (ROOT / "X").exists() and not (ROOT / "Y").exists()
    assert not list(tmp_path.rglob("X")) and not list(tmp_path.rglob("Y"))


# --------------------------------------------------------------------------
# stand-in schedulers: the option mapping and queue.pl's whole path

# Runs every array task of the submitted script at once (serially), as the
# scheduler would, and records its arguments one per line in $FAKE_ARGS.
FAKE_SBATCH = r"""#!/usr/bin/env bash
printf '%s\n' "$@" > "$FAKE_ARGS"
range=1-1 out=
for a in "$@"; do
  case "$a" in --array=*) range=${a#--array=}; range=${range%%\%*} ;; --output=*) out=${a#--output=} ;; esac
done
script=${!#}
for i in $(seq ${range%-*} ${range#*-}); do
  SLURM_ARRAY_TASK_ID=$i SLURM_JOB_ID=77 bash "$script" > "${out//%a/$i}" 2>&1
done
echo 77
"""
FAKE_QSUB = r"""#!/usr/bin/env bash
printf '%s\n' "$@" > "$FAKE_ARGS"
range=1-1 out= prev=
for a in "$@"; do
  case "$prev" in -t) range=$a ;; -o) out=$a ;; esac
  prev=$a
done
script=${!#}
for i in $(seq ${range%-*} ${range#*-}); do
  SGE_TASK_ID=$i JOB_ID=88 bash "$script" > "${out//\$TASK_ID/$i}" 2>&1
done
echo "88.${range}:1"
"""


@pytest.fixture
def fake_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("qsub", FAKE_QSUB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                FAKE_ARGS=str(tmp_path / "args"))


def fake_args(env: dict[str, str]) -> list[str]:
    return Path(env["FAKE_ARGS"]).read_text().splitlines()


def test_sbatch_flags_from_conf(fake_env, tmp_path: Path) -> None:
    r = with_cmd_sh("slurm", f"${{cuda_cmd}} --mem 4G --num-threads 2 --time 1:00:00 "
                    f"--max-jobs-run 2 JOB=1:3 {tmp_path}/log/d.JOB.log echo JOB", env=fake_env)
    assert r.returncode == 0, r.stderr
    q = tmp_path / "log" / "q"
    assert fake_args(fake_env) == [
        "--export=ALL", "--ntasks=1",
        "--gres=gpu:1", "--mem-per-cpu=4G", "--cpus-per-task=2", "--time=1:00:00",
        "--parsable", "--job-name=d.JOB", f"--output={q}/d.%a.out", "--array=1-3%2",
        f"{q}/d.JOB.sh"]
    for i in (1, 2, 3):
        assert check_log(tmp_path / f"log/d.{i}.log", f"echo {i}", 0, threads=2) == [str(i)]


def test_sbatch_num_nodes(fake_env, tmp_path: Path) -> None:
    r = with_cmd_sh("slurm", f"${{cuda_cmd}} --num-nodes 2 {tmp_path}/t.log true", env=fake_env)
    assert r.returncode == 0, r.stderr
    args = fake_args(fake_env)
    assert args[args.index("--gres=gpu:1") + 1:][:3] == ["--nodes=2", "--ntasks=2",
                                                         "--ntasks-per-node=1"]
    r = with_cmd_sh("slurm", f"${{cuda_cmd}} --num-nodes 1 {tmp_path}/t.log true", env=fake_env)
    assert r.returncode == 0 and not [a for a in fake_args(fake_env) if a.startswith("--nodes")]


def test_sbatch_defaults_and_exact_values(fake_env, tmp_path: Path) -> None:
    # No --gpu: "default gpu=0" applies, and "option gpu=0" adds nothing;
    # a single job is not an array.
    r = run([SLURM_PL, "--mem", "0", f"{tmp_path}/one.log", "true"], env=fake_env)
    assert r.returncode == 0, r.stderr
    args = fake_args(fake_env)
    assert args[:2] == ["--export=ALL", "--ntasks=1"]
    assert not [a for a in args if a.startswith(("--gres", "--mem", "--array"))]
    assert f"--output={tmp_path}/q/one.1.out" in args


def test_queue_pl_array_through_cmd_sh(fake_env, tmp_path: Path) -> None:
    cmd = "echo JOB; [ JOB -ne 2 ] || exit 4"
    r = with_cmd_sh("sge", f"${{decode_cmd}} --mem 2G --num-threads 2 --max-jobs-run 2 "
                    f"JOB=1:3 {tmp_path}/log/d.JOB.log {as_code(cmd)}",
                    env=fake_env)
    assert r.returncode == 1
    assert f"1 / 3 failed, log is in {tmp_path}/log/d.2.log" in r.stderr
    q = tmp_path / "log" / "q"
    assert fake_args(fake_env) == [
        "-V", "-l", "mem_free=2G", "-pe", "smp", "2",
        "-terse", "-S", "/bin/bash", "-j", "y", "-N", "d.JOB", "-o", f"{q}/d.$TASK_ID.out",
        "-t", "1-3", "-tc", "2", f"{q}/d.JOB.sh"]
    for i, code in ((1, 0), (2, 4), (3, 0)):
        assert check_log(tmp_path / f"log/d.{i}.log", cmd.replace("JOB", str(i)), code,
                         threads=2) == [str(i)]
        assert (q / f"d.{i}.done").read_text() == f"{code}\n"
        assert "sge job 88 task" in (q / f"d.{i}.out").read_text()


@pytest.mark.parametrize("backend", ["slurm", "sge"])
def test_every_word_reaches_the_job_exactly_stand_in(backend: str, fake_env,
                                                      tmp_path: Path) -> None:
    check_hostile_words(tmp_path, "${decode_cmd}", env=fake_env, backend=backend)


def test_range_from_zero_is_shifted_for_the_scheduler(fake_env, tmp_path: Path) -> None:
    r = run([QUEUE_PL, "JOB=0:1", f"{tmp_path}/z.JOB.log", "echo", "index", "JOB"], env=fake_env)
    assert r.returncode == 0, r.stderr
    assert "1-2" in fake_args(fake_env)
    assert check_log(tmp_path / "z.0.log", "echo index 0", 0) == ["index 0"]
    assert check_log(tmp_path / "z.1.log", "echo index 1", 0) == ["index 1"]


def test_stale_done_files_are_removed_before_submitting(fake_env, tmp_path: Path) -> None:
    q = tmp_path / "q"
    q.mkdir()
    (q / "s.1.done").write_text("0\n")
    r = run([SLURM_PL, "JOB=1:1", f"{tmp_path}/s.JOB.log", "exit", "5"], env=fake_env)
    assert r.returncode == 1
    assert (q / "s.1.done").read_text() == "5\n"


@pytest.mark.parametrize("tool", [SLURM_PL, QUEUE_PL])
@pytest.mark.parametrize("args, message", [
    ([], "expected LOGFILE and COMMAND"),
    (["--max-jobs-run", "0", "JOB=1:2", "x.JOB.log", "true"], "--max-jobs-run"),
    (["--num-threads", "two", "x.log", "true"], "--num-threads"),
    (["JOB=3:1", "x.JOB.log", "true"], "start is after end"),
    (["JOB=1:2", "x.log", "true"], "put JOB in its name"),
])
def test_bad_usage(tool: Path, args: list[str], message: str, tmp_path: Path) -> None:
    r = run([tool, *args], cwd=tmp_path)
    assert r.returncode == 1
    assert message in r.stderr and "Usage:" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("conf, args, message", [
    ("command sbatch\n", ["--gpu", "1"],
     "has no 'option gpu=...' line"),
    ("command sbatch\noption gpu=0\n", ["--gpu", "2"],
     "has no 'option gpu=2' or 'option gpu=*' line"),
    ("option gpu=* --gres=gpu:$0\n", [], "has no 'command' line"),
    ("command sbatch\nflavour x\n", [], "line 2: unknown line"),
    ("command sbatch\ndefault gpu\n", [], "line 2: expected 'default NAME=VALUE'"),
])
def test_bad_config(conf: str, args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "my.conf").write_text(conf)
    r = run([SLURM_PL, "--config", tmp_path / "my.conf", *args, "x.log", "true"], cwd=tmp_path)
    assert r.returncode == 1
    assert message in r.stderr and str(tmp_path / "my.conf") in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.conf"]


def test_submission_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "my.conf").write_text("command false --flag\n")
    r = run([SLURM_PL, "--config", tmp_path / "my.conf", "x.log", "true"], cwd=tmp_path)
    assert r.returncode == 1
    assert "submitting failed (exit code 1): false --flag" in r.stderr


def test_cmd_sh_backends() -> None:
    r = with_cmd_sh("sge", 'echo "$train_cmd|$decode_cmd|$cuda_cmd"')
    assert r.stdout.strip() == "utils/queue.pl|utils/queue.pl|utils/queue.pl --gpu 1"
    r = with_cmd_sh("pbs", "true")
    assert r.returncode == 1 and "unknown cmd_backend 'pbs'" in r.stderr


# --------------------------------------------------------------------------
# resources that agree: what a training job asks for is what it uses

def run_sh_train_job(backend: str, ngpu: int, threads: int, env: dict[str, str],
                     log: Path) -> subprocess.CompletedProcess:
    """run.sh's own lines that build the training job's command (from
    `if [ "${ngpu}" -gt 0 ]` to the --num-threads line), then one job through it."""
    text = (ROOT / "run.sh").read_text()
    start = text.index('if [ "${ngpu}" -gt 0 ]; then')
    end = text.index("\n", text.index('train_job+=(--num-threads "${train_threads}")', start))
    block = text[start:end]
    return with_cmd_sh(backend, f"ngpu={ngpu}; train_nproc=1; train_threads={threads}; {block}\n"
                                f'${{train_job[*]}} {log} true', env=env)


@pytest.mark.parametrize("ngpu", [0, 1])
def test_training_jobs_reserve_their_threads(fake_env, tmp_path: Path, ngpu: int) -> None:
    r = run_sh_train_job("slurm", ngpu, 3, fake_env, tmp_path / "t.log")
    assert r.returncode == 0, r.stderr
    assert "--cpus-per-task=3" in fake_args(fake_env)
    r = run_sh_train_job("sge", ngpu, 3, fake_env, tmp_path / "t.log")
    assert r.returncode == 0, r.stderr
    args = fake_args(fake_env)
    assert args[args.index("-pe"):][:3] == ["-pe", "smp", "3"]
    r = run_sh_train_job("local", ngpu, 3, fake_env, tmp_path / "t.log")
    assert r.returncode == 0, r.stderr
    check_log(tmp_path / "t.log", "true", 0, threads=3)


def test_threads_default_to_the_allocation(tmp_path: Path) -> None:
    from funasr_recipe.resources import allocated_cpus

    assert allocated_cpus({"SLURM_CPUS_PER_TASK": "6", "NSLOTS": "4"}) == 6
    assert allocated_cpus({"NSLOTS": "4"}) == 4
    assert allocated_cpus({}) == len(os.sched_getaffinity(0))
    assert allocated_cpus({"SLURM_CPUS_PER_TASK": "x", "NSLOTS": "2"}) == 2
    for tool in ("train.py", "pretrain_llm.py"):
        env = dict(os.environ, SLURM_CPUS_PER_TASK="7")
        r = run(["python", ROOT / "local" / tool, "--help"], env=env)
        assert r.returncode == 0, r.stderr
        assert re.search(r"--threads THREADS\s.*allocation.*here 7\)", " ".join(r.stdout.split())), (
            tool, r.stdout)
