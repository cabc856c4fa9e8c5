"""bench/train_throughput.py on the CPU, twin size: what it measures, not how fast.

One small run of both families (module fixture) through the recipe's venv
python, as bench/gpu_check.sh runs it on a GPU: a row per family, positive
audio and throughput, Paraformer trains every weight, Nano (stage 1) only its
audio adaptor, and the step really updates the trainable weights and leaves
the frozen ones alone. --device cuda without CUDA is a one-line error."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from funasr_recipe.training import load_train_conf, section_settings

pytestmark = pytest.mark.slow   # builds and trains two twins (about 20 s)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "train_throughput.py"


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tp") / "tp.json"
    r = _bench("--device", "cpu", "--family", "paraformer", "nano", "--size", "twin",
               "--utts", "4", "--batch-size", "2", "--steps", "1", "--warmup", "0",
               "--runs", "1", "--threads", "1", "--json", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    data["stdout"] = r.stdout
    return data


def _row(run: dict, family: str) -> dict:
    rows = [r for r in run["results"] if r["family"] == family]
    assert len(rows) == 1, run["results"]
    return rows[0]


def test_a_row_per_family_with_audio_and_throughput(run) -> None:
    assert [(r["family"], r["size"]) for r in run["results"]] == [("paraformer", "twin"),
                                                                   ("nano", "twin")]
    for r in run["results"]:
        assert r["utterances"] == 4 and r["batches"] == 2 and r["steps"] == 1
        assert 3.0 * 2 <= r["audio_s_per_step"] <= 8.0 * 2       # two 3-8 s utterances
        assert r["audio_h_per_h"] > 0 and r["s_per_step"] > 0 and r["peak_memory_gb"] > 0
        assert r["audio_h_per_h"] == pytest.approx(r["audio_s_per_run"] / r["wall_s"][0], rel=0.02)
        assert r["skipped_steps"] == 0
        assert all(x == x for x in r["losses"])                  # finite, not nan
    # the same markdown table on stdout and in the json
    lines = run["table"].splitlines()
    assert lines[0].startswith("| family | size |") and len(lines) == 4
    assert lines[2].startswith("| paraformer | twin |") and lines[3].startswith("| nano | twin |")
    assert run["table"] in run["stdout"]


def test_paraformer_trains_every_parameter(run) -> None:
    r = _row(run, "paraformer")
    assert r["trainable_parameters"] == r["parameters"] > 0
    u = r["update_check"]
    assert u["frozen_tensors"] == 0 and u["frozen_max_abs_delta"] is None
    assert u["trainable_max_abs_delta"] > 0
    assert u["trainable_tensors_changed"] == u["trainable_tensors"] > 0


def test_nano_stage1_trains_the_adaptor_only(run) -> None:
    """As conf/nano/train.yaml's stage 1 says: encoder and LLM frozen, adaptor trained."""
    stage = section_settings(load_train_conf(ROOT / "conf" / "nano" / "train.yaml"), "stage1")
    assert stage["audio_encoder_conf.freeze"] and stage["llm_conf.freeze"]
    assert not stage["audio_adaptor_conf.freeze"]
    r = _row(run, "nano")
    by_module = r["parameters_by_module"]
    adaptor = by_module["audio_adaptor"][1]
    assert 0 < r["trainable_parameters"] == adaptor < r["parameters"]
    assert by_module["audio_encoder"][0] == 0 and by_module["llm"][0] == 0
    assert sum(total for _, total in by_module.values()) == r["parameters"]
    u = r["update_check"]
    assert u["trainable_max_abs_delta"] > 0
    assert u["trainable_tensors_changed"] == u["trainable_tensors"] > 0
    assert u["frozen_tensors"] > 0 and u["frozen_max_abs_delta"] == 0.0


def test_cuda_without_a_gpu_is_a_one_line_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = _bench("--device", "cuda", "--size", "twin")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("ERROR: --device cuda: torch sees no CUDA device")


def test_settings_become_automodel_keywords(monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))      # the script puts bench/ on it
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    tt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tt)
    assert tt.nest({"llm_conf.freeze": True, "llm_conf.lora_conf.r": 8, "specaug": None,
                    "audio_adaptor_conf.freeze": False}) == {
        "llm_conf": {"freeze": True, "lora_conf": {"r": 8}}, "specaug": None,
        "audio_adaptor_conf": {"freeze": False}}
