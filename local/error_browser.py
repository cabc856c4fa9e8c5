#!/usr/bin/env python3
"""Write a static HTML page to browse the errors of one decoded test set.

The page is one self-contained file (no server, no network: style and script
inline). Each utterance shows its reference and hypothesis aligned, with
substitutions, deletions and insertions coloured, its error counts (the same
as local/score.py's with the same --norm), its term errors with --terms, and
an audio player. Rows sort and filter in the page by error count, error type,
term errors and text. With two --hyp, both systems are side by side and the
utterances that got better or worse come first.

Audio: --audio link (default) links each wav relative to the page (keep the
page beside the experiment, or copy both); --audio embed puts the audio into
the page (base64; for small sets, up to --embed-max-mb); --audio none.

Example:
  local/error_browser.py --data data/domain_test \\
      --hyp base=exp/paraformer/decode_base_default/domain_test/text \\
      --hyp stage3=exp/paraformer/decode_stage3_default/domain_test/text \\
      --terms downloads/mini_corpus/domain_terms.txt \\
      --out exp/paraformer/error_browser/domain_test.html
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.error_browser import AUDIO_MODES, read_wavs, write_browser
from funasr_recipe.errors import DataError
from funasr_recipe.tables import read_table
from funasr_recipe.normalize import LEVELS, make_scoring_normalizer
from funasr_recipe.stats import read_terms

log = logging.getLogger("error_browser")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--data", type=Path, default=None,
                    help="the test set's data dir (its text is the reference, its wav.scp "
                         "the audio)")
    ap.add_argument("--ref", type=Path, default=None,
                    help="reference text file instead of DATA/text")
    ap.add_argument("--wav-scp", type=Path, default=None,
                    help="wav.scp instead of DATA/wav.scp (none: no audio players)")
    ap.add_argument("--hyp", action="append", required=True, metavar="NAME=TEXT",
                    help="a system's hypotheses (key text), once or twice; NAME labels it")
    ap.add_argument("--terms", default=None,
                    help="term list (one term a line): term errors per utterance; 'none': "
                         "no term list")
    ap.add_argument("--norm", choices=LEVELS, default="full",
                    help="normalisation of both sides before aligning, as local/score.py")
    ap.add_argument("--audio", choices=AUDIO_MODES, default="link",
                    help="audio players: relative links to the wavs, the audio embedded in "
                         "the page, or none")
    ap.add_argument("--embed-max-mb", type=float, default=20.0,
                    help="with --audio embed: refuse to embed more audio than this")
    ap.add_argument("--name", default=None, help="set name in the title (default: the page's "
                                                 "file name)")
    ap.add_argument("--out", type=Path, required=True, help="the HTML page to write")
    return ap


def _hyp(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise DataError(f"--hyp '{spec}': give NAME=PATH, e.g. "
                        f"stage3=exp/paraformer/decode_stage3_default/domain_test/text")
    return name, Path(path)


def _read(path: Path, what: str, allow_empty: bool = False) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist or is not a file")
    return read_table(path, allow_empty_value=allow_empty)


def body(args) -> int:
    if args.data is None and args.ref is None:
        raise DataError("give --data DIR (a test set's data dir) or --ref TEXT")
    ref = args.ref or args.data / "text"
    refs = _read(ref, "reference")
    wav_scp = args.wav_scp or (args.data / "wav.scp" if args.data is not None else None)
    wavs = read_wavs(wav_scp) if wav_scp is not None and str(wav_scp) != "none" else {}
    hyps = []
    for spec in args.hyp:
        name, path = _hyp(spec)
        hyps.append((name, _read(path, f"hypotheses of {name}:", allow_empty=True)))
    terms = None
    if args.terms and args.terms.lower() != "none":
        terms = read_terms(args.terms)
    normalizer = make_scoring_normalizer(args.norm)
    systems = write_browser(args.out, refs, hyps, wavs, normalizer, args.audio, terms,
                            args.name, args.embed_max_mb,
                            source=f"reference {ref}; " + "; ".join(args.hyp))
    for s in systems:
        log.info("%s: %s", s.name, s.result.summary().splitlines()[0])
    log.info("wrote %s (%d utterances)", args.out, systems[0].result.n_sentences)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
