#!/usr/bin/env python3
"""Check that the stage plan and the train config agree; print the plan's stage names.

Every stage of --plan needs its section under 'stages:' in --train-conf, and
without a base model (--pretrain) the config needs a 'pretrain' section. A
disagreement stops the run at once, naming the file and the missing sections,
instead of at the fine-tuning stage after hours of data preparation; so does a
--set SECTION:KEY=VALUE (run.sh --train-args) whose SECTION is none of the
config's. Prints
the stage names, space-separated, for run.sh.

Example:
  local/check_plan.py --plan conf/stages.yaml --train-conf conf/paraformer/train.yaml --pretrain \
      --set stage3:optim_conf.lr=0.0001
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.training import check_plan


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--plan", type=Path, required=True, help="stage plan (conf/stages.yaml)")
    ap.add_argument("--train-conf", type=Path, required=True, help="the family's train config")
    ap.add_argument("--pretrain", action="store_true",
                    help="the run pre-trains its own base model (no --base-model)")
    ap.add_argument("--set", action="append", default=[], metavar="[SECTION:]KEY=VALUE",
                    help="the run's --train-args items: a SECTION must be one of the config's")
    return ap


def body(args) -> int:
    print(" ".join(check_plan(args.plan, args.train_conf, args.pretrain, args.set)))
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
