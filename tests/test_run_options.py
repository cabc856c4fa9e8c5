"""run.sh's handling of its options before any stage runs (fast: it stops early)."""

from __future__ import annotations

import os
import subprocess

from helpers import ROOT


def run_sh(cwd, *args, env=None):
    return subprocess.run(["bash", str(ROOT / "run.sh"), *args], cwd=cwd, capture_output=True,
                          text=True, env=env)


def test_base_model_is_checked_before_the_data_stages(tmp_path):
    r = run_sh(tmp_path, "--base-model", "no_such_model", "--stage", "1", "--stop-stage", "1",
               "--datadir", "data", "--expdir", "exp")
    out = r.stdout + r.stderr
    assert r.returncode == 1
    # the relative path is the caller's, and it is named with what to do
    assert f"{tmp_path}/no_such_model" in out and "ERROR:" in out
    assert "Stage 1" not in out and not (tmp_path / "data").exists()


def test_a_wrong_family_is_refused_before_the_data_stages(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.yaml").write_text("model: Paraformer\n")
    r = run_sh(tmp_path, "--model", "nano", "--base-model", "m", "--stage", "1",
               "--datadir", "data", "--expdir", "exp")
    assert r.returncode == 1 and "Stage 1" not in r.stdout
    assert "is a Paraformer model dir" in r.stdout + r.stderr          # not "re-download"
    assert "--model paraformer" in r.stdout + r.stderr


def test_help_says_relative_paths_are_the_callers(tmp_path):
    r = run_sh(tmp_path, "--help")
    assert r.returncode == 0
    assert "Relative paths in options are taken from the directory you run" in r.stdout + r.stderr


def test_training_threads_default_to_the_cpus_whatever_omp_num_threads_says(tmp_path):
    # GNU nproc prints OMP_NUM_THREADS when it is set (path.sh sets it to 1, and
    # so do many cluster set-ups): the default must still be the CPU count, or
    # a user's shell decides how many threads, and hence which model, training
    # gives (1 thread and 2 threads give different floating-point sums)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nproc").write_text('#!/usr/bin/env bash\necho "${OMP_NUM_THREADS:-3}"\n')
    (fake / "nproc").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1", OMP_THREAD_LIMIT="1")
    r = run_sh(tmp_path, "--help", env=env)
    assert r.returncode == 0, r.stderr
    line = next(x for x in (r.stdout + r.stderr).splitlines() if "--train-threads N" in x)
    assert line.rstrip().endswith("[3]"), line


def test_a_plan_the_train_config_lacks_sections_for_stops_at_once(tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text("common: {}\npretrain: {}\nstages:\n  stage1: {}\n")
    r = run_sh(tmp_path, "--train-conf", "train.yaml", "--stage", "1",
               "--datadir", "data", "--expdir", "exp")
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Stage 1" not in out
    assert f"{conf}: no section under 'stages:' for stage2, stage3" in out


def test_decode_settings_come_from_the_decode_conf_with_overrides(tmp_path):
    import pytest

    from funasr_recipe.decoding import decode_settings
    from funasr_recipe.errors import DataError
    conf = ROOT / "conf" / "paraformer" / "decode.yaml"
    assert decode_settings(conf, []) == {"batch_size": 16, "dither": 0.0, "feature_workers": 0}
    assert decode_settings(conf, ["batch_size=4"])["batch_size"] == 4
    with pytest.raises(DataError, match="--set beam=4: expected KEY=VALUE"):
        decode_settings(conf, ["beam=4"])
    bad = tmp_path / "d.yaml"
    bad.write_text("batch_size: 2\nbeam: 3\n")
    with pytest.raises(DataError, match="unknown decode setting"):
        decode_settings(bad, [])


def test_train_args_scoped_to_a_section_win_over_the_rest_and_skip_other_sections():
    import pytest

    from funasr_recipe.config import parse_overrides
    from funasr_recipe.errors import DataError
    items = ["pretrain:train_conf.max_epoch=12", "train_conf.max_epoch=3",
             "stage1:optim_conf.lr=0.0", "optim_conf.lr = 0.001"]
    sections = ["pretrain", "stage1", "stage2"]
    assert parse_overrides(items, "pretrain", sections) == {
        "train_conf.max_epoch": "12", "optim_conf.lr": "0.001"}
    assert parse_overrides(items, "stage1", sections) == {
        "train_conf.max_epoch": "3", "optim_conf.lr": "0.0"}
    assert parse_overrides(items, "stage2", sections) == {
        "train_conf.max_epoch": "3", "optim_conf.lr": "0.001"}
    # a path value may hold ':' and '='
    assert parse_overrides(["init=/a:b=c"]) == {"init": "/a:b=c"}
    with pytest.raises(DataError, match=r"no section 'stag1' \(have: pretrain, stage1, stage2\)"):
        parse_overrides(["stag1:optim_conf.lr=0"], "stage1", sections)
    with pytest.raises(DataError, match="have no sections; drop 'stage1:'"):
        parse_overrides(["stage1:batch_size=4"])
    with pytest.raises(DataError, match="expected KEY=VALUE"):
        parse_overrides(["lr"], "stage1", sections)


def test_a_train_args_scope_the_config_lacks_stops_the_run_at_once(tmp_path):
    r = run_sh(tmp_path, "--train-args", "stage4:optim_conf.lr=0", "--stage", "1",
               "--datadir", "data", "--expdir", "exp")
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Stage 1" not in out
    assert "--train-args stage4:optim_conf.lr=0: no section 'stage4'" in out


def test_stage3_jsonl_jobs_run_side_by_side_and_a_failed_one_stops_the_stage(tmp_path):
    # stage 3 writes the sets' jsonl nj at a time: every good set gets its file, and a
    # set with a broken data dir fails the run with its log and the reason named
    import numpy as np
    import soundfile as sf

    sets = [f"{p}_{s}" for p in ("general", "domain") for s in ("train", "valid", "test")]
    sets += [f"stage{i}_train" for i in (1, 2, 3)]
    for name in sets:
        d = tmp_path / "data" / name
        d.mkdir(parents=True)
        wav = d / "u1.wav"
        sf.write(str(wav), np.zeros(1600, dtype="float32"), 16000)
        (d / "wav.scp").write_text(f"{name}-u1 {wav}\n")
        (d / "text").write_text(f"{name}-u1 你好\n")
    run = ["--model", "paraformer", "--stage", "3", "--stop-stage", "3", "--datadir", "data",
           "--dumpdir", "dump", "--expdir", "exp", "--nj", "2"]
    r = run_sh(tmp_path, *run)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in sets:
        line = (tmp_path / "dump" / "paraformer" / f"{name}.jsonl").read_text()
        assert f'"key": "{name}-u1"' in line
    with open(tmp_path / "data" / "domain_valid" / "text", "a") as f:
        f.write("stray 你好\n")
    r = run_sh(tmp_path, *run)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Successfully finished" not in out
    assert "jsonl_paraformer_domain_valid.log" in out and "'stray'" in out


def test_use_utt2dur_prepares_wav_scp_inputs_from_their_utt2dur_without_opening_audio(tmp_path):
    # the files are not audio: only a stage 1 that opens none of them can prepare them
    pools = {}
    for pool in ("general", "domain"):
        src = tmp_path / pool
        src.mkdir()
        scp, text, durs = [], [], []
        for i in range(20):
            key = f"{pool[0]}spk{i % 4}-u{i:02d}"
            p = src / f"{key}.wav"
            p.write_bytes(b"not audio")
            scp.append(f"{key} {p}")
            text.append(f"{key} 第 {i} 句")
            durs.append(f"{key} {1 + i / 100:.2f}")
        for name, lines in (("wav.scp", scp), ("text", text), ("utt2dur", durs)):
            (src / name).write_text("\n".join(lines) + "\n")
        pools[pool] = src
    run = ["--stage", "1", "--stop-stage", "1", "--datadir", "data", "--expdir", "exp",
           "--data", "domain/wav.scp", "--text", "domain/text",
           "--general", "general/wav.scp", "--general-text", "general/text"]
    r = run_sh(tmp_path, *run)  # control: every header is read, and the option is named
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "cannot read audio" in out
    assert "--use-utt2dur true would take the durations from" in out
    r = run_sh(tmp_path, *run, "--use-utt2dur", "true")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert out.count("durations of 20 utterances from") == 2
    for pool, src in pools.items():
        got = (tmp_path / "data" / f"{pool}_all" / "utt2dur").read_text().splitlines()
        assert got == [f"{k} {float(v):.3f}" for k, v in
                       (x.split() for x in sorted((src / "utt2dur").read_text().splitlines()))]
    # the utt2dur is an input of the stage: a changed one prepares again
    r = run_sh(tmp_path, *run, "--use-utt2dur", "true")
    assert "complete for the same inputs, skipped" in r.stdout + r.stderr
    (pools["domain"] / "utt2dur").write_text(
        (pools["domain"] / "utt2dur").read_text().replace(" 1.00\n", " 1.50\n"))
    r = run_sh(tmp_path, *run, "--use-utt2dur", "true")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dspk0-u00 1.500" in (tmp_path / "data" / "domain_all" / "utt2dur").read_text()
