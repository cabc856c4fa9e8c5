#!/usr/bin/env python3
"""Benchmark: local/make_jsonl.py against funasr's own scp2jsonl, same input.

Makes N short 16 kHz wav files and a data dir over them, then times both
command lines end to end (process start, imports, writing the jsonl) over
several runs, alternating the two, and checks that they wrote the same lines
(funasr's order depends on thread timing, so lines are compared sorted).

  python bench/jsonl_vs_scp2jsonl.py [--n 10000] [--runs 5] [--workdir /tmp/bench_jsonl]

Prints the median wall time of each, the speed-up, and whether lines match.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from funasr_recipe.datadir import Utt, write_datadir  # noqa: E402


def make_data(work: Path, n: int) -> Path:
    d = work / "data"
    if (d / "wav.scp").exists() and len((d / "wav.scp").read_text().splitlines()) == n:
        return d
    rng = np.random.default_rng(0)
    words = list("今天天气很好我们去公园散步利率债券市盈率一二三四五六七八九十")
    utts = []
    for i in range(n):
        spk = f"spk{i % 50:02d}"
        key = f"{spk}-utt{i:06d}"
        wav = work / "wav" / spk / f"{key}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        samples = int(rng.integers(3200, 24000))  # 0.2-1.5 s
        sf.write(str(wav), (rng.standard_normal(samples) * 0.05).astype("float32"), 16000,
                 subtype="PCM_16")
        text = "".join(rng.choice(words, size=int(rng.integers(3, 12))))
        utts.append(Utt(key, spk, str(wav), text, samples / 16000))
    write_datadir(d, utts)
    return d


def timed(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="utterances")
    ap.add_argument("--runs", type=int, default=5, help="runs of each tool")
    ap.add_argument("--nj", type=int, default=1, help="--nj for make_jsonl.py")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_jsonl"))
    args = ap.parse_args()
    work = args.workdir.resolve()
    d = make_data(work, args.n)
    ours_out, theirs_out = work / "ours.jsonl", work / "theirs.jsonl"
    scp2jsonl = str(Path(sys.executable).with_name("scp2jsonl"))
    ours_cmd = [sys.executable, str(ROOT / "local" / "make_jsonl.py"), "--data-dir", str(d),
                "--out", str(ours_out), "--nj", str(args.nj)]
    theirs_cmd = [scp2jsonl, f"++scp_file_list=['{d}/wav.scp','{d}/text']",
                  "++data_type_list=['source','target']", f"++jsonl_file_out={theirs_out}",
                  "hydra.run.dir=.", "hydra.output_subdir=null"]
    ours, theirs = [], []
    for _ in range(args.runs):
        theirs.append(timed(theirs_cmd, work))
        ours.append(timed(ours_cmd, work))
    same = sorted(ours_out.read_text().splitlines()) == sorted(theirs_out.read_text().splitlines())
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"utterances: {args.n}, runs: {args.runs}, machine cores: {os.cpu_count()}")
    print(f"funasr scp2jsonl : median {mt:7.2f} s  (runs: {', '.join(f'{x:.2f}' for x in theirs)})")
    print(f"make_jsonl.py    : median {mo:7.2f} s  (runs: {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"speed-up: {mt / mo:.1f}x; identical lines: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
