#!/usr/bin/env python3
"""Benchmark: one training stage through local/train.py against the same stage
through bare funasr-train (same config, data, epochs, threads), in one run.

Each run trains three times, in rotating order, each into a fresh dir:

  recipe      local/train.py (chain check, checkpoint checks, final.pt link)
  recipe+gv   the same with --extra-valid general=... (the per-epoch general
              valid pass run.sh adds to watch forgetting)
  bare        python -m funasr.bin.train with exactly the overrides the
              recipe passed (read from its log line "funasr-train ...")

and reports the median wall time and peak RSS (/usr/bin/time) of each, the
recipe's overhead over bare funasr in %, and the cost of the extra valid pass.

  python bench/train_overhead.py --model-dir exp/paraformer/base \\
      --conf conf/paraformer/train.yaml --section stage1 \\
      --train dump/paraformer/stage1_train.jsonl --valid dump/paraformer/domain_valid.jsonl \\
      --extra-valid general=dump/paraformer/general_valid.jsonl [--runs 3] [--threads 2]
      [--family paraformer] [--workdir /tmp/bench_train]

Run the mini recipe through stage 4 first (bash run.sh --stop-stage 4).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], log: Path, threads: int) -> tuple[float, float, float, str]:
    """Wall seconds, peak RSS (MB), CPU seconds (user + system, children included:
    /usr/bin/time) and the log text of one training."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "local"), OMP_NUM_THREADS=str(threads))
    t = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M\nCPUTIME %U %S", *cmd], cwd=ROOT,
                           env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    text = log.read_text(errors="replace")
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}), see {log}:\n{text[-3000:]}")
    rss = [int(x.split()[1]) for x in text.splitlines() if x.startswith("MAXRSS ")]
    cpu = [float(x.split()[1]) + float(x.split()[2]) for x in text.splitlines()
           if x.startswith("CPUTIME ")]
    return wall, (rss[-1] / 1024 if rss else math.nan), (cpu[-1] if cpu else math.nan), text


def funasr_args_from(log_text: str) -> list[str]:
    for line in log_text.splitlines():
        m = re.search(r"funasr-train (\+\+.*)$", line)
        if m:
            return shlex.split(m.group(1)) if "'" in m.group(1) else m.group(1).split()
    sys.exit("the recipe's log has no 'funasr-train ...' line")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="paraformer")
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--conf", required=True)
    ap.add_argument("--section", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--extra-valid", required=True, help="NAME=JSONL")
    ap.add_argument("--init", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a training override for every variant (local/train.py --set; bare "
                         "funasr gets it through the recipe's overrides), e.g. "
                         "train_conf.max_epoch=2")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_train"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    base = [sys.executable, "local/train.py", "--family", args.family, "--conf", args.conf,
            "--section", args.section, "--model-dir", args.model_dir, "--train", args.train,
            "--valid", args.valid, "--threads", str(args.threads)]
    if args.init:
        base += ["--init", args.init]
    for kv in args.set:
        base += ["--set", kv]
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    bare_args: list[str] | None = None  # the overrides the recipe passed, from its first log
    for i in range(args.runs):
        order = ["recipe", "recipe+gv", "bare"]
        order = order[i % 3:] + order[:i % 3]  # run 1 starts with the recipe
        for name in order:
            out = args.workdir / f"{name}_{i}"
            log = args.workdir / f"{name}_{i}.log"
            if name == "bare":
                a = [x for x in bare_args if not x.startswith(("++output_dir=", "hydra.run.dir="))]
                cmd = [sys.executable, "-m", "funasr.bin.train", *a, f"++output_dir={out}",
                       f"hydra.run.dir={out}"]
            else:
                cmd = [*base, "--out", str(out)]
                if name == "recipe+gv":
                    cmd += ["--extra-valid", args.extra_valid]
            w, m, c, text = run(cmd, log, args.threads)
            walls.setdefault(name, []).append(w)
            cpus.setdefault(name, []).append(c)
            rss[name] = max(rss.get(name, 0.0), m)
            if name == "recipe" and bare_args is None:
                bare_args = funasr_args_from(text)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s ({cpus[k][-1]:.1f} cpu s)"
                                           for k, v in walls.items()), flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    cmed = {k: statistics.median(v) for k, v in cpus.items()}
    print(f"\n{'variant':<12}{'wall (median)':>16}{'vs bare':>10}{'CPU (median)':>16}{'vs bare':>10}"
          f"{'peak RSS':>12}")
    for k in ("bare", "recipe", "recipe+gv"):
        print(f"{k:<12}{med[k]:>14.2f} s{100 * (med[k] / med['bare'] - 1):>+9.1f}%"
              f"{cmed[k]:>14.2f} s{100 * (cmed[k] / cmed['bare'] - 1):>+9.1f}%{rss[k]:>9.0f} MB")
    print(f"\nextra general-valid pass: {med['recipe+gv'] - med['recipe']:.2f} s wall, "
          f"{cmed['recipe+gv'] - cmed['recipe']:.2f} CPU s per stage (median differences); "
          f"{args.runs} runs, {args.threads} threads, {os.cpu_count()} CPUs")
    print(f"all runs: wall {walls}\nCPU {cpus}")
    name, _, jsonl = args.extra_valid.partition("=")
    with open(jsonl, encoding="utf-8") as f:
        n_gv = sum(1 for _ in f)
    with open(args.valid, encoding="utf-8") as f:
        n_v = sum(1 for _ in f)
    print(f"valid sets: {args.valid} {n_v} lines (funasr's own pass), {name} {n_gv} lines "
          f"(the extra pass)")
    print(f"load average before {load_before}, after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
