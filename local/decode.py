#!/usr/bin/env python3
"""Decode a data dir with a funasr model dir, in duration-sorted batches.

Writes OUT/text (Kaldi 'key text', every key of the data dir) and with
--timestamps OUT/timestamps ('key [[start_ms, end_ms], ...]'). With --nj N
--job J it decodes only the J-th of N parts and writes OUT/text.J (run.sh
runs the parts through ${decode_cmd} and merges them in key order); the parts
are whole batches of the full set, so the merged output equals a 1-job run.
Several sets decode with one model load: repeat --data-dir and --out in pairs
(the N-th --out receives the N-th --data-dir; with --job, each set's J-th
part); run.sh decodes all of a model's test sets in one job array, so the
start-up (importing funasr, building the model) is paid once per job, not once
per set.
--vad segments long recordings with silero-vad (its weights ship with its
package) so several-minute files decode without running out of memory.

Fun-ASR-Nano takes --hotwords, --language and --itn as text in its prompt
(hotwords are context for the LLM, not a decoding bias); their defaults come
from the 'prompt' section of --conf, the prompt the model was trained with.
For Paraformer, --itn true applies wetext's inverse text normalisation to the
output; hotwords need a contextual Paraformer (SeACo) and are refused.

Batch size, dither, feature_workers (processes that read audio and compute
features while the model decodes; Paraformer) and Fun-ASR-Nano's token budget
(max_new_tokens, max_new_tokens_per_second: funasr_recipe.decoding.token_budget)
come from --decode-conf (conf/<family>/decode.yaml), each overridable with
--set KEY=VALUE.

--print-tag prints the tag of the options (funasr_recipe.decoding.decode_tag:
'default', or the options that change hypotheses, e.g. 'vad_itn'); run.sh
decodes model M into exp/<family>/decode_M_<tag>/<set>, so decodes with other
options sit side by side.

Example:
  local/decode.py --model-dir exp/paraformer/stage3/model --data-dir data/domain_test \\
      --decode-conf conf/paraformer/decode.yaml --out exp/paraformer/decode_stage3_default/domain_test
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.config import load_yaml
from funasr_recipe.datadir import load_datadir
from funasr_recipe import decoding
from funasr_recipe.decoding import (Item, decode, decode_settings, duration_batches, token_budget,
                                    job_batches, load_model, read_hotwords, write_results)
from funasr_recipe.errors import DataError
from funasr_recipe.text import join_cjk
from funasr_recipe.modeldir import FAMILIES, check_model_dir

log = logging.getLogger("decode")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="paraformer", help="model family")
    ap.add_argument("--model-dir", type=Path, default=None, help="funasr model dir (required)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="weights to use instead of MODEL_DIR/model.pt")
    cli.add_set_options(ap)
    ap.add_argument("--conf", type=Path, default=None,
                    help="nano: the train config whose 'prompt' section the model was "
                         "trained with")
    ap.add_argument("--decode-conf", type=Path, default=None,
                    help="decoding settings: batch_size, dither, feature_workers "
                         "(conf/<family>/decode.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a --decode-conf setting for this run (repeatable)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="utterances per batch [decode conf or 16]")
    ap.add_argument("--nj", type=int, default=1, help="number of parts")
    ap.add_argument("--job", type=int, default=None, help="part to decode (1..nj)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ...")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    ap.add_argument("--timestamps", action="store_true", help="also write OUT/timestamps")
    ap.add_argument("--vad", action="store_true", help="segment long audio with silero-vad")
    ap.add_argument("--hotwords", default=None,
                    help="nano: hotwords, comma-separated or a file with one a line")
    ap.add_argument("--language", default=None,
                    help="nano: output language for the prompt, e.g. 中文, 英文 "
                         "(default: the conf's prompt.language)")
    ap.add_argument("--itn", choices=("true", "false"), default=None,
                    help="inverse text normalisation (default: nano: the conf's prompt.itn; "
                         "paraformer: false)")
    ap.add_argument("--vad-max-segment-ms", type=int,
                    default=decoding.DEFAULT_VAD_MAX_SEGMENT_MS, help="longest VAD segment")
    ap.add_argument("--print-tag", action="store_true",
                    help="print the tag of these options (decode dirs are "
                         "decode_<model>_<tag>) and exit; decodes nothing")
    return ap


def generate_options(args, conf: dict) -> tuple[dict, bool]:
    """:func:`funasr_recipe.decoding.generate_options` of the command line."""
    return decoding.generate_options(args.family, conf, args.conf, read_hotwords(args.hotwords),
                                     args.language, None if args.itn is None else args.itn == "true")


def tag_of(args, conf: dict, dec: dict) -> str:
    """The decode tag of the command line (:func:`funasr_recipe.decoding.decode_tag`)."""
    return decoding.decode_tag(args.family, conf, args.conf,
                               hotwords=read_hotwords(args.hotwords), language=args.language,
                               itn=None if args.itn is None else args.itn == "true",
                               vad=args.vad, vad_max_segment_ms=args.vad_max_segment_ms,
                               dither=float(dec.get("dither", 0.0)))


def body(args) -> int:
    conf = load_yaml(args.conf) if args.conf else {}
    dec = decode_settings(args.decode_conf, args.set)
    options, post_itn = generate_options(args, conf)
    budget = token_budget(args.family, dec)  # a bad budget fails before the model loads
    if args.print_tag:
        print(tag_of(args, conf, dec))
        return 0
    missing = [f"--{n.replace('_', '-')}" for n in ("model_dir", "data_dir", "out")
               if not getattr(args, n)]
    if missing:
        raise DataError(f"{', '.join(missing)} required (or --print-tag)")
    pairs = cli.set_pairs(args.data_dir, args.out)
    batch_size = args.batch_size or int(dec.get("batch_size", 16))
    model_dir = check_model_dir(args.model_dir, args.family)
    # every set is read and checked before the model is built: a bad data dir
    # fails in a second, not after the start-up
    work = []
    for data_dir, out in pairs:
        utts = load_datadir(data_dir, require_text=False)
        batches = duration_batches([Item(u.key, u.wav, u.dur) for u in utts], batch_size)
        if args.job is not None:
            batches = job_batches(batches, args.job, args.nj)
        work.append((data_dir, out, batches))
    suffix = "" if args.job is None else f".{args.job}"
    model = load_model(model_dir, args.checkpoint, args.device, args.threads,
                       float(dec.get("dither", 0.0)), args.vad, args.vad_max_segment_ms)
    for data_dir, out, batches in work:
        decode_one(args, model, options, post_itn, dec, budget, data_dir, out, batches, suffix)
    return 0


def decode_one(args, model, options: dict, post_itn: bool, dec: dict, budget, data_dir: Path,
               out: Path, batches: list[list[Item]], suffix: str) -> None:
    """Decode one set's ``batches`` with the loaded ``model`` into ``out``."""
    items = [it for batch in batches for it in batch]
    t = time.perf_counter()
    results = decode(model, batches, args.timestamps, args.vad, options,
                     feature_workers=0 if args.vad else int(dec.get("feature_workers", 0)),
                     budget=budget)
    if post_itn:
        from funasr_recipe.normalize import itn
        for r in results.values():
            r["text"] = itn(join_cjk(str(r.get("text", ""))))
    elapsed = time.perf_counter() - t
    audio = sum(it.dur for it in items)
    write_results(results, out, args.timestamps, suffix)
    log.info("%s: decoded %d utterances (%.1f s of audio) in %.1f s, RTF %.3f", data_dir,
             len(items), audio, elapsed, elapsed / audio if audio else 0.0)


def main(argv=None) -> int:
    return cli.run(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
