#!/usr/bin/env python3
"""The parity table of stage 8: each engine's decode against the recipe's PyTorch decode.

Reads EXPORT/decode_<engine>_<precision>/<set>/{text,run.json} (from
local/engine_decode.py), the PyTorch decode REFERENCE/<set>/text of the same
model and the transcripts DATA/<set>/text; writes EXPORT/parity.tsv and the
table into RESULTS (replacing an earlier one). Thresholds from --conf
(parity: fp32 identical %, fp32 and int8 error differences). With --strict it
exits 1 when an fp32 row fails them (int8 is reported either way; the table is
written first).

Example:
  local/export_parity.py --conf conf/export.yaml --family paraformer \\
      --export exp/paraformer/export --reference exp/paraformer/decode_stage3_default \\
      --data data --sets general_test,domain_test --results exp/paraformer/RESULTS.md
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.config import load_yaml
from funasr_recipe.export_plan import engine_runs
from funasr_recipe.errors import RunError
from funasr_recipe.parity import (Thresholds, collect, judge, markdown, update_results,
                                  write_tsv)

log = logging.getLogger("export_parity")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--conf", type=Path, default=Path("conf/export.yaml"), help="export settings")
    ap.add_argument("--family", choices=("paraformer", "nano"), required=True, help="model family")
    ap.add_argument("--export", type=Path, required=True, help="the stage's export dir")
    ap.add_argument("--reference", type=Path, required=True,
                    help="PyTorch decode dir of the exported model (holds <set>/text)")
    ap.add_argument("--data", type=Path, required=True, help="data dirs (holds <set>/text)")
    ap.add_argument("--sets", required=True, help="comma-separated test sets")
    ap.add_argument("--results", type=Path, default=None, help="RESULTS.md to put the table in")
    ap.add_argument("--model-name", default="final_model", help="what the table calls the model")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a row fails")
    return ap


def body(args) -> int:
    conf = load_yaml(args.conf)
    th = Thresholds.from_conf(conf, str(args.conf))
    runs = engine_runs(conf, args.family, str(args.conf))
    sets = [s for s in args.sets.split(",") if s]
    rows = judge(collect(args.export, args.reference, args.data, sets, runs,
                         str(conf.get("parity", {}).get("norm", "full"))), th)
    write_tsv(args.export / "parity.tsv", rows)
    md = markdown(rows, th, args.model_name, str(args.reference))
    if args.results:
        update_results(args.results, md)
    print(md)
    # int8 is reported either way (issue 18); --strict holds the fp32 exports to parity
    failed = [r for r in rows if r.verdict.startswith("FAIL") and r.precision == "fp32"]
    for r in rows:
        if r.verdict.startswith("not exported"):
            log.warning("parity: %s %s %s: %s (no parity claimed)", r.set, r.engine, r.precision,
                        r.verdict)
    for r in rows:
        if r.verdict.startswith("FAIL"):
            log.warning("parity: %s %s %s: %s", r.set, r.engine, r.precision, r.verdict)
    if failed and args.strict:
        raise RunError(f"{len(failed)} of {len(rows)} export decodes fail the parity thresholds "
                       f"of {args.conf} (see {args.export / 'parity.tsv'})")
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
