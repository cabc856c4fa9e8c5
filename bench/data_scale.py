#!/usr/bin/env python3
"""Benchmark: how the data stages (1-3) grow with the number of utterances.

Builds, without a large disk, a general and a domain Kaldi data dir of N and
N/10 utterances (``wav.scp``, ``text``, ``utt2spk`` and ``utt2dur`` as Kaldi
users have them) whose entries point at a small set of real 16 kHz files, then
runs the recipe's own tools on them as run.sh does, each in its own process:

  stage 1  local/prepare_data.py (wav.scp + --text, --nj), utils/validate_data_dir.sh
           on every data dir, local/split_data.py
  stage 2  local/mix_stages.py (conf/stages.yaml)
  stage 3  local/make_jsonl.py --family paraformer for every training set

With --folder N it also times stage 1's other input, the one most users
start from: a folder of N small audio files (distinct files, 0.1-0.3 s each,
a folder per speaker) with same-named .txt transcripts, through
local/prepare_data.py --in FOLDER --nj (every header read, every transcript
opened), against the baseline too when N <= --baseline-max.

It reports, per step, the median wall time, the median CPU time (user + system,
all the step's processes; on a shared machine the steadier figure) and the peak
RSS (``/usr/bin/time``) over --runs, and for each step the exponent b of
time ~ N^b fitted over the sizes (1.0 = linear).

With --utt2dur, the working tree's steps also run a second time per run
with prepare_data.py --utt2dur (the durations from the Kaldi utt2dur, no
audio file opened), and the files that differ from the plain run's are named.

With --baseline COMMIT the same steps also run, in the same runs and
alternating with the working tree, with that commit's tools (``git archive``
into the workdir); its outputs are compared with the working tree's (every
data dir file and jsonl, byte for byte, files the baseline does not write left
aside) and its figures printed below.

  python bench/data_scale.py [--sizes 10000,100000,1000000] [--runs 3] [--nj 2]
      [--baseline COMMIT [--baseline-max N]] [--folder N] [--utt2dur]
      [--workdir /tmp/bench_data_scale]

The general pool's size is N, the domain pool's N/10. Nothing here is a test:
figures go to bench/RESULTS.md with the command and the commit.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
N_FILES = 64
WORDS = list("今天天气很好我们去公园散步利率债券市盈率一二三四五六七八九十患者血压")


def make_files(work: Path) -> list[tuple[str, float]]:
    """N_FILES real wav files of 0.5-3 s; returns (path, seconds)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(N_FILES):
        p = work / "wav" / f"f{i:03d}.wav"
        n = int(rng.integers(8000, 48000))
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(p), (rng.standard_normal(n) * 0.05).astype("float32"), 16000,
                     subtype="PCM_16")
        out.append((str(p.resolve()), n / 16000))
    return out


def make_kaldi(d: Path, n: int, prefix: str, files: list[tuple[str, float]]) -> Path:
    """A Kaldi dir of n utterances over ``files`` (wav.scp, text, utt2spk, utt2dur)."""
    if (d / "utt2dur").exists() and sum(1 for _ in open(d / "utt2dur")) == n:
        return d
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    n_spk = max(10, n // 200)
    keys = sorted(f"{prefix}spk{i % n_spk:05d}-{i:08d}" for i in range(n))
    with open(d / "wav.scp", "w") as w, open(d / "text", "w") as t, \
            open(d / "utt2spk", "w") as s, open(d / "utt2dur", "w") as u:
        choice = rng.integers(0, len(files), size=n)
        lens = rng.integers(3, 15, size=n)
        for k, c, ln in zip(keys, choice, lens):
            path, dur = files[c]
            w.write(f"{k} {path}\n")
            t.write(f"{k} {''.join(rng.choice(WORDS, size=int(ln)))}\n")
            s.write(f"{k} {k.split('-')[0]}\n")
            u.write(f"{k} {dur:.3f}\n")
    return d


def prepare_nj(root: Path, nj: int) -> list[str]:
    """``--nj N`` for ``root``'s prepare_data.py, or nothing where it has no --nj (a baseline)."""
    return ["--nj", str(nj)] if '"--nj"' in (root / "local/prepare_data.py").read_text() else []


def make_folder(d: Path, n: int) -> Path:
    """A folder of n distinct small wav files with same-named .txt transcripts,
    100 per speaker folder (written once; the audio bytes repeat 64 variants)."""
    done = d / ".complete"
    if done.exists() and done.read_text() == str(n):
        return d
    subprocess.run(["rm", "-rf", str(d)], check=True)
    rng = np.random.default_rng(n)
    variants = []
    for _ in range(N_FILES):
        buf = io.BytesIO()
        sf.write(buf, (rng.standard_normal(int(rng.integers(1600, 4800))) * 0.05).astype("float32"),
                 16000, subtype="PCM_16", format="WAV")
        variants.append(buf.getvalue())
    lens = rng.integers(3, 15, size=n)
    for i in range(n):
        spk = d / f"spk{i // 100:05d}"
        if i % 100 == 0:
            spk.mkdir(parents=True)
        (spk / f"u{i:08d}.wav").write_bytes(variants[i % N_FILES])
        (spk / f"u{i:08d}.txt").write_text("".join(rng.choice(WORDS, size=int(lens[i]))) + "\n",
                                           encoding="utf-8")
    done.write_text(str(n))
    return d


def folder_bench(roots: dict[str, Path], work: Path, n: int, runs: int, nj: int,
                 baseline_max: int | None) -> None:
    """Stage 1's prepare from a folder of n files: median wall, CPU, peak RSS per tree."""
    src = make_folder(work / f"folder_{n}", n)
    py = sys.executable
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    for run in range(runs):
        for tag, root in roots.items():
            if root != ROOT and baseline_max is not None and n > baseline_max:
                continue
            sub = "" if root == ROOT else "_baseline"
            out = work / f"folder_out_{n}{sub}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            w, m, c = timed([py, "local/prepare_data.py", "--in", str(src), "--out", str(out),
                             *prepare_nj(root, nj)],
                            work / f"log_folder_{n}{sub}.txt", root)
            walls.setdefault(tag, []).append(w)
            cpus.setdefault(tag, []).append(c)
            rss[tag] = max(rss.get(tag, 0.0), m)
            print(f"folder of {n} files, run {run + 1} {tag}: {w:.1f} s, {c:.1f} cpu, {m:.0f} MB",
                  flush=True)
    if len(walls) > 1:
        bad = same_outputs(work / f"folder_out_{n}", work / f"folder_out_{n}_baseline")
        print(f"folder of {n} files: outputs identical to the baseline's: "
              f"{'yes' if not bad else 'NO: ' + ', '.join(bad[:5])}", flush=True)
    for tag in walls:
        print(f"folder of {n} files, {tag}: median of {runs}: {statistics.median(walls[tag]):.2f} s wall, "
              f"{statistics.median(cpus[tag]):.2f} CPU s, peak RSS {rss[tag]:.0f} MB "
              f"(runs: {', '.join(f'{x:.1f}' for x in walls[tag])} s)", flush=True)


def timed(cmd: list[str], log: Path, root: Path = ROOT) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds) of ``cmd`` run in ``root``
    under /usr/bin/time."""
    env = dict(os.environ, PYTHONPATH=str(root / "local"), OMP_NUM_THREADS="1")
    t = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M CPU %U %S", *cmd], cwd=root,
                           env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    text = log.read_text(errors="replace")
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{text[-2000:]}")
    last = [line.split() for line in text.splitlines() if line.startswith("MAXRSS ")]
    if not last:
        return wall, math.nan, math.nan
    f = last[-1]
    return wall, int(f[1]) / 1024, float(f[3]) + float(f[4])


def steps(src: Path, data: Path, dump: Path, nj: int,
          root: Path = ROOT, utt2dur: bool = False) -> list[tuple[str, list[str]]]:
    py = sys.executable
    prep, check, split = [], [], []
    prep_nj = prepare_nj(root, nj)
    for pool in ("general", "domain"):
        prep.append([py, "local/prepare_data.py", "--in", str(src / pool / "wav.scp"),
                     "--text", str(src / pool / "text"), "--utt2spk", str(src / pool / "utt2spk"),
                     "--out", str(data / f"{pool}_all"), *prep_nj,
                     *(["--utt2dur", str(src / pool / "utt2dur")] if utt2dur else [])])
        split.append([py, "local/split_data.py", "--src", str(data / f"{pool}_all"),
                      "--out-prefix", str(data / pool)])
        check += [["bash", "utils/validate_data_dir.sh", "--no-feats", str(data / f"{pool}_{part}")]
                  for part in ("all", "train", "valid", "test")]
    mix = [[py, "local/mix_stages.py", "--plan", "conf/stages.yaml",
            "--general", str(data / "general_train"), "--domain", str(data / "domain_train"),
            "--out-prefix", f"{data}/", "--summary", str(data / "mix_summary.tsv")]]
    jsonl = [[py, "local/make_jsonl.py", "--family", "paraformer", "--data-dir", str(data / s),
              "--out", str(dump / f"{s}.jsonl"), "--nj", str(nj)]
             for s in ("general_train", "domain_train", "stage1_train", "stage2_train",
                       "stage3_train")]
    # as run.sh: prepare and split each pool, then validate its four dirs
    out = [("stage1 prepare", prep), ("stage1 split", split), ("stage1 validate", check),
           ("stage2 mix", mix), ("stage3 jsonl", jsonl)]
    return out


def baseline_root(commit: str, work: Path) -> Path:
    """``commit``'s tree, unpacked once into the workdir."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout.strip()
    root = work / f"baseline_{sha[:12]}"
    if not (root / "local").is_dir():
        tmp = work / f".baseline_{sha[:12]}.tmp"
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        tmp.rename(root)
    return root


def same_outputs(a: Path, b: Path) -> list[str]:
    """Files of ``b`` (the baseline's outputs) that differ from or are missing in ``a``."""
    bad = []
    for p in sorted(b.rglob("*")):
        if p.is_file() and not p.name.endswith(".tsv.done"):
            q = a / p.relative_to(b)
            if not q.is_file() or q.read_bytes() != p.read_bytes():
                bad.append(str(p.relative_to(b)))
    return bad


def report(results: dict, sizes: list[int], title: str) -> None:
    print(f"\n{title}")
    print(f"{'step':<16}" + "".join(f"{'N=' + str(n):>32}" for n in sizes)
          + f"{'exp(wall)':>10}{'exp(cpu)':>10}")
    for name, by_n in results.items():
        row = f"{name:<16}"
        for n in sizes:
            w, m, c = by_n[n]
            row += f"{w:>9.2f} s {c:>8.2f} cpu {m:>6.0f} MB"
        for i in (0, 2):
            if len(sizes) > 1:
                xs = [math.log(n) for n in sizes]
                ys = [math.log(max(by_n[n][i], 1e-3)) for n in sizes]
                mx, my = statistics.mean(xs), statistics.mean(ys)
                b = (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
                     / sum((x - mx) ** 2 for x in xs))
                row += f"{b:>10.2f}"
        print(row)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="general-pool sizes N (domain: N/10), comma separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nj", type=int, default=2, help="--nj for make_jsonl.py")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_data_scale"))
    ap.add_argument("--baseline", default=None,
                    help="a commit whose tools run the same steps in the same runs")
    ap.add_argument("--baseline-max", type=int, default=None,
                    help="run the baseline only at sizes up to this N (it may be slow)")
    ap.add_argument("--utt2dur", action="store_true",
                    help="also run the working tree's steps with prepare_data.py --utt2dur")
    ap.add_argument("--folder", type=int, default=0,
                    help="also time prepare_data.py on a folder of this many audio files + .txt "
                         "transcripts (0: not)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    args.workdir.mkdir(parents=True, exist_ok=True)
    files = make_files(args.workdir)
    roots = {"working tree": ROOT}
    # tag -> (data/dump suffix, prepare_data.py --utt2dur)
    variants = {"working tree": ("", False)}
    if args.utt2dur:
        roots["working tree, --utt2dur"] = ROOT
        variants["working tree, --utt2dur"] = ("_utt2dur", True)
    if args.baseline:
        roots[f"baseline {args.baseline}"] = baseline_root(args.baseline, args.workdir)
        variants[f"baseline {args.baseline}"] = ("_baseline", False)
    results: dict[str, dict[str, dict[int, tuple[float, float, float]]]] = {r: {} for r in roots}
    for n in sizes:
        src = args.workdir / f"src_{n}"
        make_kaldi(src / "general", n, "g", files)
        make_kaldi(src / "domain", max(10, n // 10), "d", files)
        walls: dict[str, dict[str, list[float]]] = {r: {} for r in roots}
        cpus: dict[str, dict[str, list[float]]] = {r: {} for r in roots}
        rss: dict[str, dict[str, float]] = {r: {} for r in roots}
        for run in range(args.runs):
            for tag, root in roots.items():
                sub, utt2dur = variants[tag]
                if (sub == "_baseline" and args.baseline_max is not None
                        and n > args.baseline_max):
                    continue
                data = args.workdir / f"data_{n}{sub}"
                dump = args.workdir / f"dump_{n}{sub}"
                subprocess.run(["rm", "-rf", str(data), str(dump)], check=True)
                dump.mkdir(parents=True)
                for name, cmds in steps(src, data, dump, args.nj, root, utt2dur):
                    total = cpu = 0.0
                    for i, cmd in enumerate(cmds):
                        log = args.workdir / f"log_{n}{sub}_{name.replace(' ', '_')}_{i}.txt"
                        w, m, c = timed(cmd, log, root)
                        total += w
                        cpu += c
                        rss[tag][name] = max(rss[tag].get(name, 0.0), m)
                    walls[tag].setdefault(name, []).append(total)
                    cpus[tag].setdefault(name, []).append(cpu)
                print(f"N={n} run {run + 1} {tag}: "
                      + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in walls[tag].items()), flush=True)
            if args.utt2dur and run == 0:
                bad = same_outputs(args.workdir / f"data_{n}_utt2dur", args.workdir / f"data_{n}")
                bad += same_outputs(args.workdir / f"dump_{n}_utt2dur", args.workdir / f"dump_{n}")
                print(f"N={n}: --utt2dur outputs that differ from the plain run's: "
                      f"{', '.join(bad) if bad else 'none'}", flush=True)
            if args.baseline and run == 0 and walls[list(roots)[-1]]:
                bad = same_outputs(args.workdir / f"data_{n}", args.workdir / f"data_{n}_baseline")
                bad += same_outputs(args.workdir / f"dump_{n}", args.workdir / f"dump_{n}_baseline")
                print(f"N={n}: outputs identical to the baseline's: "
                      f"{'yes' if not bad else 'NO: ' + ', '.join(bad[:5])}", flush=True)
        for tag in roots:
            if not walls[tag]:
                continue
            for name, ws in walls[tag].items():
                results[tag].setdefault(name, {})[n] = (
                    statistics.median(ws), rss[tag][name], statistics.median(cpus[tag][name]))
            results[tag].setdefault("stages 1-3", {})[n] = (
                sum(statistics.median(ws) for ws in walls[tag].values()),
                max(rss[tag].values()),
                sum(statistics.median(cs) for cs in cpus[tag].values()))
    if args.folder:
        plain = {t: r for t, r in roots.items() if not variants[t][1]}
        folder_bench(plain, args.workdir, args.folder, args.runs, args.nj, args.baseline_max)
    for tag in roots:
        done = [n for n in sizes if n in results[tag].get("stages 1-3", {})]
        if not done:
            continue
        report(results[tag], done, f"{tag}: wall, CPU (user+sys), peak RSS; exponents of "
                                    f"time ~ N^b")
    print(f"\n(median of {args.runs} runs; peak RSS is the largest of the step's processes; "
          f"general pool N, domain pool N/10; --nj {args.nj}; {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
