#!/usr/bin/env python3
"""Synthesise the recipe's mini corpus offline (espeak-ng), deterministic for a seed.

Writes the layout a user's own data has:

  OUT/general/<spk>/<spk>_g000123.wav + .txt   everyday sentences
  OUT/domain/<spk>/<spk>_d000045.wav + .txt    medical sentences
  OUT/domain_terms.txt                          the domain terms, one a line
  OUT/heldout_speakers.txt                      speakers to keep out of training
  OUT/vocabulary.txt                            every token the grammars can produce
  OUT/manifest.json                             config, counts, hours per pool

wav files are 16 kHz mono 16-bit PCM; each .txt holds the transcript on one
line. Running it again with the same config, seed and counts does nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from funasr_recipe import cli
from funasr_recipe.corpus import POOLS, build_corpus, load_config, summary_line

logger = logging.getLogger("make_corpus")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--config", default="conf/corpus.yaml",
                        help="corpus config (YAML): seed, sizes, voices, held-out voices, rate "
                             "and pitch ranges")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=None,
                        help="override the config's seed (default: the config's)")
    parser.add_argument("--num-general", type=int, default=None,
                        help="override the config's num_general (default: the config's)")
    parser.add_argument("--num-domain", type=int, default=None,
                        help="override the config's num_domain (default: the config's)")
    parser.add_argument("--nj", type=int, default=1, help="parallel synthesis processes")
    return parser


def body(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, {"seed": args.seed, "num_general": args.num_general,
                                    "num_domain": args.num_domain})
    start = time.perf_counter()
    manifest, skipped = build_corpus(cfg, args.out, nj=args.nj)
    if skipped:
        logger.info("%s already holds this corpus (same config, seed and counts): nothing to do",
                    args.out)
    else:
        logger.info("wrote %s in %.1f s", args.out, time.perf_counter() - start)
    for pool in POOLS:
        print(summary_line(pool, manifest["pools"][pool]))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
