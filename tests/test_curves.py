"""Tests of funasr_recipe.curves and local/plot_curves.py on a real (trimmed)
mini-recipe training log, a truncated copy, and the fallbacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from funasr_recipe.curves import (discover_stages, find_job_logs, load_experiment, load_stage,
                                  offsets, parse_log, read_log, read_tensorboard, summary_text)
from funasr_recipe.errors import DataError
from helpers import run_tool

LOG = Path(__file__).resolve().parent / "data" / "train_stage1.log"


def run_sh_logs(exp: Path) -> dict[str, Path]:
    """The job logs as run.sh names them (local/plot_curves.py's defaults)."""
    return find_job_logs(exp, "logs/train_{stage}.log", "logs/pretrain.log")


def test_real_log():
    st = read_log(LOG, "stage1")
    assert st.status == "finished" and st.wall_s == 115
    assert st.max_epoch == 6
    # 133 batches an epoch, a line every 10: 13 lines in each of epochs 1-3
    assert len(st.train) == 39
    first, last = st.train[0], st.train[-1]
    assert (first.step, first.epoch, first.loss, first.loss_avg, first.acc_avg, first.lr,
            first.acc) == (10, 1, 2.067, 1.78, 0.676, 1.1e-4, 0.638)
    assert (last.step, last.epoch) == (396, 3)
    # the main valid set is domain_valid.jsonl: its losses only in checkpoint ranking
    assert st.series() == ["domain", "general"]
    domain = [(v.epoch, v.step, v.loss, v.acc) for v in st.valid if v.set == "domain"]
    assert domain == [(1, 130, 1.3791, None), (2, 263, 0.8975, None), (3, 396, 0.7221, None)]
    general = [(v.epoch, v.loss, v.acc) for v in st.valid if v.set == "general"]
    assert general == [(1, 0.387, 0.9125), (2, 0.3399, 0.915), (3, 0.3371, 0.9201)]
    assert st.best_epoch() == ("domain", 3)
    text = summary_text([st])
    for expected in ("status:      finished", "steps:       396", "epochs:      3 validated of 6",
                     "best epoch:  3 (lowest domain valid loss)", "wall time:   0:01:55",
                     "valid general: epoch 3 loss 0.3371 acc 0.9201; min loss 0.3371"):
        assert expected in text


def test_truncated_log(tmp_path):
    data = LOG.read_bytes()
    # cut inside the 20th training line, in the middle of a number
    cut = data.index(b"total step: 203,") + len(b"total step: 203, (loss_avg_rank: 0.")
    st = parse_log(data[:cut].decode("utf-8").splitlines(), "stage1")
    assert st.status == "incomplete (still running or cut off)"
    assert [p.step for p in st.train][-1] == 193 and len(st.train) == 19
    assert [v.epoch for v in st.valid if v.set == "domain"] == [1]
    # from the first timestamp (12:54:53) to that of the cut line (12:55:24)
    assert st.wall_s == 31.0
    # a cut inside a multi-byte character is read too (bytes replaced)
    part = tmp_path / "train_stage1.log"
    part.write_bytes(data[:cut] + "血".encode()[:2])
    assert len(read_log(part, "stage1").train) == 19


def test_val_lines_and_acc_ranking():
    lines = [
        "[2026-01-01 00:00:00,000][root][INFO] - ++valid_data_set_list=/d/heldout.jsonl x",
        "[2026-01-01 00:00:01,000][root][INFO] - train, rank: 0, epoch: 0/2, data_slice: 0/1, "
        "step_in_slice: 10/20, step_in_epoch: 10, total step: 10, (loss_avg_rank: 1.5), "
        "(loss_avg_slice: 2.0), (ppl_avg_slice: 7.389e+00), (acc_avg_slice: 0.5), "
        "(lr: 1.000e-03), [('acc', 0.4)], {}",
        "[2026-01-01 00:00:02,000][root][INFO] - Validate epoch: 1, rank: 0",
        "[2026-01-01 00:00:03,000][root][INFO] - val, rank: 0, epoch: 1/2, data_slice: 0/1, "
        "step_in_slice: 10/20, step_in_epoch: 0, total step: 10, (loss_avg_rank: 0.9), "
        "(loss_avg_slice: 1.25), (ppl_avg_slice: 3.4e+00), (acc_avg_slice: 0.75), (lr: 0.0)",
        "[2026-01-01 00:00:04,000][root][INFO] - Update best acc: 0.7500, /x/model.pt.best",
        "[2026-01-01 00:00:05,000][root][INFO] - Validate epoch: 2, rank: 0",
        "[2026-01-01 00:00:06,000][root][INFO] - No improvement in acc: 0.7000 < 0.7500, /x",
    ]
    st = parse_log(lines, "s")
    assert [(v.set, v.epoch, v.loss, v.acc) for v in st.valid] == [
        ("heldout", 1, 1.25, 0.75), ("heldout", 2, None, 0.7)]
    assert st.best_epoch() == ("heldout", 1)
    assert st.wall_s == 6.0 and st.train[0].acc == 0.4


def _exp_with_two_stages(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    (exp / "logs").mkdir(parents=True)
    shutil.copy(LOG, exp / "logs" / "pretrain.log")
    shutil.copy(LOG, exp / "logs" / "train_stage10.log")
    data = LOG.read_bytes()
    (exp / "logs" / "train_stage2.log").write_bytes(data[:data.index(b"total step: 203,")])
    return exp


def test_discover_and_continuous_axis(tmp_path):
    exp = _exp_with_two_stages(tmp_path)
    logs = run_sh_logs(exp)
    assert discover_stages(exp, logs) == ["pretrain", "stage2", "stage10"]
    # the package knows no layout: without the job logs, nothing is found
    assert discover_stages(exp) == []
    stages = [load_stage(exp, s, logs[s]) for s in discover_stages(exp, logs)]
    assert [s.last_step for s in stages] == [396, 193, 396]
    assert offsets(stages) == [0, 396, 589]


def test_fallback_to_funasr_log_and_tensorboard(tmp_path):
    exp = tmp_path / "exp"
    (exp / "logs").mkdir(parents=True)
    # a re-run that skipped the stage overwrote the job log
    (exp / "logs" / "train_stage1.log").write_text(
        "# python local/train.py ...\n2026-01-01 00:00:00,000 (train:1) INFO: complete, "
        "skipped\n# Ended (code 0) at Thu Jan 1 00:00:00 UTC 2026, elapsed time 1 seconds\n")
    (exp / "stage1").mkdir()
    shutil.copy(LOG, exp / "stage1" / "train.log")
    st = load_stage(exp, "stage1", run_sh_logs(exp)["stage1"])
    assert len(st.train) == 39 and st.source.endswith("stage1/train.log")
    assert st.status == "finished" and "has 0 training points" in st.notes[0]
    # a log of a run cut off after 2 epochs and resumed an hour later: the
    # wall time is that of the two runs, not of the hour between them
    lines = LOG.read_text(encoding="utf-8").splitlines()
    cut = next(i for i, line in enumerate(lines) if "Train epoch: 2" in line)
    resumed = [line.replace("12:5", "13:5") for line in lines[:cut] if line.startswith("[")]
    st = parse_log(lines[:cut] + resumed, "stage1")
    assert st.wall_s == (55 * 60 + 32 - 54 * 60 - 53) + (55 * 60 + 32 - 54 * 60 - 59)
    # only TensorBoard events
    tbx = pytest.importorskip("tensorboardX")
    writer = tbx.SummaryWriter(str(exp / "stage2" / "tensorboard"))
    for step in (10, 20, 30):
        writer.add_scalar("rank0_loss/train", 3.0 / step, step)
        writer.add_scalar("rank0_lr/train", 1e-3, step)
        writer.add_scalar("stats_rank0_acc/train", 0.5, step)
    writer.add_scalar("valid_general/loss", 0.25, 1)
    writer.close()
    scalars = read_tensorboard(exp / "stage2" / "tensorboard")
    assert scalars["rank0_loss/train"] == [(10, pytest.approx(0.3)), (20, pytest.approx(0.15)),
                                           (30, pytest.approx(0.1))]
    st = load_stage(exp, "stage2")
    assert [p.step for p in st.train] == [10, 20, 30]
    assert [(v.set, v.epoch, v.loss) for v in st.valid] == [("general", 1, 0.25)]
    assert "tensorboard" in st.source
    st = load_stage(exp, "stage3")
    assert st.train == [] and st.notes == ["no training lines found"]


def test_cli_writes_png_summary_and_tables(tmp_path):
    exp = _exp_with_two_stages(tmp_path)
    out = tmp_path / "curves"
    p = run_tool("plot_curves.py", "--exp", exp, "--out", out)
    assert p.returncode == 0, p.stderr
    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20000
    summary = (out / "summary.txt").read_text()
    assert summary == p.stdout.split("wrote ")[0]
    assert summary.count("== ") == 3 and "incomplete (still running or cut off)" in summary
    train = (out / "train.tsv").read_text().splitlines()
    assert train[0].split("\t")[:3] == ["stage", "step", "global_step"]
    assert len(train) == 1 + 39 + 19 + 39
    assert train[40].split("\t")[:3] == ["stage2", "10", "406"]
    valid = (out / "valid.tsv").read_text().splitlines()
    assert valid[1].split("\t") == ["pretrain", "domain", "1", "130", "130", "1.3791", ""]


def test_cli_other_job_log_layout(tmp_path):
    """Job logs kept elsewhere (another driver than run.sh): --job-logs and
    --pretrain-log name them; a pattern without {stage} is refused."""
    exp = tmp_path / "exp"
    (exp / "jobs").mkdir(parents=True)
    shutil.copy(LOG, exp / "jobs" / "base.out")
    shutil.copy(LOG, exp / "jobs" / "stage1.out")
    assert find_job_logs(exp, "jobs/{stage}.out", "jobs/base.out") == {
        "base": exp / "jobs" / "base.out", "stage1": exp / "jobs" / "stage1.out",
        "pretrain": exp / "jobs" / "base.out"}
    out = tmp_path / "curves"
    p = run_tool("plot_curves.py", "--exp", exp, "--out", out, "--stages", "pretrain,stage1",
                 "--job-logs", "jobs/{stage}.out", "--pretrain-log", "jobs/base.out")
    assert p.returncode == 0, p.stderr
    assert "== pretrain ==" in p.stdout and "== stage1 ==" in p.stdout
    assert "finished" in p.stdout and "no training lines" not in p.stdout
    p = run_tool("plot_curves.py", "--exp", exp, "--job-logs", "jobs/x.out")
    assert p.returncode == 1 and "no {stage} in it" in p.stderr


def test_cli_errors(tmp_path):
    p = run_tool("plot_curves.py", "--exp", tmp_path)
    assert p.returncode == 1 and "no training logs" in p.stderr
    with pytest.raises(DataError):
        load_experiment(tmp_path)


def _short_stage_log(path: Path, validations: int, cut: bool = False) -> None:
    """A stage with fewer batches than log_interval: no training line, only the
    per-epoch validation results (main set by ranking, general by extra valid)."""
    lines = ["[2026-01-01 00:00:00,000][root][INFO] - ++valid_data_set_list=/d/domain_valid.jsonl"]
    for ep in range(1, validations + 1):
        lines += [f"[2026-01-01 00:00:0{ep},000][root][INFO] - Validate epoch: {ep}, rank: 0",
                  f"[2026-01-01 00:00:0{ep},100][root][INFO] - Update best loss: {2.0 / ep}, /x",
                  f"[2026-01-01 00:00:0{ep},200] (training:1) INFO: extra valid general, "
                  f"epoch: {ep}, loss: {1.0 / ep}, acc: 0.5, n: 4"]
    text = "\n".join(lines) + "\n"
    if cut:
        text = text[:-12]          # the last line cut inside its number
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("validations,cut", [(2, False), (1, False), (1, True), (3, True)])
def test_stage_without_logged_steps_still_plots(tmp_path, validations, cut):
    """A stage with fewer steps than log_interval, one epoch, a log cut mid-line:
    validations tie at step 0, which once raised "'<' not supported between
    instances of 'ValidPoint' and 'ValidPoint'" and stopped run.sh."""
    exp = tmp_path / "exp"
    shutil.copy(LOG, (exp / "logs").mkdir(parents=True) or exp / "logs" / "pretrain.log")
    _short_stage_log(exp / "logs" / "train_stage1.log", validations, cut)
    out = tmp_path / "curves"
    p = run_tool("plot_curves.py", "--exp", exp, "--out", out)
    assert p.returncode == 0, p.stderr
    assert "WARNING" not in p.stderr
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    st = load_stage(exp, "stage1", exp / "logs" / "train_stage1.log")
    assert st.train == [] and st.epochs_done == validations
    assert "== stage1 ==" in (out / "summary.txt").read_text()


def test_plot_failure_is_a_warning_and_exit_0(tmp_path):
    """A plotting failure (here: the output is a file, not a folder) warns and
    lets the recipe go on; the summary is still printed."""
    exp = tmp_path / "exp"
    shutil.copy(LOG, (exp / "logs").mkdir(parents=True) or exp / "logs" / "pretrain.log")
    out = tmp_path / "curves"
    out.write_text("in the way\n")
    p = run_tool("plot_curves.py", "--exp", exp, "--out", out)
    assert p.returncode == 0, p.stderr
    warnings = [line for line in p.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "curves not written" in warnings[0], p.stderr
    assert str(out) in warnings[0]
    assert "== pretrain ==" in p.stdout
