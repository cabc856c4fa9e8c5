#!/usr/bin/env python3
"""Benchmark: training throughput, hours of audio trained per hour of wall time.

For each --family (paraformer, nano) and --size (twin, published), one model
in a temporary dir, random weights, trained as the recipe's stage 1 trains it
(section stage1 of conf/<family>/train.yaml, with the model dir's known fixes,
as local/train.py reads them):

  paraformer  every parameter trains (full fine-tuning); published =
              paraformer-large's sizes (encoder 512-d x 50 blocks, decoder 16
              blocks, 8,404 tokens), twin = conf/paraformer/twin.yaml
              (bench/decode_pipeline.py's build_model)
  nano        Fun-ASR-Nano's stage 1: encoder and LLM frozen, the audio
              adaptor trains (audio_encoder_conf.freeze etc. from train.yaml);
              published = Fun-ASR-Nano-2512's sizes (SenseVoiceEncoderSmall
              512-d 50+20 blocks, Qwen3-0.6B), twin = conf/nano/twin.yaml
              (twin_nano.make_nano_twin, as local/make_twin.py)

Data: --utts synthetic utterances (tones in noise, --min-dur..--max-dur s)
with transcripts of --chars-per-s characters a second drawn from the model's
own vocabulary (single tokens of its tokenizer), written as a Kaldi data dir
and turned into the recipe's jsonl (jsonl.paraformer_lines, nano.nano_lines).
Batches: funasr's own dataloader (DataloaderMapStyle: the model config's
dataset, index and batch sampler, dataset.collator) at --batch-size
utterances, read before the clock starts (DataLoader workers overlap it in a
real run; the time it took is reported as data_s_per_batch).

One step is the inner loop of funasr's trainer: batch to the device,
loss = model(**batch), backward, gradient clipping (train_conf.grad_clip),
optimiser step (the config's optimiser and scheduler, the stage's lr), zero
grad; one batch per step (accum_grad 1), fp32 (no autocast; the LLM in fp32;
TF32 and cuDNN as funasr's train.py sets them), under the hooks local/train.py
installs around funasr's trainer (funasr_hooks.trainer_hooks: for Nano the
LLM's output layer only at labelled positions and the audio slots counted as
decoding counts them). --warmup steps untimed, then --runs times --steps timed
steps (the same batches each run, cycled); on cuda the clock is read after
torch.cuda.synchronize(). Reported, median of the runs: hours of audio per
hour (audio seconds of the timed steps / their wall seconds), seconds per
step, peak memory over the steps, the loaded model included
(torch.cuda.max_memory_allocated on cuda; ru_maxrss on cpu, its peak reset
through /proc/self/clear_refs where Linux allows it, else the whole
process's), trainable and total parameters. Afterwards one more step checks
that training changes the trainable weights and only them (max |delta| of
each kind).

  nice -n 10 python bench/train_throughput.py --size twin --utts 16 --batch-size 4 --steps 4 --runs 3
  python bench/train_throughput.py --device cuda --family paraformer nano --size twin published \\
      --utts 80 --batch-size 8 --warmup 2 --steps 10 --runs 3 --threads 4 --json tp.json
                                                                        # bench/gpu_check.sh
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from funasr_recipe.errors import DataError  # noqa: E402
from funasr_recipe.modeldir import FAMILIES, training_overrides  # noqa: E402
from funasr_recipe.twin_common import load_arch  # noqa: E402
from funasr_recipe.twin_nano import make_nano_twin  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_pipeline import build_model, make_audio  # noqa: E402  (one copy: bench/)

SIZES = ("twin", "published")
#: the recipe's stage whose settings each model trains with (conf/<family>/train.yaml)
STAGE = "stage1"
#: Fun-ASR-Nano at its published sizes, fp32 (as bench/nano_full_size.py builds it)
NANO_PUBLISHED = {"llm_conf": {"llm_dtype": "fp32"}}


# ----------------------------------------------------------------------------
# Models and settings

def build(family: str, size: str, root: Path) -> Path:
    """The model dir of ``family`` at ``size`` (random weights) under ``root``."""
    if family == "paraformer":
        return build_model(size, root / "paraformer")
    arch = load_arch(ROOT / "conf" / "nano" / "twin.yaml") if size == "twin" else NANO_PUBLISHED
    return make_nano_twin(root / "nano" / size, arch, seed=0)


def stage_settings(family: str, model_dir: Path, batch_size: int) -> dict[str, Any]:
    """local/train.py's settings for the stage (``common`` + ``stages: stage1:``
    of conf/<family>/train.yaml, the model dir's known fixes first), with the
    batch set to ``batch_size`` utterances read in this process, in one slice."""
    from funasr_recipe.training import load_train_conf, section_settings

    conf_path = ROOT / "conf" / family / "train.yaml"
    settings = section_settings(load_train_conf(conf_path), STAGE, conf_path)
    settings = training_overrides(model_dir, family, settings)
    settings = {k: v for k, v in settings.items() if not k.startswith("prompt.")}
    settings.update({"dataset_conf.batch_type": "example", "dataset_conf.batch_size": batch_size,
                     "dataset_conf.num_workers": 0, "dataset_conf.pin_memory": False,
                     "dataset_conf.data_split_num": 1})
    if family == "nano":
        settings["llm_conf.llm_dtype"] = "fp32"   # no mixed precision: cpu and cuda alike
    return settings


def nest(settings: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``: funasr's ``++a.b=1``
    as keyword arguments of AutoModel."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        *path, last = key.split(".")
        d = out
        for part in path:
            d = d.setdefault(part, {})
        d[last] = value
    return out


def load(model_dir: Path, settings: dict[str, Any], device: str, threads: int):
    """funasr's AutoModel with the stage's settings, the trainer's freeze_param applied."""
    from funasr import AutoModel

    am = AutoModel(model=str(model_dir), device=device, disable_update=True, ncpu=threads,
                   disable_pbar=True, **nest(settings))
    freeze = am.kwargs.get("freeze_param")
    if freeze:                        # as funasr.bin.train does
        prefixes = freeze.split(",") if isinstance(freeze, str) else list(freeze)
        for name, p in am.model.named_parameters():
            if any(name == t or name.startswith(t + ".") for t in prefixes):
                p.requires_grad = False
    return am


def parameter_counts(model) -> dict[str, list[int]]:
    """``{top-level module: [trainable, total]}``."""
    out: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        c = out.setdefault(name.split(".")[0], [0, 0])
        c[0] += p.numel() if p.requires_grad else 0
        c[1] += p.numel()
    return out


# ----------------------------------------------------------------------------
# Data

def vocabulary(family: str, am, model_dir: Path, n: int = 1000) -> list[str]:
    """CJK characters that are single tokens of the model's own tokenizer."""
    cjk = [chr(c) for c in range(0x4E00, 0x9FA6)]
    if family == "paraformer":
        known = set(am.kwargs["tokenizer"].token_list)
        chars = [c for c in cjk if c in known]
    else:
        from funasr_recipe.nano import load_tokenizer

        tok = load_tokenizer(model_dir)
        chars = []
        for c in cjk[:4 * n]:
            if len(tok.encode(c, add_special_tokens=False)) == 1:
                chars.append(c)
    if not chars:
        raise DataError(f"{model_dir}: no CJK character in the model's vocabulary")
    return chars[:n]


def write_data_dir(d: Path, items, chars: list[str], chars_per_s: float, seed: int = 0) -> None:
    """A Kaldi data dir (wav.scp, text) of ``items`` with random transcripts."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    texts = {it.key: "".join(rng.choice(chars, size=max(1, round(it.dur * chars_per_s))))
             for it in items}
    (d / "wav.scp").write_text("".join(f"{it.key} {it.wav}\n" for it in items), encoding="utf-8")
    (d / "text").write_text("".join(f"{k} {t}\n" for k, t in texts.items()), encoding="utf-8")


def write_jsonl(family: str, data_dir: Path, model_dir: Path, settings: dict[str, Any],
                out: Path) -> int:
    """The recipe's training jsonl of ``data_dir``; returns its number of lines."""
    if family == "paraformer":
        from funasr_recipe.jsonl import paraformer_lines

        lines = paraformer_lines(data_dir)
    else:
        from funasr_recipe.nano import load_prompt, nano_lines

        lines, dropped = nano_lines(data_dir, model_dir, load_prompt(ROOT / "conf" / "nano" /
                                                                     "train.yaml"),
                                    overrides=settings)
        if dropped:
            raise DataError(f"funasr would drop {len(dropped)} utterance(s), e.g. {dropped[0]}; "
                            f"change --min-dur/--max-dur")
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def funasr_batches(kw: dict, jsonl: Path, durations: dict[str, float]):
    """The trainer's training batches of ``jsonl`` (funasr's dataloader, epoch 0),
    each with its audio seconds, and the seconds it took to read them."""
    from funasr.register import tables

    conf = dict(kw, train_data_set_list=str(jsonl), valid_data_set_list=str(jsonl))
    loader_class = tables.dataloader_classes.get(
        conf["dataset_conf"].get("dataloader", "DataloaderMapStyle"))
    loader = loader_class(**conf)
    tr, _ = loader.build_iter(epoch=0)
    index_ds = tr.dataset.index_ds
    secs = []
    for idx in tr.batch_sampler:    # the order the DataLoader reads (seeded by the epoch)
        rows = [index_ds[i] for i in idx]
        secs.append(sum(durations[r.get("key") or r.get("source")] for r in rows))
    t = time.perf_counter()
    batches = [b for b in tr]
    took = time.perf_counter() - t
    if len(batches) != len(secs) or not batches:
        raise DataError(f"funasr's dataloader gave {len(batches)} batches, its sampler "
                        f"{len(secs)}")
    return list(zip(batches, secs)), took


# ----------------------------------------------------------------------------
# Training

class Stepper:
    """One optimiser step as funasr's Trainer.train_epoch takes it (accum_grad 1)."""

    def __init__(self, am):
        import torch
        from funasr.optimizers import optim_classes
        from funasr.schedulers import scheduler_classes

        kw = am.kwargs
        self.model = am.model
        self.device = kw["device"]
        train_conf = kw.get("train_conf") or {}
        self.grad_clip = float(train_conf.get("grad_clip", 10.0))
        self.grad_clip_type = float(train_conf.get("grad_clip_type", 2.0))
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.trainable:
            raise DataError("no trainable parameter: check the stage's freeze settings")
        self.optim_name = kw.get("optim", "adam")
        self.optim = optim_classes[self.optim_name](self.trainable, **(kw.get("optim_conf") or {}))
        self.scheduler = scheduler_classes[kw.get("scheduler", "warmuplr")](
            self.optim, **(kw.get("scheduler_conf") or {}))
        self.cuda = str(self.device).startswith("cuda")
        self.skipped = 0
        self.torch = torch
        self.model.train()

    def step(self, batch) -> float:
        """One step on ``batch``; returns its loss (nan if funasr would skip it)."""
        from funasr.train_utils.device_funcs import to_device

        torch = self.torch
        batch = to_device(batch, self.device, non_blocking=True)
        loss, _stats, _weight = self.model(**batch)
        loss.backward()
        value = loss.detach().cpu().item()      # the trainer's running loss: a sync each step
        if self.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.grad_clip,
                                                  norm_type=self.grad_clip_type)
            if not torch.isfinite(norm):        # funasr skips the update
                self.optim.zero_grad()
                self.skipped += 1
                return float("nan")
        self.optim.step()
        self.scheduler.step()
        self.optim.zero_grad(set_to_none=True)
        return value

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()


def update_check(stepper: Stepper, batch) -> dict[str, Any]:
    """One more step: max |delta| of the trainable and of the frozen weights."""
    named = list(stepper.model.named_parameters())
    before = {n: p.detach().to("cpu", copy=True) for n, p in named}
    loss = stepper.step(batch)
    stepper.sync()
    trained, frozen, changed = 0.0, 0.0, 0
    for n, p in named:
        d = float((p.detach().cpu() - before[n]).abs().max()) if p.numel() else 0.0
        if p.requires_grad:
            trained = max(trained, d)
            changed += d > 0
        else:
            frozen = max(frozen, d)
    n_frozen = sum(not p.requires_grad for _, p in named)
    return {"loss": loss, "trainable_max_abs_delta": trained,
            "frozen_max_abs_delta": frozen if n_frozen else None,
            "trainable_tensors_changed": changed,
            "trainable_tensors": sum(p.requires_grad for _, p in named),
            "frozen_tensors": n_frozen}


def _clear_peak_rss() -> bool:
    """Linux: reset this process's peak resident size to its current one."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def reset_peak_memory(cuda: bool) -> bool:
    """Start the peak memory count here (the model loaded, the batches read);
    False where it cannot be reset (then the peak is the whole process's)."""
    import torch

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        return True
    return _clear_peak_rss()


def memory_kind(cuda: bool, reset: bool) -> str:
    if cuda:
        return "torch.cuda.max_memory_allocated over the steps (the loaded model included)"
    return ("ru_maxrss over the steps (the loaded model included; peak reset through "
            "/proc/self/clear_refs)" if reset else "ru_maxrss of the whole process")


def peak_memory_gb(cuda: bool) -> float:
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 1024 ** 3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


@contextlib.contextmanager
def recipe_hooks(family: str, model_dir: Path, settings: dict[str, Any]):
    """The hooks local/train.py installs around funasr's trainer, its own wrappers
    of funasr's main, Trainer and checkpoint loading left out: what changes a
    step is Nano's training forward (the LLM's output layer at labelled
    positions) and audio slot count, and the fbank dither's random source."""
    import funasr.bin.train as ft
    from funasr_recipe.funasr_hooks import trainer_hooks
    from funasr_recipe.nano_slots import use_low_frame_rate

    slots = None
    if family == "nano":
        from funasr_recipe.nano import load_model_config
        slots = use_low_frame_rate(load_model_config(model_dir), settings)

    def same(x):
        return x

    with trainer_hooks(ft, main=same, trainer=same, load=same, cpu_ddp=False, nano_slots=slots):
        yield


def bench_one(family: str, size: str, args, tmp: Path, items) -> dict[str, Any]:
    """Build the model, train it, free it; one row of the table."""
    import torch

    t0 = time.perf_counter()
    model_dir = build(family, size, tmp / "models")
    built = time.perf_counter() - t0
    try:
        r = train_row(family, size, model_dir, args, items, tmp / f"{family}_{size}")
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
        gc.collect()
        if args.device == "cuda":
            torch.cuda.empty_cache()
    r["model_built_s"] = round(built, 1)
    return r


def train_row(family: str, size: str, model_dir: Path, args, items, work: Path) -> dict[str, Any]:
    """Load ``model_dir`` as the stage trains it, read the batches, time the steps."""
    import torch

    cuda = args.device == "cuda"
    settings = stage_settings(family, model_dir, args.batch_size)
    durations = {it.key: it.dur for it in items} | {it.wav: it.dur for it in items}
    with recipe_hooks(family, model_dir, settings):
        t0 = time.perf_counter()
        am = load(model_dir, settings, args.device, args.threads)
        loaded = time.perf_counter() - t0
        kw = am.kwargs          # the backend settings funasr's train.py makes
        torch.backends.cudnn.benchmark = kw.get("cudnn_benchmark", torch.backends.cudnn.benchmark)
        torch.backends.cudnn.deterministic = kw.get("cudnn_deterministic", True)
        torch.backends.cuda.matmul.allow_tf32 = kw.get("enable_tf32", True)
        counts = parameter_counts(am.model)
        write_data_dir(work / "data", items, vocabulary(family, am, model_dir), args.chars_per_s)
        n_lines = write_jsonl(family, work / "data", model_dir, settings, work / "train.jsonl")
        batches, data_s = funasr_batches(kw, work / "train.jsonl", durations)
        stepper = Stepper(am)
        reset = reset_peak_memory(cuda)
        for j in range(args.warmup):
            stepper.step(batches[j % len(batches)][0])
        stepper.sync()
        walls, audio, losses = [], 0.0, []
        for _ in range(args.runs):
            audio = sum(batches[j % len(batches)][1] for j in range(args.steps))
            stepper.sync()
            t = time.perf_counter()
            for j in range(args.steps):
                losses.append(stepper.step(batches[j % len(batches)][0]))
            stepper.sync()
            walls.append(time.perf_counter() - t)
        peak = peak_memory_gb(cuda)
        update = update_check(stepper, batches[0][0])
    thr = [audio / w for w in walls]
    return {
        "family": family, "size": size, "stage": STAGE, "device": args.device,
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "threads": args.threads, "parameters": sum(c[1] for c in counts.values()),
        "trainable_parameters": sum(c[0] for c in counts.values()),
        "parameters_by_module": counts, "optimizer": stepper.optim_name,
        "model_loaded_s": round(loaded, 1),
        "utterances": n_lines, "batch_size": args.batch_size, "batches": len(batches),
        "data_s_per_batch": round(data_s / len(batches), 4), "warmup_steps": args.warmup,
        "steps": args.steps, "runs": args.runs, "audio_s_per_run": round(audio, 3),
        "audio_s_per_step": round(audio / args.steps, 3),
        "wall_s": [round(w, 4) for w in walls],
        "s_per_step": round(statistics.median(walls) / args.steps, 4),
        "audio_h_per_h": round(statistics.median(thr), 2),
        "audio_h_per_h_runs": [round(x, 2) for x in thr],
        "peak_memory_gb": round(peak, 3),
        "peak_memory_kind": memory_kind(cuda, reset),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
        "losses": [round(x, 4) for x in losses], "skipped_steps": stepper.skipped,
        "update_check": update,
    }


COLUMNS = ("family", "size", "params (M)", "trainable (M)", "batch", "audio s/step", "s/step",
           "h audio / h", "peak mem (GB)")


def table(results: list[dict[str, Any]]) -> str:
    """The markdown table of the results, one row per family x size."""
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        rows.append("| " + " | ".join([
            r["family"], r["size"], f"{r['parameters'] / 1e6:.1f}",
            f"{r['trainable_parameters'] / 1e6:.2f}", str(r["batch_size"]),
            f"{r['audio_s_per_step']:.1f}", f"{r['s_per_step']:.3f}", f"{r['audio_h_per_h']:.1f}",
            f"{r['peak_memory_gb']:.2f}"]) + " |")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--family", nargs="+", choices=tuple(FAMILIES), default=list(FAMILIES))
    ap.add_argument("--size", nargs="+", choices=SIZES, default=["twin"])
    ap.add_argument("--utts", type=int, default=16, help="synthetic utterances")
    ap.add_argument("--min-dur", type=float, default=3.0)
    ap.add_argument("--max-dur", type=float, default=8.0)
    ap.add_argument("--chars-per-s", type=float, default=4.0,
                    help="transcript characters per second of audio")
    ap.add_argument("--batch-size", type=int, default=8, help="utterances per step")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before the runs")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("utts", "batch_size", "steps", "runs", "threads"):
        if getattr(args, name) < 1:
            print(f"ERROR: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if args.warmup < 0 or not 0 < args.min_dur <= args.max_dur:
        print("ERROR: --warmup must be >= 0 and 0 < --min-dur <= --max-dur", file=sys.stderr)
        return 2
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        print("ERROR: --device cuda: torch sees no CUDA device on this machine "
              "(run with --device cpu, or on a GPU machine: bench/gpu_check.sh)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": args.device, "torch": torch.__version__, "load_before": os.getloadavg(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"}}
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="train_throughput.") as tmp:
            tmp = Path(tmp)
            (tmp / "wav").mkdir()
            items = make_audio(tmp / "wav", args.utts, args.min_dur, args.max_dur)
            for family in args.family:
                for size in args.size:
                    r = bench_one(family, size, args, tmp, items)
                    results.append(r)
                    u = r["update_check"]
                    print(f"== {family} {size}: {r['parameters'] / 1e6:.1f} M parameters, "
                          f"{r['trainable_parameters'] / 1e6:.2f} M trainable ({r['optimizer']}), "
                          f"{r['batches']} batches of {args.batch_size}, {args.device}, "
                          f"{args.threads} thread(s): {r['audio_h_per_h']} h audio / h "
                          f"(runs {r['audio_h_per_h_runs']}), {r['s_per_step']} s/step; "
                          f"update: trainable max|d| {u['trainable_max_abs_delta']:.3g}, "
                          f"frozen max|d| {u['frozen_max_abs_delta']}", flush=True)
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    out["device_name"] = results[0]["device_name"] if results else None
    out["load_after"] = os.getloadavg()
    out["results"] = results
    out["table"] = table(results)
    print(out["table"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
