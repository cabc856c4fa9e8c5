#!/usr/bin/env python3
"""Check a Kaldi-style data directory as Kaldi's validate_data_dir.sh --no-feats does.

The rules are funasr_recipe.datadir_rules' (the ones every tool applies when
it reads or writes a data dir); utils/validate_data_dir.sh calls this tool.
Several dirs are checked in one process (run.sh: a pool's four). Prints
"Successfully validated data-directory DIR" for each, or the first problem
(file, line, key and what to do) and exits 1.

Example:
  local/validate_data_dir.py --no-feats data/domain_all data/domain_train
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.datadir_rules import validate_datadir


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--no-feats", action="store_true",
                    help="accepted for Kaldi compatibility (feats.scp is never checked)")
    ap.add_argument("--no-text", action="store_true",
                    help="do not require a text file (it is still checked if present)")
    ap.add_argument("--no-spk-sort", action="store_true",
                    help="do not require utt2spk to be sorted by speaker as well")
    ap.add_argument("data_dirs", type=Path, nargs="+", metavar="DATA_DIR",
                    help="the data directories")
    return ap


def body(args) -> int:
    for d in args.data_dirs:
        validate_datadir(d, require_text=not args.no_text, spk_sort=not args.no_spk_sort)
        print(f"validate_data_dir: Successfully validated data-directory {d}")
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
