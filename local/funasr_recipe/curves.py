"""Training curves of every stage, headless.

Sources, per stage, first that has training lines wins:

0. ``EXP/<stage>/metrics.tsv``: the metrics the recipe's own Trainer records
   as it sees them (:mod:`funasr_recipe.metrics`); every run since it exists
   writes one. The sources below are read only for older runs (scraping
   funasr's log text), and the job log still gives status and wall time;
1. the stage's job log, where the caller keeps one (``job_logs``: run.sh's are
   named by ``local/plot_curves.py``): funasr's log lines behind run.pl's
   header and trailer;
2. ``EXP/<stage>/train.log``: the log hydra writes in funasr's output dir
   (appended to when a run resumes; it survives a re-run that skipped the
   stage, which overwrites the job log);
3. ``EXP/<stage>/tensorboard/events.*``: funasr's TensorBoard events, read
   with the protobuf classes of ``tensorboardX`` (a funasr dependency); when
   that is not importable they are skipped with a note.

What funasr 1.4.16 logs, and what is read from it:

* every ``log_interval`` batches a line ``train, rank: R, epoch: E/N, ...,
  total step: T, (loss_avg_rank: L), (loss_avg_slice: L), ..., (acc_avg_slice:
  A), (lr: X), [('loss_att', ..), ('acc', A), ...]``: the batch loss, the
  epoch's running mean loss and accuracy, the learning rate;
* ``Validate epoch: V`` (V = E + 1, as in ``model.pt.epV``), then the
  validation loss of the main valid set: ``val, rank: ...`` lines exist only
  when the valid set has at least ``log_interval`` batches (their last running
  mean is the epoch's loss and accuracy); otherwise only checkpoint ranking
  logs it: ``Update best loss: L`` or ``No improvement in loss: L > B`` (``acc``
  when checkpoints are ranked by accuracy);
* ``extra valid NAME, epoch: V, loss: L, acc: A, ...``: the recipe's extra
  validation sets (funasr_recipe.training).

Wall time is the job's ``elapsed time`` from run.pl's trailer, else the time
between the first and last timestamps of each run in the log (a resumed run
starts again with ``download models from model hub`` and ``Build model,
frontend, tokenizer``), summed.

The main valid set is named after its jsonl (``domain_valid.jsonl`` ->
``domain``), so that domain and general validation losses each form one series
across stages. Lines cut off or garbled (a log still being written, a crash)
are skipped; a stage's status says whether its job ended.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from .atomic import atomic_write
from .errors import DataError

log = logging.getLogger(__name__)

_NUM = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"
_TS_RE = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d{3})")
_TRAIN_RE = re.compile(
    r"\btrain, rank: \d+, epoch: (\d+)/(\d+), data_slice: \d+/\d+, step_in_slice: \d+/\d+, "
    rf"step_in_epoch: \d+, total step: (\d+), \(loss_avg_rank: {_NUM}\), "
    rf"\(loss_avg_slice: {_NUM}\), \(ppl_avg_slice: [^)]*\), \(acc_avg_slice: {_NUM}\), "
    rf"\(lr: {_NUM}\)")
_BATCH_ACC_RE = re.compile(rf"\('acc', {_NUM}\)")
_VAL_RE = re.compile(
    rf"\bval, rank: \d+, epoch: (\d+)/\d+, .*?\(loss_avg_slice: {_NUM}\), "
    rf"\(ppl_avg_slice: [^)]*\), \(acc_avg_slice: {_NUM}\)")
_VALIDATE_RE = re.compile(r"Validate epoch: (\d+)")
_BEST_RE = re.compile(rf"(?:Update best|No improvement in) (loss|acc): {_NUM}")
_EXTRA_RE = re.compile(rf"extra valid (\S+), epoch: (\d+), loss: {_NUM}, acc: {_NUM}")
_VALID_LIST_RE = re.compile(r"valid_data_set_list=(\S+)")
_ENDED_RE = re.compile(r"^# Ended \(code (-?\d+)\).*?elapsed time (\d+) seconds")
_ACCOUNT_ENDED_RE = re.compile(r"^# Ended \(code (-?\d+)\)")
#: funasr logs these at the start of every training run (a resume too)
_RUN_START_RE = re.compile(r"download models from model hub|Build model, frontend, tokenizer")


@dataclass
class TrainPoint:
    step: int               #: funasr's total step within the stage
    epoch: int              #: 1-based, as checkpoints are named
    loss: float             #: the logged batch's loss
    loss_avg: float         #: running mean of the epoch so far
    acc_avg: float
    lr: float
    acc: float | None = None  #: the logged batch's accuracy


@dataclass
class ValidPoint:
    epoch: int
    step: int               #: the stage's total step when it was validated
    set: str
    loss: float | None
    acc: float | None


@dataclass
class StageCurves:
    name: str
    source: str = "none"                #: the file the curves were read from
    train: list[TrainPoint] = field(default_factory=list)
    valid: list[ValidPoint] = field(default_factory=list)
    max_epoch: int | None = None        #: planned epochs
    wall_s: float | None = None
    status: str = "no log"
    notes: list[str] = field(default_factory=list)

    @property
    def last_step(self) -> int:
        return max((p.step for p in self.train), default=0)

    @property
    def epochs_done(self) -> int:
        return max((v.epoch for v in self.valid), default=0)

    def series(self) -> list[str]:
        """Valid set names, main set first."""
        return list(dict.fromkeys(v.set for v in self.valid))

    def best_epoch(self) -> tuple[str, int] | None:
        """(set, epoch) of the lowest loss on the main valid set (highest
        accuracy when only accuracies were logged)."""
        main = [v for v in self.valid if v.set == (self.series() or [None])[0]]
        with_loss = [v for v in main if v.loss is not None]
        if with_loss:
            best = min(with_loss, key=lambda v: (v.loss, v.epoch))
        elif main:
            best = max(main, key=lambda v: (v.acc or 0.0, -v.epoch))
        else:
            return None
        return best.set, best.epoch


def _valid_name(path: str) -> str:
    stem = Path(path).name.split(".")[0]
    return re.sub(r"(^valid_|_valid$|_dev$|^dev_)", "", stem) or stem


def parse_log(lines: Iterable[str], name: str = "", source: str = "",
              main_set: str = "valid") -> StageCurves:
    """Curves of one training run from its log lines (see module doc).

    ``main_set`` names funasr's own valid set unless the log names its jsonl.
    """
    st = StageCurves(name=name, source=source, status="incomplete (still running or cut off)")
    train: dict[int, TrainPoint] = {}
    valid: dict[tuple[str, int], ValidPoint] = {}
    validating: int | None = None
    run_seconds = 0.0                   # of the runs before the current one
    first_ts = last_ts = None           # of the current run
    starting = False                    # in a run's start-up lines
    for line in lines:
        m = _TS_RE.match(line)
        if m:
            try:
                ts = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
            except ValueError:
                ts = None
            if ts is not None:
                if _RUN_START_RE.search(line):
                    if not starting and train and first_ts is not None:    # a new run
                        run_seconds += (last_ts - first_ts).total_seconds()
                        first_ts = None
                    starting = True
                else:
                    starting = False
                first_ts = first_ts or ts
                last_ts = ts
        if "train, rank" in line:
            m = _TRAIN_RE.search(line)
            if m:
                epoch0, max_epoch, step = int(m.group(1)), int(m.group(2)), int(m.group(3))
                acc = _BATCH_ACC_RE.search(line)
                train[step] = TrainPoint(step, epoch0 + 1, float(m.group(4)), float(m.group(5)),
                                         float(m.group(6)), float(m.group(7)),
                                         float(acc.group(1)) if acc else None)
                st.max_epoch = max_epoch
            continue
        if "valid_data_set_list=" in line:
            m = _VALID_LIST_RE.search(line)
            if m:
                main_set = _valid_name(m.group(1))
        m = _VALIDATE_RE.search(line)
        if m:
            validating = int(m.group(1))
            continue
        step_now = max(train, default=0)
        m = _VAL_RE.search(line)
        if m:
            ep = int(m.group(1))
            valid[(main_set, ep)] = ValidPoint(ep, step_now, main_set, float(m.group(2)),
                                               float(m.group(3)))
            continue
        m = _BEST_RE.search(line)
        if m and validating is not None:
            key = (main_set, validating)
            point = valid.get(key)
            if point is None or point.step != step_now:      # val lines win if there were any
                kind, value = m.group(1), float(m.group(2))
                valid[key] = ValidPoint(validating, step_now, main_set,
                                        value if kind == "loss" else None,
                                        value if kind == "acc" else None)
            continue
        m = _EXTRA_RE.search(line)
        if m:
            ep = int(m.group(2))
            valid[(m.group(1), ep)] = ValidPoint(ep, step_now, m.group(1), float(m.group(3)),
                                                 float(m.group(4)))
            continue
        m = _ENDED_RE.match(line) or _ACCOUNT_ENDED_RE.match(line)
        if m:
            code = int(m.group(1))
            st.status = "finished" if code == 0 else f"failed (exit code {code})"
            if m.re is _ENDED_RE:
                st.wall_s = float(m.group(2))
    st.train = [train[k] for k in sorted(train)]
    st.valid = sorted(valid.values(), key=lambda v: (v.set != main_set, v.set, v.epoch))
    if st.wall_s is None and first_ts is not None and last_ts is not None:
        st.wall_s = run_seconds + (last_ts - first_ts).total_seconds()
    return st


def read_log(path: Path, name: str, main_set: str = "valid") -> StageCurves:
    """:func:`parse_log` of a file; undecodable bytes (a cut-off character) replaced."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_log(f, name, str(path), main_set)


def valid_set_name(stage_dir: Path) -> str:
    """The main valid set's name from funasr's resolved ``config.yaml`` in
    the stage's output dir (``valid`` when there is none)."""
    config = stage_dir / "config.yaml"
    if config.is_file():
        with open(config, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"valid_data_set_list:\s*(\S+)", line)
                if m:
                    return _valid_name(m.group(1).strip("'\""))
    return "valid"


# ---------------------------------------------------------------- tensorboard

def read_tensorboard(folder: Path) -> dict[str, list[tuple[int, float]]] | None:
    """Scalars of every ``events.*`` file in ``folder``: ``{tag: [(step, value)]}``.

    ``None`` when tensorboardX's protobuf classes are not importable. A record
    cut off at the end of a file ends that file.
    """
    try:
        from tensorboardX.proto import event_pb2
    except ImportError:
        return None
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            end = pos + 12 + length
            if end + 4 > len(data):
                break
            event = event_pb2.Event()
            try:
                event.ParseFromString(data[pos + 12:end])
            except Exception:           # a damaged record (protobuf's DecodeError)
                break
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
            pos = end + 4
    return scalars


def curves_from_tensorboard(scalars: dict[str, list[tuple[int, float]]], name: str,
                            source: str) -> StageCurves:
    """Training points (loss, accuracy, lr per logged step) and the extra
    valid sets' per-epoch loss from funasr's TensorBoard tags."""
    st = StageCurves(name=name, source=source, status="unknown (read from TensorBoard events)")
    loss = dict(scalars.get("rank0_loss/train", []))
    lr = dict(scalars.get("rank0_lr/train", []))
    acc = dict(scalars.get("stats_rank0_acc/train", []))
    st.train = [TrainPoint(s, 0, v, v, acc.get(s, float("nan")), lr.get(s, float("nan")),
                           acc.get(s)) for s, v in sorted(loss.items())]
    for tag, points in scalars.items():
        m = re.fullmatch(r"valid_(.+)/loss", tag)
        if m:
            accs = dict(scalars.get(f"valid_{m.group(1)}/acc", []))
            st.valid += [ValidPoint(ep, 0, m.group(1), v, accs.get(ep)) for ep, v in points]
    return st


# ---------------------------------------------------------------- a whole experiment

def find_job_logs(exp: Path, pattern: str, pretrain: str = "") -> dict[str, Path]:
    """The job logs under ``exp`` by stage: the files matching ``pattern``
    (relative to ``exp``, ``{stage}`` standing for the stage's name, e.g.
    ``logs/train_{stage}.log``), and ``pretrain`` (a path relative to ``exp``)
    as the ``pretrain`` stage's when given and present."""
    head, found, tail = pattern.partition("{stage}")
    if not found:
        raise DataError(f"job log pattern {pattern!r}: no {{stage}} in it "
                        f"(e.g. logs/train_{{stage}}.log)")
    logs = {}
    for p in exp.glob(head + "*" + tail):
        rel = p.relative_to(exp).as_posix()
        name = rel[len(head):len(rel) - len(tail)]
        if p.is_file() and name and "/" not in name:
            logs[name] = p
    if pretrain and (exp / pretrain).is_file():
        logs["pretrain"] = exp / pretrain
    return logs


def discover_stages(exp: Path, job_logs: Mapping[str, Path] | None = None) -> list[str]:
    """``pretrain`` (if it left anything) then the stages with a job log (by
    :func:`find_job_logs`) or a ``metrics.tsv``, in natural order (stage2
    before stage10)."""
    job_logs = job_logs or {}
    names = [n for n in job_logs if n != "pretrain"]
    names += [p.parent.name for p in exp.glob("*/metrics.tsv")
              if p.parent.name not in names and p.parent.name != "pretrain"]
    names.sort(key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])
    if "pretrain" in job_logs or any((exp / "pretrain" / f).is_file()
                                     for f in ("train.log", "metrics.tsv")):
        names.insert(0, "pretrain")
    return names


def curves_from_metrics(path: Path, name: str, main_set: str = "valid") -> StageCurves:
    """A stage's curves from the ``metrics.tsv`` the recipe's Trainer wrote
    (:mod:`funasr_recipe.metrics`); funasr's own valid set is named
    ``main_set``. A step recorded twice keeps its last row."""
    from .metrics import MAIN_SET, read_metrics

    st = StageCurves(name=name, source=str(path), status="unknown (no job log)")
    train: dict[int, TrainPoint] = {}
    valid: dict[tuple[str, int], ValidPoint] = {}
    for r in read_metrics(path):
        if r.set == "train":
            nan = float("nan")
            train[r.step] = TrainPoint(r.step, r.epoch, nan if r.loss is None else r.loss,
                                       nan if r.loss_avg is None else r.loss_avg,
                                       nan if r.acc_avg is None else r.acc_avg,
                                       nan if r.lr is None else r.lr, r.acc)
        else:
            vset = main_set if r.set == MAIN_SET else r.set
            valid[(vset, r.epoch)] = ValidPoint(r.epoch, r.step, vset, r.loss, r.acc)
    st.train = [train[k] for k in sorted(train)]
    st.valid = sorted(valid.values(), key=lambda v: (v.set != main_set, v.set, v.epoch))
    return st


def load_stage(exp: Path, name: str, job_log: Path | None = None) -> StageCurves:
    """A stage's curves from the ``metrics.tsv`` the recipe's Trainer wrote;
    for runs older than it, from funasr's logs, else its TensorBoard events.
    The job log still gives the status, wall time and planned epochs.

    Of the job log and funasr's own ``train.log`` the one with more training
    points is used: the job log of a resumed run starts at the resumed step,
    that of a re-run that skipped the stage has none, while funasr's log
    holds every run (a step logged twice keeps its last value).
    """
    own_log = exp / name / "train.log"
    main_set = valid_set_name(exp / name)
    notes = []
    logs = [read_log(p, name, main_set) for p in (job_log, own_log) if p and p.is_file()]
    metrics = exp / name / "metrics.tsv"
    if metrics.is_file():
        st = curves_from_metrics(metrics, name, main_set)
        if st.train or st.valid:
            if logs:
                st.status, st.wall_s, st.max_epoch = (logs[0].status, logs[0].wall_s,
                                                      max(lg.max_epoch or 0 for lg in logs)
                                                      or None)
            return st
        notes.append(f"{metrics} has no rows: read the logs")
    if logs:
        best = max(logs, key=lambda st: len(st.train))       # first (job log) on ties
        if best.train:
            if best is not logs[0]:         # the job log tells whether the job ended
                notes.append(f"{job_log} has {len(logs[0].train)} training points, "
                             f"{own_log} {len(best.train)}: read the latter")
                best.status = logs[0].status
            best.notes = notes
            return best
    tb = exp / name / "tensorboard"
    if tb.is_dir():
        scalars = read_tensorboard(tb)
        if scalars is None:
            notes.append(f"{tb}: TensorBoard events not read (tensorboardX is not installed)")
        elif scalars.get("rank0_loss/train"):
            st = curves_from_tensorboard(scalars, name, str(tb))
            st.notes = notes + [f"no training lines in the logs; read {tb}"]
            return st
    st = logs[0] if logs else StageCurves(name=name)
    st.notes = notes + ["no training lines found"]
    return st


def load_experiment(exp: Path, stages: list[str] | None = None,
                    job_logs: Mapping[str, Path] | None = None) -> list[StageCurves]:
    """Every stage's curves, in training order; ``job_logs`` by stage
    (:func:`find_job_logs`)."""
    job_logs = job_logs or {}
    stages = stages or discover_stages(exp, job_logs)
    if not stages:
        raise DataError(f"no training logs under {exp} (<stage>/metrics.tsv, "
                        f"<stage>/train.log or a job log): run the training stages "
                        f"first, or pass --stages")
    return [load_stage(exp, s, job_logs.get(s)) for s in stages]


def offsets(stages: list[StageCurves]) -> list[int]:
    """Each stage's first step on the continuous axis of all stages."""
    out, total = [], 0
    for st in stages:
        out.append(total)
        total += st.last_step
    return out


# ---------------------------------------------------------------- outputs

def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def summary_text(stages: list[StageCurves]) -> str:
    """One block per stage: steps, epochs, best epoch, final losses, wall time, status."""
    out = []
    for st in stages:
        best = st.best_epoch()
        final_train = st.train[-1] if st.train else None
        lines = [f"== {st.name} ==",
                 f"  source:      {st.source}",
                 f"  status:      {st.status}",
                 f"  steps:       {st.last_step}",
                 f"  epochs:      {st.epochs_done} validated"
                 + (f" of {st.max_epoch}" if st.max_epoch else ""),
                 "  best epoch:  " + (f"{best[1]} (lowest {best[0]} valid loss)" if best else "-"),
                 f"  final train: loss {_fmt(final_train.loss_avg if final_train else None)} "
                 f"(epoch mean), acc {_fmt(final_train.acc_avg if final_train else None)}",
                 f"  wall time:   {_duration(st.wall_s)}"]
        for s in st.series():
            pts = [v for v in st.valid if v.set == s]
            last = pts[-1]
            lines.append(f"  valid {s}: epoch {last.epoch} loss {_fmt(last.loss)} "
                         f"acc {_fmt(last.acc)}; min loss "
                         f"{_fmt(min((v.loss for v in pts if v.loss is not None), default=None))}")
        lines += [f"  note: {n}" for n in st.notes]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def write_tables(stages: list[StageCurves], out: Path) -> None:
    """``train.tsv`` and ``valid.tsv``: every point, with its continuous-axis step."""
    offs = offsets(stages)
    with atomic_write(out / "train.tsv") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["stage", "step", "global_step", "epoch", "loss", "loss_avg", "acc_avg",
                    "acc", "lr"])
        for st, off in zip(stages, offs):
            for p in st.train:
                w.writerow([st.name, p.step, off + p.step, p.epoch, p.loss, p.loss_avg,
                            p.acc_avg, "" if p.acc is None else p.acc, p.lr])
    with atomic_write(out / "valid.tsv") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["stage", "set", "epoch", "step", "global_step", "loss", "acc"])
        for st, off in zip(stages, offs):
            for v in st.valid:
                w.writerow([st.name, v.set, v.epoch, v.step, off + v.step,
                            "" if v.loss is None else v.loss, "" if v.acc is None else v.acc])


def _valid_x(st: StageCurves, v: ValidPoint, off: int) -> int:
    """Where a validation is drawn: its step, or (TensorBoard, no steps) the end
    of its epoch estimated from the stage's length."""
    if v.step or not st.epochs_done:
        return off + v.step
    return off + round(st.last_step * v.epoch / max(st.epochs_done, 1))


def plot(stages: list[StageCurves], path: Path, title: str = "") -> None:
    """Train loss, accuracy, validation loss per epoch and learning rate, all
    stages on one step axis with their boundaries marked; PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offs = offsets(stages)
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    ax_loss, ax_acc, ax_val, ax_lr = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    first = True
    for st, off in zip(stages, offs):
        if not st.train:
            continue
        x = [off + p.step for p in st.train]
        ax_loss.plot(x, [p.loss for p in st.train], color=colors[0], alpha=0.3, lw=0.8,
                     label="batch loss" if first else None)
        ax_loss.plot(x, [p.loss_avg for p in st.train], color=colors[0], lw=1.6,
                     label="epoch running mean" if first else None)
        batch_acc = [(xx, p.acc) for xx, p in zip(x, st.train) if p.acc is not None]
        if batch_acc:
            ax_acc.plot(*zip(*batch_acc), color=colors[1], alpha=0.3, lw=0.8,
                        label="batch acc (train)" if first else None)
        ax_acc.plot(x, [p.acc_avg for p in st.train], color=colors[1], lw=1.6,
                    label="epoch running mean (train)" if first else None)
        ax_lr.plot(x, [p.lr for p in st.train], color=colors[2], lw=1.4)
        first = False
    sets = list(dict.fromkeys(s for st in stages for s in st.series()))
    for i, s in enumerate(sets):
        color = colors[(3 + i) % len(colors)]
        # by position, then epoch: validations of a stage without a logged step
        # share one position, and ValidPoints themselves do not order
        pts = sorted(((_valid_x(st, v, off), v) for st, off in zip(stages, offs)
                      for v in st.valid if v.set == s), key=lambda xv: (xv[0], xv[1].epoch))
        loss_pts = [(x, v.loss) for x, v in pts if v.loss is not None]
        if loss_pts:
            ax_val.plot(*zip(*loss_pts), "o-", color=color, ms=4, label=f"{s} valid loss")
        acc_pts = [(x, v.acc) for x, v in pts if v.acc is not None]
        if acc_pts:
            ax_acc.plot(*zip(*acc_pts), "s--", color=color, ms=4, lw=1,
                        label=f"{s} valid acc")
    total = offs[-1] + stages[-1].last_step if stages else 0
    for st, off in zip(stages, offs):
        for ax in axes:
            ax.axvline(off, color="0.5", ls="--", lw=0.8)
        if st.last_step:        # names inside the top panel, upright: narrow stages fit
            label = st.name + (" (incomplete)" if st.status.startswith("incomplete") else "")
            ax_loss.text(off, 0.97, " " + label, transform=ax_loss.get_xaxis_transform(),
                         rotation=90, ha="left", va="top", fontsize=9, color="0.25")
    for ax in axes:
        ax.axvline(total, color="0.5", ls="--", lw=0.8)
        ax.grid(True, alpha=0.3)
    ax_loss.set_ylabel("train loss")
    ax_acc.set_ylabel("accuracy")
    ax_val.set_ylabel("valid loss (per epoch)")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("training step, all stages on one axis (dashed: stage boundaries)")
    for ax in (ax_loss, ax_acc, ax_val):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    if any(p.loss > 0 for st in stages for p in st.train):
        ax_loss.set_yscale("log")
    fig.suptitle(title or "training curves", y=0.995)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_outputs(curves: list[StageCurves], out: Path, title: str) -> None:
    """``summary.txt``, ``train.tsv``, ``valid.tsv`` and ``curves.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "summary.txt") as f:
        f.write(summary_text(curves))
    write_tables(curves, out)
    plot(curves, out / "curves.png", title)


def write_curves(exp: Path, out: Path, stages: list[str] | None = None,
                 title: str = "") -> list[StageCurves]:
    """Everything ``local/plot_curves.py`` writes: ``curves.png``,
    ``summary.txt``, ``train.tsv``, ``valid.tsv`` under ``out``."""
    curves = load_experiment(exp, stages)
    for st in curves:
        if not st.train:
            # normal for a stage with fewer batches than log_interval: its
            # validations are still drawn
            log.info("%s: no logged training step (%s)", st.name, "; ".join(st.notes))
    write_outputs(curves, out, title or f"training curves: {exp}")
    return curves
