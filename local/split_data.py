#!/usr/bin/env python3
"""Split a data dir into train/valid/test data dirs by ratio (default 8:1:1).

Deterministic for a given --seed. Speakers listed in --heldout-spk never go
into the first (training) part, so the test sets measure generalisation to
unseen speakers rather than memorisation.

Example:
  local/split_data.py --src data/domain_all --out-prefix data/domain --ratios 8:1:1
  -> data/domain_train data/domain_valid data/domain_test
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.datadir import (iter_summary, load_datadir, read_id_list, split_keys,
                                   subset_datadir)
from funasr_recipe.errors import DataError

log = logging.getLogger("split_data")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--src", required=True, type=Path, help="data dir to split")
    ap.add_argument("--out-prefix", required=True,
                    help="output dirs are PREFIX_NAME for each name in --names")
    ap.add_argument("--ratios", default="8:1:1", help="ratios, colon separated")
    ap.add_argument("--names", default="train,valid,test", help="part names, comma separated")
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed")
    ap.add_argument("--heldout-spk", type=Path, default=None,
                    help="file of speaker ids (one a line) kept out of the first part")
    return ap


def body(args) -> int:
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    try:
        ratios = [float(r) for r in args.ratios.split(":")]
    except ValueError:
        raise DataError(f"--ratios '{args.ratios}': expected numbers like 8:1:1") from None
    if len(ratios) != len(names):
        raise DataError(f"--ratios has {len(ratios)} parts but --names has {len(names)}")
    utts = load_datadir(args.src)
    heldout = read_id_list(args.heldout_spk)
    unknown = heldout - {u.spk for u in utts}
    if unknown:
        log.warning("held-out speakers not in %s: %s", args.src, " ".join(sorted(unknown)))
    parts = split_keys(utts, ratios, args.seed, heldout)
    for name, keys in zip(names, parts):
        out = Path(f"{args.out_prefix}_{name}")
        sub = subset_datadir(utts, keys, out)
        for line in iter_summary(str(out), sub):
            log.info(line)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
