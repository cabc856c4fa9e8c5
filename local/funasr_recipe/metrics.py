"""``OUT/metrics.tsv``: a stage's training metrics as the recipe's Trainer sees them.

One row per logged training step (funasr logs every ``log_interval``
batches; the same steps are recorded, with the same numbers) and one per
validation of each valid set, the main one (funasr's own, which ranks and
averages checkpoints) as ``valid`` and each extra set under its name
(``general``). Columns:

``step``       funasr's total step in the stage (``batch_total``) when the row was made
``epoch``      1-based, as checkpoints are named (``model.pt.ep3`` validates epoch 3);
               0 for the pass before the first epoch (the stage's starting point)
``set``        ``train``, ``valid`` or an extra valid set's name
``loss``       train: the logged batch's loss; valid: the set's weighted mean loss
``acc``        the same for accuracy (empty when the model reports none)
``loss_avg``, ``acc_avg``  train only: the epoch's running means funasr logs
``lr``         train only: the learning rate after the step
``checkpoint`` valid only: the checkpoint the validation belongs to (``model.pt.ep3``)

Rows are appended and flushed one at a time, so a crash loses at most the row
being written. funasr resumes from the last checkpoint: rows after it (the
interrupted epoch's) are dropped at resume (:meth:`MetricsFile.keep_until`),
so a resumed run continues the file without duplicates. In a DDP job rank 0
writes ``metrics.tsv`` and rank R ``metrics.rankR.tsv`` (its own training
losses; the valid rows are reduced over all ranks and so equal rank 0's).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write

COLUMNS = ("step", "epoch", "set", "loss", "acc", "loss_avg", "acc_avg", "lr", "checkpoint")
HEADER = "\t".join(COLUMNS) + "\n"
MAIN_SET = "valid"


def metrics_path(out: str | Path, rank: int = 0) -> Path:
    return Path(out) / ("metrics.tsv" if rank == 0 else f"metrics.rank{rank}.tsv")


@dataclass
class Row:
    step: int
    epoch: int
    set: str
    loss: float | None = None
    acc: float | None = None
    loss_avg: float | None = None
    acc_avg: float | None = None
    lr: float | None = None
    checkpoint: str = ""

    def line(self) -> str:
        def num(x: float | None, spec: str = ".6f") -> str:
            return "" if x is None else format(float(x), spec)
        return "\t".join([str(self.step), str(self.epoch), self.set, num(self.loss),
                          num(self.acc), num(self.loss_avg), num(self.acc_avg),
                          num(self.lr, ".6e"), self.checkpoint]) + "\n"


def _num(s: str) -> float | None:
    if s == "":
        return None
    try:
        return float(s)
    except ValueError:
        return None


def parse_row(line: str) -> Row | None:
    """A row of the file, or None for the header and a line cut off by a crash."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) != len(COLUMNS) or parts[0] == "step":
        return None
    try:
        step, epoch = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return Row(step, epoch, parts[2], *(_num(p) for p in parts[3:8]), parts[8])


def read_metrics(path: str | Path) -> list[Row]:
    """Every complete row of a metrics.tsv (a torn last line is skipped)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    return [r for r in map(parse_row, lines) if r is not None]


class MetricsFile:
    """The metrics file of one rank of one run, appended row by row."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def keep_until(self, step: int) -> int:
        """Drop the rows made after total step ``step`` (those of an epoch that
        was interrupted before its checkpoint; all rows when ``step`` is 0 and
        nothing was validated before training). Returns how many were dropped."""
        if not self.path.is_file():
            return 0
        rows = read_metrics(self.path)
        # a fresh start (step 0) redoes the pass before training too
        keep = [r for r in rows if r.step <= step] if step > 0 else []
        with atomic_write(self.path) as f:
            f.write(HEADER)
            f.writelines(r.line() for r in keep)
        return len(rows) - len(keep)

    def append(self, row: Row) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", encoding="utf-8") as f:
            if new:
                f.write(HEADER)
            f.write(row.line())
            f.flush()
            os.fsync(f.fileno())


def finite(x: Any) -> float | None:
    """``x`` as a float, None when it is missing or not finite."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


__all__ = ["COLUMNS", "HEADER", "MAIN_SET", "metrics_path", "Row", "parse_row", "read_metrics",
           "MetricsFile", "finite"]
