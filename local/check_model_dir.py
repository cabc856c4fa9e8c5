#!/usr/bin/env python3
"""Check that --model-dir is a complete local model dir of --family (no hub is used).

Exits 0 and prints the absolute path, or exits 1 with an ERROR: line that
says what is missing and how to get the model.

Example:
  local/check_model_dir.py --family paraformer --model-dir models/paraformer-large
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.modeldir import FAMILIES, check_model_dir


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--family", choices=sorted(FAMILIES), required=True, help="model family")
    ap.add_argument("--model-dir", type=Path, required=True, help="the local model dir")
    return ap


def body(args) -> int:
    print(check_model_dir(args.model_dir, args.family))
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
