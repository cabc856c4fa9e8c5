#!/usr/bin/env python3
"""Print the engine runs of stage 8 for a model family, one 'engine:precision' a line.

Reads the family's section of the export config (conf/export.yaml) and checks
every engine and precision it names; run.sh loops over the lines. With
--artefacts, prints instead the extra layouts stage 8 writes (e.g. vllm), one a line.

Example:
  local/export_runs.py --conf conf/export.yaml --family paraformer
  -> pytorch:fp32, funasr-onnx:fp32, funasr-onnx:int8, ...
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.config import load_yaml
from funasr_recipe.export_plan import artefacts, engine_runs


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--conf", type=Path, required=True, help="export config (conf/export.yaml)")
    ap.add_argument("--family", required=True, help="model family: paraformer or nano")
    ap.add_argument("--artefacts", action="store_true",
                    help="print the family's extra layouts (artefacts:) instead of engine runs")
    return ap


def body(args) -> int:
    conf = load_yaml(args.conf)
    if args.artefacts:
        for name in artefacts(conf, args.family, str(args.conf)):
            print(name)
        return 0
    for engine, precision in engine_runs(conf, args.family, str(args.conf)):
        print(f"{engine}:{precision}")
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
