#!/usr/bin/env python3
"""Benchmark: how close local/decode.py's pipeline comes to the model's own compute.

On the same utterances, in the same batches (duration-sorted, --batch-size), in
one run, alternating, median of --runs each:

  forward    the model's batched inference on features computed beforehand
             (Paraformer.inference with data_type=fbank: encoder, CIF
             predictor, decoder, argmax, detokenising): what the model costs
  pipeline   decoding.decode as local/decode.py runs it today (feature_workers
             0): funasr's AutoModel.generate reads the audio and computes the
             features per utterance between the forwards
  workers    decoding.decode with --workers DataLoader processes computing the
             features while the model decodes (decode conf: feature_workers)

and, inside `pipeline`, the time spent reading audio and computing features
(funasr's load_audio_text_image_video and extract_fbank): where the rest goes.
--profile adds cProfile's top functions of one pipeline run. Hypotheses of the
three must be identical (checked; any difference is printed and fails).

Models: --size twin (conf/paraformer/twin.yaml) and/or published
(paraformer-large's published sizes, the template the twin follows key for key:
encoder 512-d x 50 blocks, decoder 16 blocks, 8,404-token vocabulary), random
weights, identity CMVN, built in a temporary dir. Audio: --utts synthetic
utterances (tones in noise, --min-dur..--max-dur seconds), or --data-dir.

  nice -n 10 python bench/decode_pipeline.py --size twin published --runs 3
  python bench/decode_pipeline.py --device cuda --size published --utts 64   # bench/gpu_check.sh
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from funasr_recipe.decoding import (Item, _collate_features, FeatureSet, decode,  # noqa: E402
                                    duration_batches, load_model)
from funasr_recipe.twin_paraformer import load_arch, make_paraformer_twin  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_batched_vs_single import timed_frontend  # noqa: E402  (one copy: bench/)

PUBLISHED_VOCAB = 8404 - 4   # the release's tokens.json: 8,404 with <blank> <s> </s> <unk>


def build_model(kind: str, root: Path) -> Path:
    arch = {} if kind == "published" else load_arch(ROOT / "conf" / "paraformer" / "twin.yaml")
    n = PUBLISHED_VOCAB if kind == "published" else 400
    tokens = [chr(0x4E00 + i) for i in range(n)]
    return make_paraformer_twin(root / kind, tokens, None, arch, seed=0)


def make_audio(root: Path, n: int, lo: float, hi: float, seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        dur = float(rng.uniform(lo, hi))
        t = np.arange(int(dur * 16000)) / 16000
        x = 0.05 * rng.standard_normal(t.size)
        for f in rng.uniform(100, 1000, size=3):
            x += 0.1 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0)
        p = root / f"u{i:04d}.wav"
        sf.write(str(p), x.astype("float32"), 16000)
        items.append(Item(f"u{i:04d}", str(p), round(dur, 3)))
    return items


def precompute(am, batches: list[list[Item]]):
    """The padded feature batches funasr's generate() would compute."""
    fs = FeatureSet([it for b in batches for it in b], am.kwargs["frontend"])
    out, i = [], 0
    for b in batches:
        out.append(_collate_features([fs[j] for j in range(i, i + len(b))]))
        i += len(b)
    return out


def forward(am, feats) -> dict[str, str]:
    import torch

    kwargs = dict(am.kwargs, data_type="fbank")
    hyps = {}
    for keys, x, lens in feats:
        kwargs["batch_size"] = len(keys)
        with torch.no_grad():
            res = am.model.inference(data_in=x, data_lengths=lens, key=keys, **kwargs)
        got = {r["key"]: r["text"] for r in (res[0] if res else []) if "key" in r}
        hyps.update({k: got.get(k, "") for k in keys})
    if am.kwargs.get("device", "cpu").startswith("cuda"):
        torch.cuda.synchronize()
    return hyps


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its reaped children (the
    DataLoader workers are joined at the end of each decode): steadier than wall
    time on a loaded machine, but blind to the overlap the workers buy."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def texts(res: dict[str, dict]) -> dict[str, str]:
    return {k: r.get("text", "") for k, r in res.items()}


def bench_size(kind: str, args, tmp: Path, items: list[Item]) -> dict:
    t0 = time.perf_counter()
    model_dir = build_model(kind, tmp)
    built = time.perf_counter() - t0
    am = load_model(model_dir, device=args.device, threads=args.threads)
    params = sum(p.numel() for p in am.model.parameters())
    batches = duration_batches(items, args.batch_size)
    audio = sum(it.dur for it in items)
    front = timed_frontend(type(am.model))
    feats = precompute(am, batches)
    forward(am, feats[:1])   # warm-up (first-call allocations, CUDA kernels)
    runs: dict[str, list[float]] = {"forward": [], "pipeline": [], "workers": []}
    frontend_s: list[float] = []
    hyps = {}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.runs):
        t, c = time.perf_counter(), cpu_seconds()
        hyps["forward"] = forward(am, feats)
        runs["forward"].append(time.perf_counter() - t)
        cpu["forward"].append(cpu_seconds() - c)
        front[0] = 0.0
        t, c = time.perf_counter(), cpu_seconds()
        hyps["pipeline"] = texts(decode(am, batches))
        runs["pipeline"].append(time.perf_counter() - t)
        cpu["pipeline"].append(cpu_seconds() - c)
        frontend_s.append(front[0])
        t, c = time.perf_counter(), cpu_seconds()
        hyps["workers"] = texts(decode(am, batches, feature_workers=args.workers))
        runs["workers"].append(time.perf_counter() - t)
        cpu["workers"].append(cpu_seconds() - c)
    profile = None
    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        decode(am, batches)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
        profile = s.getvalue()
    med = {k: statistics.median(v) for k, v in runs.items()}
    diff = [k for k in hyps["pipeline"] if not (hyps["pipeline"][k] == hyps["workers"][k]
                                                == hyps["forward"].get(k, ""))]
    return {"size": kind, "parameters": params, "model_built_s": round(built, 1),
            "utterances": len(items), "audio_s": round(audio, 1), "batch_size": args.batch_size,
            "device": args.device, "threads": args.threads, "workers": args.workers,
            "runs": {k: [round(x, 3) for x in v] for k, v in runs.items()},
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "cpu_runs": {k: [round(x, 3) for x in v] for k, v in cpu.items()},
            "median_cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
            "rtf": {k: round(v / audio, 4) for k, v in med.items()},
            "pipeline_over_forward": round(med["pipeline"] / med["forward"], 3),
            "workers_over_forward": round(med["workers"] / med["forward"], 3),
            "pipeline_audio_and_features_s": round(statistics.median(frontend_s), 3),
            "identical_hypotheses": f"{len(items) - len(diff)} / {len(items)}",
            "nonempty_hypotheses": sum(bool(v) for v in hyps["pipeline"].values()),
            "differs": diff[:5], "profile": profile}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", nargs="+", choices=("twin", "published"),
                    default=["twin", "published"])
    ap.add_argument("--data-dir", type=Path, default=None, help="decode this data dir's audio")
    ap.add_argument("--utts", type=int, default=24, help="synthetic utterances")
    ap.add_argument("--min-dur", type=float, default=2.0)
    ap.add_argument("--max-dur", type=float, default=6.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="feature worker processes")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profile", action="store_true", help="cProfile one pipeline run")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    out = {"load_before": os.getloadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime())}
    results = []
    with tempfile.TemporaryDirectory(prefix="decode_pipeline.") as tmp:
        tmp = Path(tmp)
        if args.data_dir is not None:
            from funasr_recipe.datadir import load_datadir
            items = [Item(u.key, u.wav, u.dur)
                     for u in load_datadir(args.data_dir, require_text=False)]
        else:
            (tmp / "wav").mkdir()
            items = make_audio(tmp / "wav", args.utts, args.min_dur, args.max_dur)
        for kind in args.size:
            r = bench_size(kind, args, tmp, items)
            results.append(r)
            m = r["median_s"]
            print(f"== {kind}: {r['parameters'] / 1e6:.1f} M parameters, {r['utterances']} utts, "
                  f"{r['audio_s']} s audio, batch {r['batch_size']}, {args.device}, "
                  f"{args.threads} thread(s), runs {args.runs}")
            print(f"  forward on precomputed features: median {m['forward']:.2f} s "
                  f"(RTF {r['rtf']['forward']})")
            print(f"  pipeline (today)               : median {m['pipeline']:.2f} s "
                  f"(RTF {r['rtf']['pipeline']}), x{r['pipeline_over_forward']} of forward; "
                  f"reading audio + features inside it: "
                  f"{r['pipeline_audio_and_features_s']:.2f} s")
            print(f"  pipeline, {args.workers} feature workers    : median {m['workers']:.2f} s "
                  f"(RTF {r['rtf']['workers']}), x{r['workers_over_forward']} of forward")
            print(f"  CPU seconds (all processes), median: {r['median_cpu_s']}")
            print(f"  identical hypotheses: {r['identical_hypotheses']} "
                  f"({r['nonempty_hypotheses']} non-empty); runs {r['runs']}")
            if r["profile"]:
                print(r["profile"])
            sys.stdout.flush()
    out["load_after"] = os.getloadavg()
    out["results"] = results
    print(f"load average before {out['load_before']}, after {out['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return 0 if all(r["identical_hypotheses"].split(" / ")[0] == str(r["utterances"])
                    for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
