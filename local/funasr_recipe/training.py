"""Running funasr's trainer for one recipe stage, with the checks funasr leaves out.

funasr's trainer (``funasr.bin.train``) is run in this process, through its
own Hydra entry point, with three additions that change nothing it computes:

* **chain check**: the initial checkpoint must exist (funasr only prints a
  line and trains from random weights), and right after funasr loads it,
  every weight the model shares with the checkpoint must equal it (funasr
  only logs mismatches). A report with parameter checksums is written to
  ``OUT/chain.json``;
* **extra validation sets**: after funasr's own validation (the domain valid
  set, which selects and averages checkpoints), the model's loss and accuracy
  on each extra set (the general valid set, to watch forgetting) are logged
  and appended to ``OUT/valid_<name>.tsv``;
* **skip and resume**: a stage whose stamp (:mod:`.stamp`) matches the same
  inputs is skipped; otherwise funasr's own resume continues from
  ``OUT/model.pt``. A ``model.pt`` torn by a crash during its save is set
  aside and the run resumes from the newest readable ``model.pt.epN``
  (:func:`recover_torn_checkpoint`); the random-number states saved with each
  epoch's checkpoint are restored on resume, so an interrupted and resumed
  stage trains exactly as an uninterrupted one (:func:`save_rng_state`).

The training settings come from ``conf/<family>/train.yaml`` as funasr
overrides (``key: value`` -> ``++key=value``), one source of truth.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import funasr_hooks, stamp
from .config import load_yaml
from .atomic import atomic_write
from .checkpoint import load_state, readable as readable_checkpoint
from .errors import DataError, RunError
from .metrics import MAIN_SET, MetricsFile, Row, finite, metrics_path

log = logging.getLogger(__name__)

# Parameters a stage may add that its initial checkpoint does not have.
NEW_PARAM_MARKERS = ("lora_A", "lora_B")


class ChainError(DataError):
    """The checkpoint chain between stages is broken."""


# ----------------------------------------------------------------------------
# Settings

def load_train_conf(path: str | Path) -> dict[str, Any]:
    cfg = load_yaml(path)
    for section in ("common", "stages"):
        if not isinstance(cfg.get(section), dict):
            raise DataError(f"{path}: needs a '{section}' mapping")
    return cfg


def section_settings(cfg: dict, section: str, path: str | Path = "train.yaml") -> dict[str, Any]:
    """``common`` updated by the named section (``pretrain`` or a stage name)."""
    if section == "pretrain":
        own = cfg.get("pretrain")
    else:
        own = cfg["stages"].get(section)
    if not isinstance(own, dict):
        raise DataError(f"{path}: no settings for '{section}' (have: pretrain, "
                        f"{', '.join(cfg['stages'])})")
    merged = dict(cfg["common"])
    merged.update(own)
    return merged


def check_plan(plan_path: str | Path, conf_path: str | Path,
               pretrain: bool, sets: Iterable[str] = ()) -> list[str]:
    """The stage plan's stage names, once it is known that the train config has
    a section for each of them (and ``pretrain`` when the recipe pre-trains its
    own base model), and that each ``SECTION:KEY=VALUE`` item of ``sets``
    (run.sh ``--train-args``) names one of its sections: checked at the start of
    a run, not at stage 5."""
    from .config import parse_overrides
    from .mixing import load_plan

    names = [s.name for s in load_plan(plan_path).stages]
    cfg = load_train_conf(conf_path)
    missing = [n for n in names if not isinstance(cfg["stages"].get(n), dict)]
    if missing:
        raise DataError(f"{conf_path}: no section under 'stages:' for {', '.join(missing)} "
                        f"of the stage plan {plan_path} (has: "
                        f"{', '.join(cfg['stages']) or 'none'}); add them, or pass the "
                        f"train config written for this plan (--train-conf)")
    if pretrain and not isinstance(cfg.get("pretrain"), dict):
        raise DataError(f"{conf_path}: no 'pretrain' section, which the mini recipe's own "
                        f"base model needs; add one or pass --base-model")
    parse_overrides(sets, "", ["pretrain", *cfg["stages"]], what="--train-args")
    return names


def format_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(format_value(x) for x in v) + "]"
    return str(v)


def overrides(settings: dict[str, Any]) -> list[str]:
    """``{"a.b": 1}`` -> ``["++a.b=1"]`` in a stable order."""
    return [f"++{k}={format_value(v)}" for k, v in settings.items()]


def avg_checkpoint_name(settings: dict[str, Any]) -> str:
    """The file funasr's averaging writes: ``model.pt.avg<avg_nbest_model>``."""
    return f"model.pt.avg{settings.get('train_conf.avg_nbest_model', 10)}"


# ----------------------------------------------------------------------------
# Checkpoints

def state_checksum(state: dict, keys: Iterable[str] | None = None) -> str:
    """sha256 over names, shapes, dtypes and bytes of the given tensors."""
    import torch

    h = hashlib.sha256()
    for k in sorted(keys if keys is not None else state):
        t = state[k]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def compare_loaded(model_state: dict, ckpt_state: dict,
                   new_markers: tuple[str, ...] = NEW_PARAM_MARKERS) -> dict[str, Any]:
    """What a load left behind: shared keys that differ, model keys not in the checkpoint."""
    import torch

    shared = [k for k in model_state if k in ckpt_state]
    differ = [k for k in shared
              if tuple(model_state[k].shape) != tuple(ckpt_state[k].shape)
              or not torch.equal(model_state[k].cpu(), ckpt_state[k].cpu().to(model_state[k].dtype))]
    absent = [k for k in model_state if k not in ckpt_state]
    unexpected_absent = [k for k in absent if not any(m in k for m in new_markers)]
    return {"shared": len(shared), "differ": differ, "new": [k for k in absent
                                                             if k not in unexpected_absent],
            "absent": unexpected_absent,
            "unused": [k for k in ckpt_state if k not in model_state],
            "checksum_model": state_checksum(model_state, shared),
            "checksum_ckpt": state_checksum(ckpt_state, shared)}


def check_init(init: str | Path) -> Path:
    p = Path(init)
    if not p.is_file():
        raise ChainError(f"initial checkpoint {p} does not exist: the previous stage did not "
                         f"finish (see its log), or the path is wrong. funasr would only print "
                         f"a line and train from random weights.")
    return p.resolve()


# ----------------------------------------------------------------------------
# Hooks into funasr's trainer
#
# One run's state (the init checkpoint to verify, the extra valid sets, funasr's
# settings, the chain report) lives in a dict made by run_funasr_train and
# handed to the hooks below, which funasr_hooks.trainer_hooks installs for that
# run only: nothing is kept between runs.

def _verify_after_load(ctx: dict[str, Any]) -> Callable[[Callable], Callable]:
    def wrap(orig):
        def load_pretrained_model(*args, **kwargs):
            result = orig(*args, **kwargs)
            model = kwargs.get("model", args[1] if len(args) > 1 else None)
            path = kwargs.get("path", args[0] if args else None)
            expect = ctx.get("expect_init")
            if expect is not None and model is not None and path is not None:
                check_loaded(ctx, model, path, expect)
            return result
        return load_pretrained_model
    return wrap


def check_loaded(ctx: dict[str, Any], model, path, expect) -> None:
    if Path(path).resolve() != Path(expect):
        raise ChainError(f"funasr loaded {path}, but this stage must start from {expect}")
    report = compare_loaded(model.state_dict(), load_state(path))
    report["init"] = str(expect)
    ctx["chain_report"] = report
    if report["differ"] or report["absent"] or report["shared"] == 0:
        bad = (report["differ"] + report["absent"])[:5]
        raise ChainError(f"the model did not load {path} faithfully: "
                         f"{len(report['differ'])} weight(s) differ from it and "
                         f"{len(report['absent'])} are missing from it (e.g. "
                         f"{', '.join(bad) or 'no shared weights at all'}); the "
                         f"checkpoint does not belong to this model config")
    if report["unused"]:
        raise ChainError(f"{path} has {len(report['unused'])} weight(s) this stage's "
                         f"model does not (e.g. {report['unused'][0]}): they would be "
                         f"silently dropped. A LoRA checkpoint needs use_lora in the "
                         f"next stage too, or merge it first (local/merge_lora.py)")
    log.info("chain check: %d weights loaded from %s match it exactly (checksum %s)",
             report["shared"], path, report["checksum_ckpt"][:16])


def train_row(trainer, base_log: Callable, args: tuple, kwargs: dict) -> Row | None:
    """The metrics row of one call of funasr's ``Trainer.log`` (either trainer's
    signature), for the training steps funasr itself writes a log line for."""
    import inspect

    bound = inspect.signature(base_log).bind(trainer, *args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    tag = a.get("tag", "train")
    if "loss_dict" in a:  # funasr's DeepSpeed trainer
        d = a["loss_dict"] or {}
        epoch, batch_idx, loss, lr = d.get("epoch"), d.get("batch_idx"), d.get("loss"), d.get("lr")
        stats, step = d.get("stats") or {}, d.get("batch_total", trainer.batch_total)
    else:
        epoch, batch_idx, loss, lr = a.get("epoch"), a.get("batch_idx"), a.get("loss"), a.get("lr")
        stats, step = a.get("stats") or {}, trainer.batch_total
    if tag != "train" or epoch is None or batch_idx is None or \
            (batch_idx + 1) % trainer.log_interval != 0:
        return None
    return Row(int(step), int(epoch) + 1, "train", finite(loss), finite(stats.get("acc")),
               finite(trainer.train_loss_avg), finite(trainer.train_acc_avg), finite(lr))


def _trainer_class(ctx: dict[str, Any]) -> Callable[[type], type]:
    def make(base):
        class RecipeTrainer(base):
            """funasr's Trainer, also reporting loss/acc on the extra validation sets
            and recording every metric it logs in OUT/metrics.tsv."""

            # funasr's DeepSpeed entry sets ``trainer.device = LOCAL_RANK`` (a CUDA
            # index); on a machine without CUDA, DeepSpeed's CPU accelerator holds
            # the model and the batches must go to the CPU too.
            @property
            def device(self):
                return self._recipe_device

            @device.setter
            def device(self, value):
                import torch
                if isinstance(value, int) and not torch.cuda.is_available():
                    value = "cpu"
                self._recipe_device = value

            @property
            def recipe_metrics(self) -> MetricsFile:
                if getattr(self, "_recipe_metrics", None) is None:
                    self._recipe_metrics = MetricsFile(metrics_path(self.output_dir, self.rank))
                return self._recipe_metrics

            def save_checkpoint(self, epoch, *args, **kwargs):
                super().save_checkpoint(epoch, *args, **kwargs)
                if kwargs.get("step") is None:  # an epoch's checkpoint: its random states
                    save_rng_state(Path(self.output_dir), epoch, self.rank)

            def resume_checkpoint(self, *args, **kwargs):
                super().resume_checkpoint(*args, **kwargs)
                # rows after the checkpoint resumed from belong to an interrupted epoch
                dropped = self.recipe_metrics.keep_until(int(getattr(self, "batch_total", 0)))
                if dropped:
                    logging.info(f"{self.recipe_metrics.path}: {dropped} row(s) after the "
                                 f"checkpoint resumed from dropped (they are made again)")
                epoch = getattr(self, "start_epoch", 0)
                if not self.resume or not epoch:
                    return
                if restore_rng_state(Path(self.output_dir), epoch, self.rank):
                    logging.info(f"resumed after epoch {epoch} with the random states saved then")
                else:
                    logging.warning(f"no random states saved after epoch {epoch} "
                                    f"({rng_file(Path(self.output_dir), epoch, self.rank)}): the "
                                    f"resumed run will not repeat an uninterrupted one exactly")

            def log(self, *args, **kwargs):
                super().log(*args, **kwargs)
                row = train_row(self, base.log, args, kwargs)
                if row is not None:
                    self.recipe_metrics.append(row)

            def train_epoch(self, *args, **kwargs):
                if not getattr(self, "_recipe_started", False):
                    self._recipe_started = True
                    if int(getattr(self, "batch_total", 0)) == 0:  # not resumed
                        self.validate_start(kwargs.get("model"), kwargs.get("dataloader_val"))
                return super().train_epoch(*args, **kwargs)

            def validate_start(self, model, dataloader_val) -> None:
                """Every valid set before the first step: the stage's starting point
                (epoch 0 in metrics.tsv), which the forgetting budget measures from."""
                sets = {MAIN_SET: ctx["kwargs"].get("valid_data_set_list")}
                sets.update(ctx.get("extra_valid", {}))
                for name, jsonl in sets.items():
                    if jsonl:
                        self.validate_extra(model, dataloader_val, name, jsonl, 0, None, "")

            def validate_extra(self, model, dataloader_val, name, jsonl, epoch, writer,
                               checkpoint) -> None:
                loss, acc, n = evaluate(model, dataloader_val.dataset, jsonl,
                                        ctx["kwargs"].get("dataset_conf", {}), self.device,
                                        self.rank, self.world_size)
                self.recipe_metrics.append(Row(int(getattr(self, "batch_total", 0)), epoch,
                                               name, finite(loss), finite(acc),
                                               checkpoint=checkpoint))
                if self.rank != 0 or name == MAIN_SET:
                    return
                logging.info(f"extra valid {name}, epoch: {epoch}, loss: {loss:.4f}, "
                             f"acc: {acc:.4f}, utterances: {n}")
                if epoch == 0:
                    return
                if writer is not None:
                    writer.add_scalar(f"valid_{name}/loss", loss, epoch)
                    writer.add_scalar(f"valid_{name}/acc", acc, epoch)
                tsv = Path(self.output_dir) / f"valid_{name}.tsv"
                new = not tsv.exists()
                with open(tsv, "a", encoding="utf-8") as f:
                    if new:
                        f.write("epoch\tloss\tacc\tutterances\n")
                    f.write(f"{epoch}\t{loss:.6f}\t{acc:.6f}\t{n}\n")

            def validate_epoch(self, model=None, dataloader_val=None, epoch=None, writer=None,
                               **kwargs):
                super().validate_epoch(model=model, dataloader_val=dataloader_val, epoch=epoch,
                                       writer=writer, **kwargs)
                in_epoch = kwargs.get("step_in_epoch")
                ckpt = f"model.pt.ep{epoch}" + ("" if in_epoch is None else f".{in_epoch}")
                self.recipe_metrics.append(Row(
                    int(getattr(self, "batch_total", 0)),
                    epoch if in_epoch is None else epoch + 1, MAIN_SET,
                    finite(getattr(self, "val_loss_step_or_epoch", {}).get(ckpt)),
                    finite(getattr(self, "val_acc_step_or_epoch", {}).get(ckpt)),
                    checkpoint=ckpt))
                if in_epoch is not None:
                    return
                for name, jsonl in ctx.get("extra_valid", {}).items():
                    self.validate_extra(model, dataloader_val, name, jsonl, epoch, writer, ckpt)
        return RecipeTrainer
    return make


@contextlib.contextmanager
def quiet_frontend(frontend) -> Iterator[None]:
    """The frontend without dither for the duration: an evaluation computes
    the same features every time (funasr's frontend dithers whenever it is
    used, its training flag aside)."""
    dither = getattr(frontend, "dither", None)
    if dither:
        frontend.dither = 0.0
    try:
        yield
    finally:
        if dither:
            frontend.dither = dither


@contextlib.contextmanager
def kept_random_state() -> Iterator[None]:
    """Python's, numpy's and torch's random states put back afterwards: an
    evaluation between epochs leaves training exactly as it would be without it."""
    import random

    import numpy as np
    import torch

    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def evaluate(model, like_dataset, jsonl: str, dataset_conf: dict, device, rank: int = 0,
             world_size: int = 1) -> tuple[float, float, int]:
    """Weighted mean loss and accuracy of ``model`` on ``jsonl``, as funasr validates
    (without dither, and leaving the random states as they were).

    In a DDP job every rank evaluates every ``world_size``-th batch (its
    shard) with the unwrapped model (DDP's forward would wait for the other
    ranks) and the sums are reduced over the ranks, so each rank returns the
    same numbers: those of the whole set.
    """
    import torch
    from funasr.train_utils.device_funcs import to_device

    net = model
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        net = model.module
    conf = {k: v for k, v in dict(dataset_conf).items()}
    ds = type(like_dataset)(jsonl, frontend=like_dataset.frontend,
                            tokenizer=like_dataset.tokenizer, is_training=False, **conf)
    bs = int(conf.get("batch_size", 8)) if conf.get("batch_type", "example") == "example" else 8
    # whole batches of the one-process order dealt to the ranks: each batch is the
    # same as in a one-process evaluation, so the reduced sums are the same too
    batches = [list(range(b, min(b + bs, len(ds)))) for b in range(0, len(ds), bs)]
    shard = torch.utils.data.Subset(ds, [i for b in batches[rank::world_size] for i in b])
    loader = torch.utils.data.DataLoader(shard, batch_size=bs, shuffle=False,
                                         collate_fn=ds.collator, num_workers=0)
    was_training = net.training
    net.eval()
    tot_loss = tot_acc = tot_w = acc_w = 0.0
    with torch.no_grad(), quiet_frontend(like_dataset.frontend), kept_random_state():
        for batch in loader:
            batch = to_device(batch, device)
            loss, stats, weight = net(**batch)
            w = float(weight.sum()) if hasattr(weight, "sum") else float(weight)
            tot_loss += float(loss) * w
            acc = finite(stats.get("acc"))
            if acc is not None:
                tot_acc += acc * w
                acc_w += w
            tot_w += w
    if was_training:
        net.train()
    if world_size > 1:
        import torch.distributed as dist
        t = torch.tensor([tot_loss, tot_acc, tot_w, acc_w], dtype=torch.float64)
        if str(device).startswith("cuda"):
            t = t.to(device)
        dist.all_reduce(t)
        tot_loss, tot_acc, tot_w, acc_w = (float(x) for x in t.cpu())
    n = len(ds)
    if not tot_w:
        return math.nan, math.nan, n
    return tot_loss / tot_w, (tot_acc / acc_w if acc_w else math.nan), n


def run_funasr_train(args: list[str], expect_init: Path | None,
                     extra_valid: dict[str, str], deepspeed: bool = False,
                     nano_slots: bool | None = None) -> dict[str, Any]:
    """Run ``funasr.bin.train`` with ``args`` (Hydra overrides) in this process.

    Under torchrun (``WORLD_SIZE > 1``) this is one rank of a DDP job; without
    CUDA it runs over gloo. Every hook into funasr's trainer is installed for the
    run and restored after it (:mod:`funasr_recipe.funasr_hooks`). With ``deepspeed``
    it is funasr's DeepSpeed entry, ``funasr.bin.train_ds`` (the ZeRO stage and
    precision come from the ``++deepspeed_config`` file in ``args``). ``nano_slots``:
    a Fun-ASR-Nano run's ``use_low_frame_rate`` (:mod:`funasr_recipe.nano_slots`).
    """
    import importlib

    import torch
    ft = importlib.import_module("funasr.bin.train_ds" if deepspeed else "funasr.bin.train")

    ctx: dict[str, Any] = {"expect_init": str(expect_init) if expect_init else None,
                           "extra_valid": dict(extra_valid), "kwargs": {}}

    def wrap_main(orig_main):
        def main(**kwargs):
            ctx["kwargs"] = kwargs
            return orig_main(**kwargs)
        return main

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    argv = sys.argv
    sys.argv = ["funasr-train", *args]
    try:
        with funasr_hooks.trainer_hooks(ft, main=wrap_main, trainer=_trainer_class(ctx),
                                        load=_verify_after_load(ctx),
                                        cpu_ddp=distributed and not torch.cuda.is_available(),
                                        nano_slots=nano_slots):
            ft.main_hydra()
    except SystemExit as e:
        if e.code not in (0, None):
            raise RunError(f"funasr's trainer exited with code {e.code}; see the messages "
                           f"above") from None
    finally:
        sys.argv = argv
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if expect_init is not None and "chain_report" not in ctx:
        raise ChainError(f"funasr never loaded the initial checkpoint {expect_init}")
    return ctx.get("chain_report", {})


WORKER_ARGS = "--ddp-worker-args"


def worker_argv(argv: list[str]) -> list[str]:
    """A tool's own arguments; a DDP rank started by :func:`run_ddp` gets them
    from the file named after :data:`WORKER_ARGS`."""
    if len(argv) == 2 and argv[0] == WORKER_ARGS:
        return json.loads(Path(argv[1]).read_text())
    return list(argv)


def run_ddp(script: Path, argv: list[str], out: Path, nproc: int, num_nodes: int,
            launcher: str, threads: int) -> dict:
    """Run ``script`` with ``argv`` as ranks under torchrun; rank 0's chain report.

    Each rank runs the script with ``argv + --worker-report FILE`` (the script
    trains as one rank and rank 0 writes its chain report to FILE).
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(dir=out, prefix=".ddp.") as tmp:
        report = Path(tmp) / "chain_report.json"
        # the ranks get their arguments through a file: torchrun's own parser
        # would take abbreviations of its options (--nproc) from the script's
        args_file = Path(tmp) / "args.json"
        args_file.write_text(json.dumps([*argv, "--worker-report", str(report)]))
        cmd = torchrun_command([str(Path(script).resolve()), WORKER_ARGS, str(args_file)],
                               nproc, num_nodes, launcher)
        log.info("DDP: %s", " ".join(cmd))
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, threads // nproc)))
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            raise RunError(f"torchrun exited with code {rc}; see each rank's messages above")
        if not report.is_file():
            raise RunError("torchrun finished but rank 0 wrote no chain report")
        return json.loads(report.read_text())


def check_deepspeed_config(path: Path) -> Path:
    """A DeepSpeed config funasr's DeepSpeed trainer can use; DeepSpeed importable.

    funasr's DeepSpeed trainer saves ``model.module.state_dict()`` into every
    checkpoint directory and averages those: under ZeRO stage 3 that holds
    only each rank's shard, so stage 3 is refused here rather than producing an
    averaged model of empty tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--deepspeed {path}: no such file (see conf/deepspeed/)")
    try:
        conf = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    stage = int((conf.get("zero_optimization") or {}).get("stage", 0))
    if stage not in (0, 1, 2):
        raise DataError(f"{path}: zero_optimization.stage {stage}: funasr's DeepSpeed trainer "
                        f"averages full state dicts, which ZeRO-3 does not keep; use stage 1 "
                        f"or 2")
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise RunError("DeepSpeed is not installed in this environment: install it with "
                       "'.venv/bin/pip install -e .[deepspeed]' (it takes the installed "
                       "torch)") from None
    return path.resolve()


def torchrun_command(script_args: list[str], nproc: int, num_nodes: int = 1,
                     launcher: str = "standalone", env: dict[str, str] | None = None,
                     hostnames: Callable[[str], list[str]] | None = None) -> list[str]:
    """The command starting ``nproc`` ranks of ``script_args`` on each of ``num_nodes``.

    ``standalone``: ``torchrun --standalone`` on this machine (one node).
    ``srun``: inside a Slurm job, one ``torchrun`` per node started by ``srun``,
    meeting through c10d rendezvous on the job's first node (port from the job
    id, so two jobs sharing a node do not collide); the Slurm idiom for
    multi-node PyTorch.
    """
    import subprocess

    env = dict(os.environ if env is None else env)
    run = [sys.executable, "-m", "torch.distributed.run"]
    if launcher == "standalone":
        if num_nodes != 1:
            raise DataError(f"--num-nodes {num_nodes} needs the srun launcher (a Slurm job)")
        return [*run, "--standalone", f"--nproc-per-node={nproc}", *script_args]
    if launcher != "srun":
        raise DataError(f"unknown launcher {launcher!r} (standalone, srun)")
    job, nodelist = env.get("SLURM_JOB_ID"), env.get("SLURM_JOB_NODELIST")
    if not job or not nodelist:
        raise DataError("multi-node training (--num-nodes N, --launcher srun) runs inside a "
                        "Slurm job: set cmd_backend=slurm in cmd.sh and run run.sh "
                        "--num-nodes N, which submits it with --nodes=N")
    if hostnames is None:
        def hostnames(spec: str) -> list[str]:
            return subprocess.run(["scontrol", "show", "hostnames", spec], check=True,
                                  capture_output=True, text=True).stdout.split()
    nodes = hostnames(nodelist)
    if len(nodes) < num_nodes:
        raise DataError(f"--num-nodes {num_nodes}, but Slurm job {job} has {len(nodes)} "
                        f"node(s) ({nodelist}): submit it with --num-nodes {num_nodes}")
    port = 20000 + int(job) % 30000
    srun = ["srun", f"--nodes={num_nodes}", f"--ntasks={num_nodes}", "--ntasks-per-node=1",
            "--kill-on-bad-exit=1"]
    if env.get("SLURM_CPUS_PER_TASK"):  # srun does not inherit sbatch's --cpus-per-task
        srun.append(f"--cpus-per-task={env['SLURM_CPUS_PER_TASK']}")
    cmd = [*srun, *run, f"--nnodes={num_nodes}", f"--nproc-per-node={nproc}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint={nodes[0]}:{port}",
           f"--rdzv-id={job}", *script_args]
    return cmd


# funasr overrides that do not change what a stage computes (thread count).
_NOT_IN_SIGNATURE = ("++ncpu=",)
# Options of the recipe's own (not funasr's) in a stage's signature: the forgetting budget.
BUDGET_OPT = "recipe.budget."
# ... and those a run may change and still be continued (more epochs, another
# budget: the epochs trained stay the same, only the choice among them changes).
_NOT_IN_IDENTITY = ("++train_conf.max_epoch=", BUDGET_OPT)


def stage_signature(model_dir: Path, init: Path | None, train: Path, valid: Path,
                    args: list[str], extra_valid: Iterable[str | Path] = (),
                    train_shards: Iterable[str | Path] = ()) -> dict[str, Any]:
    """A stage's inputs (model dir, initial checkpoint, data, by content; with
    a shard list, the shards it names too) and options (funasr's overrides),
    as :mod:`.stamp` records them."""
    inputs = [str(model_dir), *([str(init)] if init else []), str(train),
              *map(str, train_shards), str(valid), *map(str, extra_valid)]
    return {"inputs": inputs, "opts": [a for a in args if not a.startswith(_NOT_IN_SIGNATURE)]}


def stage_changes(out: Path, signature: dict[str, Any], checkpoint: str) -> list[str]:
    """Why the stage in ``out`` must run (empty: complete for the same inputs)."""
    return stamp.check(out, signature["inputs"], signature["opts"], [out / checkpoint])


def is_complete(out: Path, signature: dict[str, Any], checkpoint: str) -> bool:
    return not stage_changes(out, signature, checkpoint)


def mark_complete(out: Path, signature: dict[str, Any], checkpoint: str) -> None:
    stamp.mark(out, signature["inputs"], signature["opts"],
               info={"checkpoint": str((out / checkpoint).resolve())})


def run_identity(signature: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs in one output dir the same run: everything but the
    number of epochs (raising it continues a finished or interrupted run)."""
    return dict(signature, opts=[a for a in signature["opts"]
                                 if not a.startswith(_NOT_IN_IDENTITY)])


def set_aside_other_run(out: Path, signature: dict[str, Any]) -> Path | None:
    """Make ``out`` hold this run's checkpoints only, and record its identity.

    funasr resumes from whatever ``out/model.pt`` holds, optimizer and
    scheduler included, so a run with another init, data or settings (a new
    learning rate, say) would silently continue the old one with the old
    settings. Such a dir is renamed to ``<out>.prev-<date>`` (nothing is
    deleted), which is returned, and training starts from the beginning.
    """
    ident = run_identity(signature)
    prev = None
    if out.is_dir() and any(out.iterdir()):
        why = stamp.check(out, ident["inputs"], ident["opts"], name="run")
        if why:
            prev = out.with_name(f"{out.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}")
            out.rename(prev)
            log.warning("%s held a run with other inputs or settings (%s): set aside as %s; "
                        "training from the start", out, "; ".join(why[:2]), prev)
    out.mkdir(parents=True, exist_ok=True)
    stamp.mark(out, ident["inputs"], ident["opts"], name="run")
    return prev


# ----------------------------------------------------------------------------
# Torn checkpoints and reproducible resume

def _epoch_of(name: str) -> int | None:
    m = re.fullmatch(r"model\.pt\.ep(\d+)", name)
    return int(m.group(1)) if m else None


def recover_torn_checkpoint(out: Path) -> str | None:
    """Before funasr resumes from ``out/model.pt``: if that file cannot be read
    (a crash during funasr's plain ``torch.save``), rename it (and any
    unreadable ``model.pt.epN``) to ``*.torn-<date>``, never deleting, and put
    a copy of the newest readable ``model.pt.epN`` in its place (funasr saves
    the same state to both), or leave no ``model.pt`` so the stage starts over.
    Returns what was done, in words, or None when nothing was wrong."""
    import shutil

    latest = out / "model.pt"
    if not latest.is_file() or readable_checkpoint(latest):
        return None  # absent, a DeepSpeed checkpoint dir, or fine
    stamp_ = time.strftime("%Y%m%d-%H%M%S")
    torn = latest.with_name(f"model.pt.torn-{stamp_}")
    latest.rename(torn)
    done = [f"{latest} is unreadable (torn by a crash during its save): set aside as {torn}"]
    epochs = sorted(((e, p) for p in out.iterdir()
                     if p.is_file() and (e := _epoch_of(p.name)) is not None), reverse=True)
    for epoch, p in epochs:
        if readable_checkpoint(p):
            tmp = out / f".model.pt.{stamp_}.tmp"
            shutil.copyfile(p, tmp)
            os.replace(tmp, latest)
            done.append(f"resuming from {p.name} (epoch {epoch}), the newest readable one")
            break
        bad = p.with_name(f"{p.name}.torn-{stamp_}")
        p.rename(bad)
        done.append(f"{p.name} is unreadable too: set aside as {bad.name}")
    else:
        done.append("no readable model.pt.epN: training from the start")
    return "; ".join(done)


RNG_DIR = "rng"


def rng_file(out: Path, epoch: int, rank: int) -> Path:
    return Path(out) / RNG_DIR / f"ep{epoch}.rank{rank}.json"


def save_rng_state(out: Path, epoch: int, rank: int) -> Path:
    """Save this process's python, numpy and torch (CPU and CUDA) random states
    as they are after epoch ``epoch``'s checkpoint (JSON: nothing to unpickle)."""
    import random

    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {"python": [random.getstate()[0], list(random.getstate()[1]),
                        random.getstate()[2]],
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
             "torch": torch.get_rng_state().tolist(),
             "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()]
             if torch.cuda.is_available() else []}
    path = rng_file(out, epoch, rank)
    with atomic_write(path) as f:
        json.dump(state, f)
    return path


def restore_rng_state(out: Path, epoch: int, rank: int) -> bool:
    """Restore the states :func:`save_rng_state` saved after ``epoch``; False if none."""
    import random

    import numpy as np
    import torch

    path = rng_file(out, epoch, rank)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npv = state["numpy"]
    np.random.set_state((npv[0], np.array(npv[1], dtype=np.uint32), *npv[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    return True


def write_chain(out: Path, report: dict[str, Any], checkpoint: str) -> None:
    final = out / checkpoint
    report = dict(report, final=str(final.resolve()),
                  checksum_final=state_checksum(load_state(final)) if final.is_file() else None)
    with atomic_write(out / "chain.json") as f:
        json.dump(report, f, ensure_ascii=False, indent=1)


__all__ = ["ChainError", "load_train_conf", "check_plan", "section_settings", "overrides", "avg_checkpoint_name",
           "load_state", "state_checksum", "compare_loaded", "check_init", "run_funasr_train",
           "evaluate", "train_row", "BUDGET_OPT", "WORKER_ARGS", "worker_argv", "run_ddp",
           "check_deepspeed_config", "torchrun_command",
           "stage_signature", "stage_changes", "is_complete", "mark_complete", "run_identity",
           "set_aside_other_run", "readable_checkpoint", "recover_torn_checkpoint",
           "save_rng_state", "restore_rng_state", "write_chain"]
