#!/usr/bin/env python3
"""Train one stage with funasr's trainer: pre-training (twin) or a fine-tuning stage.

Settings come from the family's train config (conf/<family>/train.yaml):
'common' updated by the section named with --section ('pretrain' or a stage
name from conf/stages.yaml), each 'key: value' passed to funasr as ++key=value.

The stage starts from --init (default: MODEL_DIR/model.pt) through funasr's
top-level ++init_param, and fails, naming the file, if it is missing or if the
weights funasr loaded differ from it (report: OUT/chain.json). After each
epoch the loss on every --extra-valid set is logged (OUT/valid_NAME.tsv).
The chosen checkpoint (funasr's average of the best epochs on --valid) is
linked as OUT/final.pt; with --plan and a general_budget for the stage, the
best epochs on --valid whose general valid loss stays within the budget
(funasr_recipe/budget.py; OUT/budget.json says which and why). Every metric
the trainer logs is recorded in OUT/metrics.tsv. A finished stage with the same inputs (model dir,
checkpoint, data, settings; funasr_recipe/stamp.py) is skipped; an interrupted
one resumes from OUT/model.pt with the random states saved with it, or, if
that file was torn by a crash, from the newest readable OUT/model.pt.epN. A
dir holding a run with other inputs or settings is set aside as
OUT.prev-<date>.

With --nproc N > 1 the trainer runs as N processes under torchrun (DDP): one
per GPU with --device cuda (nccl), or over gloo on CPUs, which is how the
multi-process path is tested on machines without a GPU. With --deepspeed
FILE (conf/deepspeed/) funasr's DeepSpeed trainer runs instead, under torchrun
even for one process; its checkpoints are directories, and the stage's chosen
model is still funasr's averaged file (OUT/final.pt), which is what the next
stage and decoding read.

Example:
  local/train.py --conf conf/paraformer/train.yaml --section stage1 \\
      --model-dir exp/paraformer/pretrain --init exp/paraformer/pretrain/final.pt \\
      --train dump/paraformer/stage1_train.jsonl --valid dump/paraformer/domain_valid.jsonl \\
      --extra-valid general=dump/paraformer/general_valid.jsonl --out exp/paraformer/stage1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from funasr_recipe import cli
from funasr_recipe.budget import CHECKPOINT as BUDGET_CHECKPOINT
from funasr_recipe.budget import apply_budget, budget_lines, stage_budget
from funasr_recipe.config import parse_overrides
from funasr_recipe.errors import DataError
from funasr_recipe.jsonl import SPLIT_KEY, read_shard_list
from funasr_recipe.modeldir import (FAMILIES, check_model_dir, inspect_model_dir,
                                    training_overrides)
from funasr_recipe.nano_slots import use_low_frame_rate
from funasr_recipe.resources import allocated_cpus
from funasr_recipe.training import (avg_checkpoint_name, check_deepspeed_config, check_init,
                                    load_train_conf, mark_complete, overrides,
                                    recover_torn_checkpoint, run_ddp, run_funasr_train,
                                    section_settings, set_aside_other_run, stage_changes,
                                    stage_signature, worker_argv, write_chain)
from funasr_recipe.training import BUDGET_OPT

log = logging.getLogger("train")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="paraformer", help="model family")
    ap.add_argument("--conf", type=Path, required=True, help="train config of the family")
    ap.add_argument("--section", required=True, help="'pretrain' or a stage name")
    ap.add_argument("--model-dir", type=Path, required=True,
                    help="model dir giving config, tokens and frontend files (++model=)")
    ap.add_argument("--init", type=Path, default=None,
                    help="checkpoint to start from (default: MODEL_DIR/model.pt)")
    ap.add_argument("--train", type=Path, required=True,
                    help="training jsonl, or a list of its shards (X.list of make_jsonl.py "
                         "--shards K: dataset_conf.data_split_num becomes K)")
    ap.add_argument("--valid", type=Path, required=True,
                    help="validation jsonl: selects and averages checkpoints")
    ap.add_argument("--extra-valid", action="append", default=[], metavar="NAME=JSONL",
                    help="more validation sets, only reported (repeatable)")
    ap.add_argument("--out", type=Path, required=True, help="output dir")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ...")
    ap.add_argument("--threads", type=int, default=allocated_cpus(),
                    help="CPU threads for torch (default: the job's CPU allocation: "
                         "SLURM_CPUS_PER_TASK, NSLOTS, else the CPUs it may use, here "
                         "%(default)s)")
    ap.add_argument("--nproc", type=int, default=1,
                    help="training processes (DDP under torchrun): one per GPU with --device "
                         "cuda; on CPUs they run over gloo")
    ap.add_argument("--num-nodes", type=int, default=1,
                    help="nodes of a Slurm allocation to train on, --nproc processes each "
                         "(srun starts one torchrun per node; c10d rendezvous on the first)")
    ap.add_argument("--launcher", choices=("auto", "standalone", "srun"), default="auto",
                    help="how the processes start: torchrun --standalone on this machine, or "
                         "srun + torchrun per node of the Slurm job (auto: srun when "
                         "--num-nodes > 1)")
    ap.add_argument("--deepspeed", type=Path, default=None, metavar="JSON",
                    help="train with DeepSpeed (ZeRO stage 1 or 2, precision: this file, "
                         "e.g. conf/deepspeed/zero2_bf16.json)")
    ap.add_argument("--plan", type=Path, default=None,
                    help="the stage plan (conf/stages.yaml): the stage's forgetting budget "
                         "(general_budget, on_over_budget) chooses the epochs to average "
                         "within it, from OUT/metrics.tsv (needs --extra-valid general=...)")
    ap.add_argument("--worker-report", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--set", action="append", default=[], metavar="[SECTION:]KEY=VALUE",
                    help="extra funasr override for this run only (repeatable; with "
                         "SECTION: only when --section is SECTION, e.g. "
                         "pretrain:train_conf.max_epoch=12)")
    return ap


def body(args) -> int:
    model_dir = check_model_dir(args.model_dir, args.family)
    init = check_init(args.init if args.init else model_dir / "model.pt")
    for p in (args.train, args.valid):
        if not p.is_file():
            raise DataError(f"{p}: jsonl not found (run the jsonl stage first)")
    # a list of shards (make_jsonl.py --shards): funasr reads one a slice
    shards = read_shard_list(args.train) if args.train.suffix == ".list" else []
    extra = {}
    for item in args.extra_valid:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise DataError(f"--extra-valid {item}: expected NAME=EXISTING_JSONL")
        extra[name] = str(Path(path).resolve())
    conf = load_train_conf(args.conf)
    settings = section_settings(conf, args.section, args.conf)
    # the model dir's known config fixes (announced), and Nano's audio slot count
    settings = training_overrides(model_dir, args.family, settings)
    sets = parse_overrides(args.set, args.section, ["pretrain", *conf["stages"]])
    settings.update(sets)
    # prompt.* keys (nano hotword lists) shape the jsonl (make_jsonl.py --section), not
    # funasr's trainer: the jsonl's content is in the stage's signature
    settings = {k: v for k, v in settings.items() if not k.startswith("prompt.")}
    if shards and SPLIT_KEY not in sets:
        settings[SPLIT_KEY] = len(shards)  # one slice a shard, unless --set says otherwise
    checkpoint = avg_checkpoint_name(settings)
    budget, on_over = stage_budget(args.plan, args.section) if args.plan else (None, "")
    if budget is not None and "general" not in extra:
        raise DataError(f"{args.plan}: {args.section} has a general_budget, which needs the "
                        f"general valid set: pass --extra-valid general=JSONL")
    out = args.out.resolve()
    funasr_args = [
        f"++model={model_dir}", f"++init_param={init}",
        f"++train_data_set_list={args.train.resolve()}",
        f"++valid_data_set_list={args.valid.resolve()}",
        f"++output_dir={out}", f"++device={args.device}",
        f"++ncpu={max(1, args.threads // max(1, args.nproc))}",
        "++disable_update=true", *overrides(settings),
        "hydra.output_subdir=null", f"hydra.run.dir={out}",
    ]
    deepspeed = args.deepspeed is not None
    if deepspeed:
        funasr_args += ["++use_deepspeed=true",
                        f"++deepspeed_config={check_deepspeed_config(args.deepspeed)}"]
    if args.num_nodes < 1 or args.nproc < 1:
        raise DataError("--num-nodes and --nproc must be at least 1")
    if args.nproc * args.num_nodes > 1 or deepspeed:
        funasr_args.append("++backend=" + ("nccl" if args.device.startswith("cuda") else "gloo"))
    slots = (use_low_frame_rate(inspect_model_dir(model_dir, "nano").config, settings)
             if args.family == "nano" else None)
    if args.worker_report is not None:  # one rank of a DDP job started below
        report = run_funasr_train(funasr_args, init, extra, deepspeed, nano_slots=slots)
        if int(os.environ.get("RANK", "0")) == 0:
            args.worker_report.write_text(json.dumps(report))
        return 0
    budget_opts = [] if budget is None else [f"{BUDGET_OPT}general_budget={budget}",
                                             f"{BUDGET_OPT}on_over_budget={on_over}"]
    signature = stage_signature(model_dir, init, args.train, args.valid,
                                funasr_args + budget_opts, extra.values(), shards)
    chosen = checkpoint if budget is None else BUDGET_CHECKPOINT
    why = stage_changes(out, signature, chosen)
    if not why:
        log.info("%s: complete for the same inputs, skipped", out)
        return 0
    if out.is_dir():
        log.info("%s: to be (re)done: %s", out, "; ".join(why[:3]))
    set_aside_other_run(out, signature)
    recovered = recover_torn_checkpoint(out)
    if recovered:
        log.warning("torn checkpoint: %s", recovered)
    if (out / "model.pt").exists():
        log.info("%s/model.pt exists: funasr resumes from it", out)
    log.info("funasr-train %s", " ".join(funasr_args))
    launcher = args.launcher if args.launcher != "auto" else (
        "srun" if args.num_nodes > 1 else "standalone")
    if args.nproc > 1 or deepspeed or launcher == "srun":  # DeepSpeed wants torchrun's env
        report = run_ddp(Path(__file__), args.argv, out, args.nproc, args.num_nodes, launcher,
                         args.threads)
    else:
        report = run_funasr_train(funasr_args, init, extra, nano_slots=slots)
    if not (out / checkpoint).is_file():
        raise DataError(f"{out / checkpoint}: funasr did not write the averaged checkpoint; "
                        f"see the log above")
    if args.family == "nano":  # the LLM must be in the checkpoint the next stage reads
        from funasr_recipe.nano import check_checkpoint_keys
        check_checkpoint_keys(out / checkpoint, out / "config.yaml")
        log.info("%s: encoder, adaptor and every LLM weight present", out / checkpoint)
    if budget is not None:
        choice = apply_budget(out, budget, on_over,
                              int(settings.get("train_conf.avg_nbest_model", 10)),
                              str(settings.get("train_conf.avg_keep_nbest_models_type", "acc")),
                              init=init)
        for line in budget_lines(choice):
            log.info("%s", line)
    write_chain(out, report, chosen)
    final = out / "final.pt"
    if final.is_symlink() or final.exists():
        final.unlink()
    final.symlink_to(chosen)
    mark_complete(out, signature, chosen)
    log.info("%s: done; chosen checkpoint %s", out, final)
    return 0


def main(argv=None) -> int:
    # a DDP rank started by run_ddp() gets the arguments through a file
    argv = worker_argv(sys.argv[1:] if argv is None else argv)

    def body_with_argv(args) -> int:
        args.argv = argv
        return body(args)
    return cli.run(body_with_argv, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
