#!/usr/bin/env python3
"""Plot the training curves of every stage of an experiment, headless.

Reads each stage's EXP/<stage>/metrics.tsv, written by the recipe's trainer;
for older runs without one, funasr's training logs (the job logs run.sh keeps,
EXP/logs/pretrain.log and EXP/logs/train_<stage>.log, which also give each
stage's status and wall time; else EXP/<stage>/train.log; else TensorBoard
events in EXP/<stage>/tensorboard). Writes, under --out:

  curves.png   train loss and accuracy per step, validation loss (and
               accuracy) per epoch of each valid set (domain, general),
               learning rate; all stages on one step axis, boundaries dashed
  summary.txt  per stage: steps, epochs, best epoch, final losses, wall time
  train.tsv, valid.tsv   the points, to plot them your own way

A log still being written or cut off is read as far as it goes. Run it any
time, e.g. while a stage trains. A stage with no logged step (fewer batches
than log_interval) is drawn from its validations. Failing to write the
outputs is a WARNING and exit status 0: the curves never stop a recipe.

Example:
  local/plot_curves.py --exp exp/paraformer            # -> exp/paraformer/curves/
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.curves import find_job_logs, load_experiment, summary_text, write_outputs


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--exp", type=Path, required=True, help="the model family's experiment dir")
    ap.add_argument("--out", type=Path, default=None, help="output dir (default: EXP/curves)")
    ap.add_argument("--stages", default=None,
                    help="comma-separated stages in training order (default: pretrain, if "
                         "logged, then every stage with a job log or an EXP/<stage>/"
                         "metrics.tsv, in natural order)")
    ap.add_argument("--job-logs", default="logs/train_{stage}.log",
                    help="the stages' job logs, relative to EXP, {stage} the stage's name "
                         "(default: run.sh's, %(default)s)")
    ap.add_argument("--pretrain-log", default="logs/pretrain.log",
                    help="the base-model pretraining's job log, relative to EXP (default: "
                         "run.sh's, %(default)s)")
    ap.add_argument("--title", default="", help="plot title (default: the experiment dir)")
    return ap


def body(args) -> int:
    out = args.out or args.exp / "curves"
    stages = [s for s in args.stages.split(",") if s] if args.stages else None
    job_logs = find_job_logs(args.exp, args.job_logs, args.pretrain_log)
    curves = load_experiment(args.exp, stages, job_logs)  # no logs at all: ERROR, exit 1
    print(summary_text(curves), end="")
    try:
        write_outputs(curves, out, args.title or f"training curves: {args.exp}")
    except Exception as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        logging.warning("curves not written to %s (%s); training results are unaffected, "
                        "the recipe goes on", out, reason)
        return 0
    print(f"wrote {out}/curves.png, summary.txt, train.tsv, valid.tsv")
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
