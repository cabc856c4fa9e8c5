#!/usr/bin/env python3
"""Do two model dirs hold the same model? Exit 0 when they hold the same files
with the same content (the recipe's export.json, hidden stamps and a LoRA
stage's peft_adapter/ and peft_base_llm/ aside: nothing a decode reads), 1 when
they differ, 2 when one is not a directory. run.sh's stage 6 asks it of each
model and the one before it: a stage that passed its input on (its forgetting
budget kept its start, conf/stages.yaml on_over_budget: start) is the same
model, and its hypotheses are copied instead of decoded again.

Example:
  local/same_model.py exp/nano/stage2/model exp/nano/stage3/model && echo same
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.modeldir import same_model


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser(__doc__)
    ap.add_argument("a", type=Path, help="a model dir")
    ap.add_argument("b", type=Path, help="another model dir")
    return ap


def body(args) -> int:
    from funasr_recipe.errors import DataError

    try:
        return 0 if same_model(args.a, args.b) else 1
    except DataError as e:          # 1 means "they differ": an error is 2
        print(f"ERROR: {e}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
