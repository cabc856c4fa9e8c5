#!/usr/bin/env python3
"""Build each stage's training data dir from a general and a domain pool.

Reads the stage plan (conf/stages.yaml): per stage a general:domain ratio of
audio HOURS. Every stage takes the whole domain training pool and a seeded
sample of the general pool sized to the ratio. Index only: the output data
dirs point at the same audio files. Validation sets are never mixed: use the
general and domain valid sets as they are.

Writes OUT_PREFIX<stage>_train/ for every stage and a summary table (TSV),
and prints the table.

Example:
  local/mix_stages.py --plan conf/stages.yaml --general data/general_train \\
      --domain data/domain_train --out-prefix data/ --summary data/mix_summary.tsv
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.datadir import load_datadir
from funasr_recipe.errors import DataError
from funasr_recipe.mixing import ON_SHORT, format_table, load_plan, mix_stage, write_mixes


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--plan", type=Path, default=Path("conf/stages.yaml"), help="stage plan")
    ap.add_argument("--general", type=Path, help="general training data dir (required)")
    ap.add_argument("--domain", type=Path, help="domain training data dir (required)")
    ap.add_argument("--list-stages", action="store_true",
                    help="only check the plan and print its stage names (one line)")
    ap.add_argument("--out-prefix", default="data/", help="stage dirs are PREFIX<stage>_train")
    ap.add_argument("--summary", type=Path, default=None,
                    help="summary TSV (default: PREFIXmix_summary.tsv)")
    ap.add_argument("--seed", type=int, default=None, help="override the plan's seed")
    ap.add_argument("--on-short-general", choices=ON_SHORT, default=None,
                    help="override the plan's on_short_general")
    return ap


def body(args) -> int:
    plan = load_plan(args.plan)
    if args.list_stages:
        print(" ".join(s.name for s in plan.stages))
        return 0
    if args.general is None or args.domain is None:
        raise DataError("--general and --domain (the training data dirs) are required")
    seed = plan.seed if args.seed is None else args.seed
    on_short = args.on_short_general or plan.on_short_general
    general = load_datadir(args.general)
    domain = load_datadir(args.domain)
    results = [mix_stage(st, general, domain, seed, on_short) for st in plan.stages]
    summary = args.summary or Path(f"{args.out_prefix}mix_summary.tsv")
    write_mixes(results, args.out_prefix, summary)
    print(format_table(results))
    print(f"(written to {summary})")
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
