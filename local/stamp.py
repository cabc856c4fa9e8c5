#!/usr/bin/env python3
"""Is a step's output complete for the same inputs and options? (run.sh's skip test)

'check' exits 0 when OUT exists, every --outputs path exists and OUT's stamp
records the same fingerprint of --inputs and --opts as now; otherwise it
prints why the step must be redone (what changed) and exits 1. 'mark' records
the fingerprint after the step has written OUT. Inputs are fingerprinted by
content (text, lists, configs, checkpoints: sha256), audio files by size and
time, directories file by file; 'audio-of:WAV_SCP' stands for the audio files
a wav.scp names. See funasr_recipe/stamp.py.

Example:
  local/stamp.py check --out data/domain_all --inputs /data/domain \\
      --opts ratios=8:1:1 seed=0 || { ...redo...; local/stamp.py mark ...; }
"""

from __future__ import annotations

import sys
from pathlib import Path

from funasr_recipe import cli, stamp


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("action", choices=("check", "mark"), help="check or mark")
    ap.add_argument("--out", type=Path, required=True, help="the step's output (file or dir)")
    ap.add_argument("--inputs", nargs="*", default=[], metavar="PATH",
                    help="files, dirs or audio-of:WAV_SCP the output is made from")
    ap.add_argument("--opts", nargs="*", default=[], metavar="STR",
                    help="the options the output depends on (compared as given)")
    ap.add_argument("--outputs", nargs="*", default=[], metavar="PATH",
                    help="check: further outputs that must exist")
    ap.add_argument("--clear", action="store_true",
                    help="check: when the output is not complete, remove its stale stamp (the "
                         "step is about to be redone, and must not look complete if it fails)")
    ap.add_argument("--quiet", action="store_true", help="check: print nothing")
    return ap


def body(args) -> int:
    if args.action == "mark":
        stamp.mark(args.out, args.inputs, args.opts)
        return 0
    why = stamp.check(args.out, args.inputs, args.opts, args.outputs)
    if why and args.clear:
        stamp.clear(args.out)
    if why and not args.quiet and args.out.exists():  # (a first run needs no reason)
        print(f"{args.out}: redo: " + "; ".join(why[:3])
              + (f"; and {len(why) - 3} more" if len(why) > 3 else ""))
    return 1 if why else 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
