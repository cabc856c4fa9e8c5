"""A forgetting budget for a stage's checkpoint choice.

funasr ranks a stage's epochs on the domain valid set only and averages the
best ``avg_nbest_model`` of them. With a budget (``general_budget`` of a stage
in ``conf/stages.yaml``, e.g. 0.05) only epochs whose general valid loss is at
most that share above the stage's starting point (the general valid loss
before the first step, ``epoch 0`` in ``OUT/metrics.tsv``) are eligible, and
the best ``avg_nbest_model`` of those on the domain valid set (ranked as funasr
ranks them, ``avg_keep_nbest_models_type``) are averaged as funasr averages:
the mean of each float tensor, the sum of integer ones
(``funasr/train_utils/average_nbest_models.py``). When no epoch is within the
budget, ``on_over_budget`` says what happens:

``start``          the stage's starting point (its initial checkpoint, in the stage's
                   own layout: a LoRA stage's adapters at zero, so merging them
                   changes nothing): the stage passes its input on, said so
``unconstrained``  funasr's own choice (the best on the domain valid set), said so
``best_general``   the ``avg_nbest_model`` epochs with the lowest general valid loss
``error``          stop, naming the numbers

The choice, every epoch's numbers and the reason go to ``OUT/budget.json``
(RESULTS.md states them); the averaged model is ``OUT/model.pt.budget``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .config import load_yaml
from .errors import DataError, RunError
from .metrics import MAIN_SET, read_metrics

ON_OVER_BUDGET = ("start", "unconstrained", "best_general", "error")
CHECKPOINT = "model.pt.budget"
REPORT = "budget.json"


def stage_budget(plan: str | Path, stage: str) -> tuple[float | None, str]:
    """``(general_budget, on_over_budget)`` of ``stage`` in the stage plan
    (``None``: no budget, the stage is not in the plan or sets none)."""
    cfg = load_yaml(plan)
    on_over = cfg.get("on_over_budget", "unconstrained")
    if on_over not in ON_OVER_BUDGET:
        raise DataError(f"{plan}: on_over_budget: {on_over!r}: use one of "
                        f"{', '.join(ON_OVER_BUDGET)}")
    for i, st in enumerate(cfg.get("stages") or []):
        if isinstance(st, dict) and str(st.get("name")) == stage:
            b = st.get("general_budget")
            if b is None:
                return None, on_over
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) \
                    or b < 0:
                raise DataError(f"{plan}: stages[{i}] ({stage}): general_budget: {b!r}: a "
                                f"share (0.05 = general valid loss at most 5% above the "
                                f"stage's start), or null for none")
            return float(b), on_over
    return None, on_over


def _epoch_table(rows, general: str) -> tuple[float | None, list[dict[str, Any]]]:
    start = None
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r.set == general and r.epoch == 0:
            start = r.loss
        if r.epoch <= 0 or r.set not in (MAIN_SET, general):
            continue
        if r.set == MAIN_SET and r.checkpoint != f"model.pt.ep{r.epoch}":
            continue  # a validation within an epoch (its checkpoint is not ranked here)
        e = by_epoch.setdefault(r.epoch, {"epoch": r.epoch, "checkpoint": f"model.pt.ep{r.epoch}"})
        if r.set == MAIN_SET:
            e["domain_loss"], e["domain_acc"] = r.loss, r.acc
        else:
            e["general_loss"] = r.loss
    return start, [by_epoch[k] for k in sorted(by_epoch)]


def choose(rows, *, budget: float, n: int, rank_by: str = "loss", on_over: str = "unconstrained",
           available: set[str] | None = None, general: str = "general") -> dict[str, Any]:
    """Which epochs to average (see module doc) from a stage's metrics rows."""
    if on_over not in ON_OVER_BUDGET:
        raise DataError(f"on_over_budget {on_over!r}: use one of {', '.join(ON_OVER_BUDGET)}")
    start, table = _epoch_table(rows, general)
    if start is None or not math.isfinite(start):
        raise RunError(f"no general valid loss before the first epoch (set '{general}', epoch "
                       f"0 in metrics.tsv) to measure the forgetting budget from: train the "
                       f"stage with --extra-valid {general}=JSONL from its start")
    limit = start * (1 + budget)
    key = "domain_acc" if rank_by == "acc" else "domain_loss"
    sign = -1 if rank_by == "acc" else 1
    cands = []
    for e in table:
        e["on_disk"] = available is None or e["checkpoint"] in available
        g = e.get("general_loss")
        e["general_rise"] = None if g is None else g / start - 1
        e["within"] = g is not None and g <= limit
        if e["on_disk"] and e.get(key) is not None and math.isfinite(e[key]) and g is not None:
            cands.append(e)
    if not cands:
        raise RunError(f"no epoch with both a domain ({key}) and a general valid loss and a "
                       f"checkpoint on disk: nothing to choose from")

    def best(es, k=key, s=sign):
        return [e["epoch"] for e in sorted(es, key=lambda e: (s * e[k], e["epoch"]))[:n]]
    unconstrained = best(cands)
    within = [e for e in cands if e["within"]]
    fallback = None
    if within:
        chosen = best(within)
        reason = (f"the {len(chosen)} best of {len(within)} epoch(s) within the budget "
                  f"(general valid loss <= {limit:.4f} = {start:.4f} x {1 + budget:g}) on the "
                  f"domain valid {rank_by}")
        if chosen == unconstrained:
            reason += "; the same as without the budget"
    elif on_over == "error":
        worst = min(e["general_loss"] for e in cands)
        raise RunError(f"no epoch keeps the general valid loss within the budget "
                       f"{budget:g} (at most {limit:.4f}; start {start:.4f}, lowest after an "
                       f"epoch {worst:.4f}); on_over_budget: error. Raise general_budget, "
                       f"mix more general data into the stage (conf/stages.yaml), or lower "
                       f"its learning rate")
    elif on_over == "start":
        chosen, fallback = [], on_over
        reason = (f"no epoch within the budget (general valid loss <= {limit:.4f}): the "
                  f"stage's starting point, as if it had not trained (on_over_budget: start)")
    elif on_over == "best_general":
        chosen, fallback = best(cands, "general_loss", 1), on_over
        reason = (f"no epoch within the budget (general valid loss <= {limit:.4f}): the "
                  f"{len(chosen)} with the lowest general valid loss (on_over_budget: "
                  f"best_general)")
    else:
        chosen, fallback = unconstrained, on_over
        reason = (f"no epoch within the budget (general valid loss <= {limit:.4f}): the "
                  f"{len(chosen)} best on the domain valid {rank_by}, as without a budget "
                  f"(on_over_budget: unconstrained)")
    return {"budget": budget, "general_set": general, "start_general_loss": start,
            "limit": limit, "rank_by": rank_by, "avg_nbest_model": n, "on_over_budget": on_over,
            "chosen": chosen, "unconstrained": unconstrained, "fallback": fallback,
            "reason": reason, "epochs": table}


def checkpoint_file(out: Path, name: str) -> Path:
    """An epoch checkpoint's weights file (funasr's DeepSpeed checkpoints are dirs)."""
    p = Path(out) / name
    return p / "mp_rank_00_model_states.pt" if p.is_dir() else p


def average(paths: list[Path], dest: Path) -> Path:
    """funasr's average of checkpoints (``average_checkpoints``), of the given files."""
    import torch

    from .checkpoint import load_state

    states = [load_state(p) for p in paths]
    avg = {}
    for k in states[0]:
        ts = [s[k].cpu() for s in states]
        avg[k] = sum(ts) if str(ts[0].dtype).startswith("torch.int") else \
            torch.mean(torch.stack(ts), dim=0)
    with atomic_write(dest, "wb") as f:
        torch.save({"state_dict": avg}, f)
    return dest


def start_state(template: Path, init: Path, dest: Path) -> Path:
    """The stage's starting point as a checkpoint of the stage's own layout: every
    weight of ``template`` (one of the stage's epoch checkpoints) taken from the
    initial checkpoint ``init``, but a LoRA layer's ``lora_B``, which is zero at the
    start as funasr initialises it (``lora_A`` is then inert, and kept)."""
    import torch

    from .checkpoint import load_state

    tmpl, start = load_state(template), load_state(init)
    state, missing = {}, []
    for k, v in tmpl.items():
        if k in start:
            state[k] = start[k].to(v.dtype) if hasattr(v, "dtype") else start[k]
        elif k.endswith(".lora_B"):
            state[k] = torch.zeros_like(v)
        elif k.endswith(".lora_A"):
            state[k] = v
        else:
            missing.append(k)
    if missing:
        raise RunError(f"{init}: no {missing[0]} (and {len(missing) - 1} more of the stage's "
                       f"weights): cannot restore the stage's start from it")
    with atomic_write(dest, "wb") as f:
        torch.save({"state_dict": state}, f)
    return dest


def apply_budget(out: Path, budget: float, on_over: str, n: int, rank_by: str,
                 general: str = "general", init: Path | None = None) -> dict[str, Any]:
    """Choose (:func:`choose`) from ``out/metrics.tsv``, average the chosen
    epochs into ``out/model.pt.budget`` (with none chosen, ``on_over_budget: start``:
    the stage's initial checkpoint ``init``, :func:`start_state`) and record it all
    in ``out/budget.json``."""
    out = Path(out)
    available = {p.name for p in out.glob("model.pt.ep*") if p.name.count(".") == 2}
    report = choose(read_metrics(out / "metrics.tsv"), budget=budget, n=n, rank_by=rank_by,
                    on_over=on_over, available=available, general=general)
    if report["chosen"]:
        # in funasr's order (its ranking sorts by the metric, highest first), so that the
        # same epochs give the very same floats as its model.pt.avgN
        key = "domain_acc" if rank_by == "acc" else "domain_loss"
        metric = {e["epoch"]: e[key] for e in report["epochs"]}
        order = sorted(sorted(report["chosen"]), key=lambda e: metric[e], reverse=True)
        average([checkpoint_file(out, f"model.pt.ep{e}") for e in order], out / CHECKPOINT)
    else:
        if init is None:
            raise RunError("on_over_budget: start needs the stage's initial checkpoint")
        last = max(e["epoch"] for e in report["epochs"] if e.get("on_disk", True))
        start_state(checkpoint_file(out, f"model.pt.ep{last}"), Path(init), out / CHECKPOINT)
        report["start_checkpoint"] = str(Path(init).resolve())
    report["checkpoint"] = CHECKPOINT
    with atomic_write(out / REPORT) as f:
        json.dump(report, f, indent=1)
    return report


def budget_lines(report: dict[str, Any]) -> list[str]:
    """The choice in a few lines (the stage log)."""
    rows = [f"forgetting budget {report['budget']:g}: general valid loss at most "
            f"{report['limit']:.4f} (start {report['start_general_loss']:.4f})"]
    for e in report["epochs"]:
        rise = e.get("general_rise")
        rows.append(f"  epoch {e['epoch']}: domain loss {e.get('domain_loss')}, general loss "
                    f"{e.get('general_loss')} ({'' if rise is None else f'{rise:+.1%}'}), "
                    f"{'within' if e['within'] else 'over'}"
                    f"{'' if e.get('on_disk', True) else ', checkpoint not kept'}")
    rows.append(f"chosen epochs {report['chosen'] or 'none: the start'} (without the budget: "
                f"{report['unconstrained']}): {report['reason']}")
    return rows


__all__ = ["ON_OVER_BUDGET", "CHECKPOINT", "REPORT", "stage_budget", "choose",
           "checkpoint_file", "average", "start_state", "apply_budget", "budget_lines"]
