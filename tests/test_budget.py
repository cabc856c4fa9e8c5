"""The forgetting budget (funasr_recipe/budget.py): which epochs are averaged when
the general valid loss may rise at most a given share above the stage's start."""

from __future__ import annotations

import json

import pytest
import torch

from funasr_recipe.budget import ON_OVER_BUDGET, apply_budget, average, choose, stage_budget
from funasr_recipe.errors import DataError, RunError
from funasr_recipe.metrics import MetricsFile, Row, read_metrics

DOMAIN = [1.5, 1.2, 1.0, 0.9, 0.8]      # keeps improving on the domain
GENERAL = [2.05, 2.08, 2.2, 2.3, 2.4]   # while the general set is forgotten


def rows(general=GENERAL, domain=DOMAIN, start=2.0):
    out = [Row(0, 0, "valid", 1.9, 0.1), Row(0, 0, "general", start, 0.1)]
    for e, (d, g) in enumerate(zip(domain, general), 1):
        out += [Row(4 * e, e, "train", 1.0, 0.5, 1.0, 0.5, 1e-3),
                Row(4 * e, e, "valid", d, 0.5, checkpoint=f"model.pt.ep{e}"),
                Row(4 * e, e, "general", g, 0.4, checkpoint=f"model.pt.ep{e}")]
    return out


def test_best_domain_epochs_over_budget_are_passed_over():
    c = choose(rows(), budget=0.05, n=2)
    assert c["unconstrained"] == [5, 4]            # the domain's best forget the most
    assert c["chosen"] == [2, 1] and c["fallback"] is None
    assert c["limit"] == pytest.approx(2.1)
    assert [e["within"] for e in c["epochs"]] == [True, True, False, False, False]
    assert "within the budget" in c["reason"]
    # a generous budget changes nothing
    c = choose(rows(), budget=1.0, n=2)
    assert c["chosen"] == c["unconstrained"] == [5, 4] and "same as without" in c["reason"]
    # ranked by accuracy as funasr can be: highest first
    acc = [r if r.set != "valid" or r.epoch == 0 else Row(r.step, r.epoch, "valid", r.loss,
                                                          0.1 * r.epoch, checkpoint=r.checkpoint)
           for r in rows()]
    assert choose(acc, budget=0.05, n=1, rank_by="acc")["chosen"] == [2]


def test_a_checkpoint_not_kept_is_not_chosen():
    kept = {f"model.pt.ep{e}" for e in (1, 3, 4, 5)}
    c = choose(rows(), budget=0.05, n=2, available=kept)
    assert c["chosen"] == [1] and c["unconstrained"] == [5, 4]


def test_no_epoch_within_the_budget_follows_the_fallback():
    over = [2.3, 2.2, 2.5, 2.6, 2.7]
    c = choose(rows(over), budget=0.05, n=2, on_over="unconstrained")
    assert c["chosen"] == c["unconstrained"] == [5, 4] and c["fallback"] == "unconstrained"
    assert "no epoch within the budget" in c["reason"]
    c = choose(rows(over), budget=0.05, n=2, on_over="start")
    assert c["chosen"] == [] and c["fallback"] == "start" and "starting point" in c["reason"]
    c = choose(rows(over), budget=0.05, n=2, on_over="best_general")
    assert c["chosen"] == [2, 1] and c["fallback"] == "best_general"
    with pytest.raises(RunError, match=r"no epoch keeps the general valid loss within the "
                                       r"budget 0.05 \(at most 2.1000; start 2.0000, lowest "
                                       r"after an epoch 2.2000\)"):
        choose(rows(over), budget=0.05, n=2, on_over="error")


def test_no_starting_point_is_an_error():
    with pytest.raises(RunError, match="before the first epoch"):
        choose([r for r in rows() if r.epoch > 0], budget=0.05, n=2)


def test_stage_budget_from_the_plan(tmp_path):
    from helpers import ROOT
    for st in ("stage1", "stage2", "stage3"):
        b, on_over = stage_budget(ROOT / "conf" / "stages.yaml", st)
        assert (b is None or b >= 0) and on_over in ON_OVER_BUDGET
    plan = tmp_path / "stages.yaml"
    plan.write_text("on_over_budget: best_general\nstages:\n  - {name: a, general: 1, domain: 1,"
                    " general_budget: 0.1}\n  - {name: b, general: 0, domain: 1}\n")
    assert stage_budget(plan, "a") == (0.1, "best_general")
    assert stage_budget(plan, "b") == (None, "best_general")
    assert stage_budget(plan, "pretrain") == (None, "best_general")
    plan.write_text("stages:\n  - {name: a, general: 1, domain: 1, general_budget: five}\n")
    with pytest.raises(DataError, match=r"stages\.yaml: stages\[0\] \(a\): general_budget: "
                                        r"'five'"):
        stage_budget(plan, "a")
    plan.write_text("on_over_budget: ignore\nstages: []\n")
    with pytest.raises(DataError, match="on_over_budget: 'ignore'"):
        stage_budget(plan, "a")


def fake_stage(d, n_epochs=5):
    d.mkdir(parents=True, exist_ok=True)
    for e in range(1, n_epochs + 1):
        g = torch.Generator().manual_seed(e)
        torch.save({"state_dict": {"w": torch.randn(3, 2, generator=g),
                                   "n": torch.tensor([e], dtype=torch.int64)}, "epoch": e},
                   d / f"model.pt.ep{e}")
    return d


@pytest.mark.slow
def test_average_is_funasrs(tmp_path):
    """The recipe averages the files it chose exactly as funasr averages its own."""
    from funasr.train_utils.average_nbest_models import average_checkpoints
    d = fake_stage(tmp_path / "s")
    torch.save({"avg_keep_nbest_models_type": "loss",
                "val_loss_step_or_epoch": {f"model.pt.ep{e}": v
                                           for e, v in enumerate(DOMAIN, 1)}}, d / "model.pt")
    funasrs = torch.load(average_checkpoints(str(d), 2), weights_only=True)["state_dict"]
    ours = torch.load(average([d / "model.pt.ep5", d / "model.pt.ep4"], d / "ours"),
                      weights_only=True)["state_dict"]
    assert ours.keys() == funasrs.keys()
    assert all(torch.equal(ours[k], funasrs[k]) for k in ours)


def test_apply_budget_writes_the_model_and_the_record(tmp_path):
    d = fake_stage(tmp_path / "s")
    m = MetricsFile(d / "metrics.tsv")
    for r in rows():
        m.append(r)
    assert read_metrics(d / "metrics.tsv") == rows()
    rep = apply_budget(d, 0.05, "unconstrained", 2, "loss")
    assert rep["chosen"] == [2, 1]
    saved = json.loads((d / "budget.json").read_text())
    assert saved["chosen"] == [2, 1] and saved["unconstrained"] == [5, 4]
    state = torch.load(d / "model.pt.budget", weights_only=True)["state_dict"]
    ep = [torch.load(d / f"model.pt.ep{e}", weights_only=True)["state_dict"] for e in (2, 1)]
    assert torch.allclose(state["w"], (ep[0]["w"] + ep[1]["w"]) / 2)


def test_results_states_the_choice(tmp_path):
    from funasr_recipe.results import budget_section
    assert budget_section(tmp_path) == []
    d = fake_stage(tmp_path / "stage3")
    m = MetricsFile(d / "metrics.tsv")
    for r in rows():
        m.append(r)
    apply_budget(d, 0.05, "unconstrained", 2, "loss")
    md = "\n".join(budget_section(tmp_path))
    assert "## Checkpoint choice under the forgetting budget" in md
    assert "| stage3 | 0.05 | 2.0000 -> 2.1000 | 1, 2 | 2, 1 | 5, 4 | the 2 best of 2" in md


def test_over_budget_start_restores_the_stage_start_in_the_stage_layout(tmp_path):
    """on_over_budget: start writes the stage's initial weights in the layout of the
    stage's own checkpoints: a LoRA stage's lora_B at zero, so that merging the adapter
    gives back exactly the starting weights; every other weight from the start."""
    from funasr_recipe.lora import LoraSettings, merge_lora_state
    from funasr_recipe.results import budget_section

    g = torch.Generator().manual_seed(0)
    init = {"enc.w": torch.randn(3, 2, generator=g), "llm.q_proj.weight": torch.randn(4, 4, generator=g)}
    torch.save({"state_dict": init}, tmp_path / "init.pt")
    d = tmp_path / "stage3"
    d.mkdir()
    for e in range(1, 6):   # trained: every weight moved, the adapter non-zero
        torch.save({"state_dict": {"enc.w": init["enc.w"] + e,
                                   "llm.q_proj.weight": init["llm.q_proj.weight"],
                                   "llm.q_proj.lora_A": torch.randn(2, 4, generator=g),
                                   "llm.q_proj.lora_B": torch.randn(4, 2, generator=g)}},
                   d / f"model.pt.ep{e}")
    m = MetricsFile(d / "metrics.tsv")
    for r in rows([2.3, 2.2, 2.5, 2.6, 2.7]):
        m.append(r)
    with pytest.raises(RunError, match="initial checkpoint"):
        apply_budget(d, 0.05, "start", 2, "loss")
    rep = apply_budget(d, 0.05, "start", 2, "loss", init=tmp_path / "init.pt")
    assert rep["chosen"] == [] and rep["start_checkpoint"] == str((tmp_path / "init.pt").resolve())
    state = torch.load(d / "model.pt.budget", weights_only=True)["state_dict"]
    assert set(state) == {"enc.w", "llm.q_proj.weight", "llm.q_proj.lora_A", "llm.q_proj.lora_B"}
    assert torch.equal(state["enc.w"], init["enc.w"])
    assert not state["llm.q_proj.lora_B"].any()
    merged, _ = merge_lora_state(state, LoraSettings(2, 4, 0.0, ("q_proj",)))
    assert torch.equal(merged["llm.q_proj.weight"], init["llm.q_proj.weight"])
    assert "| stage3 | 0.05 | 2.0000 -> 2.1000 | none | the start | 5, 4 |" in \
        "\n".join(budget_section(tmp_path))
    # a start that lacks one of the stage's weights cannot stand in for it
    torch.save({"state_dict": {"enc.w": init["enc.w"]}}, tmp_path / "short.pt")
    with pytest.raises(RunError, match="short.pt: no llm.q_proj.weight"):
        apply_budget(d, 0.05, "start", 2, "loss", init=tmp_path / "short.pt")
