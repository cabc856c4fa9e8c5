#!/usr/bin/env python3
"""Decode data dirs through a serving engine; write OUT/text and OUT/run.json (timing).

Engines: funasr-onnx and sherpa-onnx (MODEL: an ONNX export dir from
local/export_onnx.py; --precision fp32 or int8), transformers (MODEL: a
Hugging Face Fun-ASR-Nano dir from local/export_hf.py) and pytorch (MODEL: the
funasr model dir; the recipe's own decode, for its RTF). Utterances go in
duration-sorted batches of --batch-size; OUT/text holds 'key text' lines in
the recipe's text form, OUT/run.json the decoding time (model loading
excluded), audio time, threads and RTF. local/export_parity.py compares them
with the recipe's PyTorch decode. Several sets share one model load: repeat
--data-dir and --out in pairs (each set is timed on its own).

Example:
  local/engine_decode.py --engine sherpa-onnx --precision int8 \\
      --model exp/paraformer/export/onnx --data-dir data/domain_test \\
      --out exp/paraformer/export/decode_sherpa-onnx_int8/domain_test
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.config import load_yaml
from funasr_recipe.datadir import load_datadir
from funasr_recipe.decoding import Item, decode_settings, item_budgets, read_hotwords
from funasr_recipe.errors import DataError
from funasr_recipe.engines import ENGINES, PRECISIONS, export_refused, run_engine_sets
from funasr_recipe.parity import write_run

log = logging.getLogger("engine_decode")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--engine", choices=sorted(ENGINES), required=True, help="serving engine")
    ap.add_argument("--model", type=Path, required=True, help="export dir (or model dir)")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32", help="weights")
    cli.add_set_options(ap)
    ap.add_argument("--conf", type=Path, default=None,
                    help="export settings (conf/export.yaml): batch_size and threads")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="utterances per engine call [conf's batch_size or 8]")
    ap.add_argument("--threads", type=int, default=None,
                    help="engine threads [conf's threads or 1]")
    ap.add_argument("--hotwords", default=None,
                    help="transformers (Nano): hotwords in the prompt, comma-separated or a "
                         "file, as the reference decode had them [none]")
    ap.add_argument("--language", default=None,
                    help="transformers (Nano): prompt language [the export's trained prompt]")
    ap.add_argument("--itn", choices=["true", "false"], default=None,
                    help="transformers (Nano): prompt ITN [the export's trained prompt]")
    ap.add_argument("--decode-conf", type=Path, default=None,
                    help="transformers (Nano): the reference decode's settings "
                         "(conf/nano/decode.yaml): each utterance gets the token budget it "
                         "had there [funasr's 512 tokens]")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an override of --decode-conf, as the reference decode had it")
    return ap


def body(args) -> int:
    conf = load_yaml(args.conf) if args.conf else {}
    args.batch_size = args.batch_size or int(conf.get("batch_size", 8))
    args.threads = args.threads or int(conf.get("threads", 1))
    if not args.data_dir:
        raise DataError("--data-dir and --out required (in pairs)")
    pairs = cli.set_pairs(args.data_dir, args.out)
    refused = export_refused(args.model)
    if refused:
        # the model does not map onto this engine's format: nothing to decode, and the
        # parity table says why instead of claiming anything
        for _, out in pairs:
            write_run(out, {}, {"engine": args.engine, "precision": args.precision,
                                "refused": refused, "threads": args.threads, "rtf": 0.0})
        log.warning("%s: not exported (%s); no decode", args.model, "; ".join(refused))
        return 0
    prompt = {}
    if args.hotwords or args.language or args.itn:
        if args.engine != "transformers":
            raise DataError("--hotwords, --language and --itn are Fun-ASR-Nano prompt options "
                            "(engine transformers)")
        prompt = {"hotwords": read_hotwords(args.hotwords), "language": args.language,
                  "itn": None if args.itn is None else args.itn == "true"}
    if (args.decode_conf or args.set) and args.engine != "transformers":
        raise DataError("--decode-conf and --set give Fun-ASR-Nano's token budget (engine "
                        "transformers)")
    dec = decode_settings(args.decode_conf, args.set) if args.decode_conf or args.set else {}
    sets = [[Item(u.key, u.wav, u.dur) for u in load_datadir(d, require_text=False)]
            for d, _ in pairs]
    extra = {"prompt": prompt} if prompt else {}
    budgets: dict[str, int] = {}
    for items in sets if dec else []:  # batched set by set, as local/decode.py does
        budgets.update(item_budgets(items, dec) or {})
    if budgets:
        extra["budgets"] = budgets
    runs = run_engine_sets(args.engine, args.model, sets, args.precision, args.threads,
                           args.batch_size, int(conf.get("repeats", 1)), **extra)
    for (data_dir, out), items, run in zip(pairs, sets, runs):
        write_run(out, run.hyps, {"engine": run.engine, "precision": run.precision,
                                  "model": str(args.model.resolve()),
                                  "data_dir": str(data_dir.resolve()),
                                  "utterances": len(items), "seconds": run.seconds,
                                  "audio_seconds": run.audio_seconds, "threads": run.threads,
                                  "batch_size": args.batch_size, "rtf": run.rtf, **run.extra})
        log.info("%s %s %s: decoded %d utterances (%.1f s of audio) in %.2f s, RTF %.4f "
                 "(%d thread(s))", data_dir, run.engine, run.precision, len(items),
                 run.audio_seconds, run.seconds, run.rtf, run.threads)
    return 0


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
