#!/usr/bin/env python3
"""Make a Kaldi-style data dir from a folder of audio + same-named .txt transcripts,
a json/jsonl/csv/tsv/xlsx list of (path, transcript), or a wav.scp + text.

Writes OUT/{wav.scp,text,utt2spk,spk2utt,utt2dur,utt2num_samples} (sorted,
validated, written atomically), OUT/dropped.tsv listing every item left out with --skip-bad, and
OUT/ignored.tsv listing the files of a folder that are neither audio nor
transcripts. Every file of the input is accounted for in one of the three.

Encoding artefacts are removed, not refused: a leading byte-order mark and
CRLF line ends in transcripts, lists and Kaldi files (Windows editors, Excel's
"CSV UTF-8", Python's csv module); the output is clean LF UTF-8. Text in
another encoding is refused unless named with --encoding.

Every audio file's header is read once (sample rate, channels, exact length),
over --nj processes; plain PCM WAV headers are read directly, anything else
with soundfile. The exact sample counts go to OUT/utt2num_samples, so no later
stage opens the audio again.

With a wav.scp input, --utt2dur FILE (the Kaldi utt2dur of the same keys)
takes the durations from it instead, and no audio file is opened (each is
only looked up: a missing or empty file is still a bad item). The price:
sample rate and channels are not checked (funasr resamples and downmixes when
it loads, at training time), and utt2num_samples holds round(seconds x 16000),
so funasr's source_len (10-ms units) can differ by one from what scp2jsonl
computes from the header. Use it when opening every file costs more than that
(millions of files, a network file system); a key without a positive duration
in FILE is a bad item (--skip-bad lists it in dropped.tsv).

Printed at the end (also in the job's log), for run.sh to show:
  dropped N of M items; reasons in OUT/dropped.tsv     (with --skip-bad)
  ignored N files (neither audio nor transcripts); list in OUT/ignored.tsv
  normalised N files (byte-order mark or CRLF line ends removed)

Examples:
  local/prepare_data.py --in /data/my_domain --out data/domain_all
  local/prepare_data.py --in sheet.xlsx --out data/domain_all --resample --skip-bad
  local/prepare_data.py --in old/wav.scp --text old/text --out data/general_all --nj 4
  local/prepare_data.py --in old/wav.scp --text old/text --utt2dur old/utt2dur --out data/general_all
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.datadir import (Dropped, build_utts, iter_summary, read_input, write_datadir,
                                  write_tsv)
from funasr_recipe.errors import DataError
from funasr_recipe.textfile import take_normalised

log = logging.getLogger("prepare_data")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--in", dest="src", required=True, type=Path,
                    help="folder (searched recursively; speaker = parent folder), "
                         ".jsonl/.json/.csv/.tsv/.xlsx list, or wav.scp (with --text)")
    ap.add_argument("--text", type=Path, default=None, help="Kaldi text file, with a wav.scp --in")
    ap.add_argument("--utt2spk", type=Path, default=None, help="optional utt2spk, with a wav.scp --in")
    ap.add_argument("--utt2dur", type=Path, default=None,
                    help="with a wav.scp --in: take the durations from this Kaldi utt2dur "
                         "instead of reading every audio header (see above)")
    ap.add_argument("--out", required=True, type=Path, help="output data dir")
    ap.add_argument("--skip-bad", action="store_true",
                    help="leave bad items out (listed with reasons in OUT/dropped.tsv) instead "
                         "of stopping at the first one")
    ap.add_argument("--resample", action="store_true",
                    help="convert audio that is not 16 kHz mono into OUT/wav/KEY.wav instead of "
                         "rejecting it")
    ap.add_argument("--encoding", default="utf-8",
                    help="encoding of the transcripts, lists and Kaldi text (e.g. gbk, "
                         "gb18030); the data dir is always written as UTF-8")
    ap.add_argument("--spk-prefix", default="",
                    help="prefix for speaker ids (and so keys), to keep two pools' keys apart")
    ap.add_argument("--nj", type=int, default=1,
                    help="processes reading audio headers (the output does not depend on it)")
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    return ap


def body(args) -> int:
    take_normalised()
    if args.utt2dur is not None and args.resample:  # before reading anything
        raise DataError("--resample reads every file and --utt2dur opens none: use one of them")
    inputs = read_input(args.src, args.text, args.utt2spk, args.encoding, args.utt2dur)
    items = inputs.items
    dropped = Dropped()
    out = args.out
    try:
        utts = build_utts(items, out, skip_bad=args.skip_bad, resample=args.resample,
                          spk_prefix=args.spk_prefix, dropped=dropped, encoding=args.encoding,
                          nj=args.nj)
    finally:
        if dropped.rows:
            dropped.write(out / "dropped.tsv")
        if inputs.ignored:
            write_tsv(out / "ignored.tsv", ("file", "why"), inputs.ignored)
    # lists from an earlier run, when nothing was dropped or ignored now
    for name, rows in (("dropped.tsv", dropped.rows), ("ignored.tsv", inputs.ignored)):
        if not rows and (out / name).exists():
            (out / name).unlink()
    write_datadir(out, utts)
    for line in iter_summary(str(out), utts):
        log.info(line)
    for path, why in inputs.ignored:
        log.info("ignored: %s (%s)", path, why)
    normalised = take_normalised()
    for path, what in sorted(normalised.items()):
        log.debug("normalised: %s (%s removed)", path, " and ".join(sorted(what)))
    # One plain line each, for run.sh to show (see the module doc).
    if dropped.rows:
        print(f"dropped {len(dropped.rows)} of {len(items)} items; reasons in "
              f"{out / 'dropped.tsv'}", flush=True)
    if inputs.ignored:
        print(f"ignored {len(inputs.ignored)} files (neither audio nor transcripts); list in "
              f"{out / 'ignored.tsv'}", flush=True)
    if args.utt2dur is not None:
        print(f"durations of {len(utts)} utterances from {args.utt2dur} (audio not opened: "
              f"sample rate and channels not checked)", flush=True)
    if normalised:
        kinds = sorted({w for what in normalised.values() for w in what})
        print(f"normalised {len(normalised)} files ({' and '.join(kinds)} removed; the data "
              f"dir is clean LF UTF-8)", flush=True)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
