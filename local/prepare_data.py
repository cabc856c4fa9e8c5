#!/usr/bin/env python3
"""Make a Kaldi-style data dir from a folder of audio + same-named .txt transcripts,
a json/jsonl/csv/tsv/xlsx list of (path, transcript), or a wav.scp + text.

Writes OUT/{wav.scp,text,utt2spk,spk2utt,utt2dur} (sorted, validated, written
atomically) and OUT/dropped.tsv listing every item left out with --skip-bad.

Examples:
  local/prepare_data.py --in /data/my_domain --out data/domain_all
  local/prepare_data.py --in sheet.xlsx --out data/domain_all --resample --skip-bad
  local/prepare_data.py --in old/wav.scp --text old/text --out data/x
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.datadir import Dropped, build_utts, iter_summary, read_input, write_datadir

log = logging.getLogger("prepare_data")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--in", dest="src", required=True, type=Path,
                    help="folder (searched recursively; speaker = parent folder), "
                         ".jsonl/.json/.csv/.tsv/.xlsx list, or wav.scp (with --text)")
    ap.add_argument("--text", type=Path, default=None, help="Kaldi text file, with a wav.scp --in")
    ap.add_argument("--utt2spk", type=Path, default=None, help="optional utt2spk, with a wav.scp --in")
    ap.add_argument("--out", required=True, type=Path, help="output data dir")
    ap.add_argument("--skip-bad", action="store_true",
                    help="leave bad items out (listed with reasons in OUT/dropped.tsv) instead "
                         "of stopping at the first one")
    ap.add_argument("--resample", action="store_true",
                    help="convert audio that is not 16 kHz mono into OUT/wav/KEY.wav instead of "
                         "rejecting it")
    ap.add_argument("--spk-prefix", default="",
                    help="prefix for speaker ids (and so keys), to keep two pools' keys apart")
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    return ap


def body(args) -> int:
    items = read_input(args.src, args.text, args.utt2spk)
    dropped = Dropped()
    try:
        utts = build_utts(items, args.out, skip_bad=args.skip_bad, resample=args.resample,
                          spk_prefix=args.spk_prefix, dropped=dropped)
    finally:
        if dropped.rows:
            args.out.mkdir(parents=True, exist_ok=True)
            dropped.write(args.out / "dropped.tsv")
    if not dropped.rows and (args.out / "dropped.tsv").exists():
        (args.out / "dropped.tsv").unlink()  # from an earlier run; nothing was dropped now
    write_datadir(args.out, utts)
    for line in iter_summary(str(args.out), utts):
        log.info(line)
    if dropped.rows:
        log.warning("%d of %d items dropped; reasons in %s", len(dropped.rows), len(items),
                    args.out / "dropped.tsv")
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
