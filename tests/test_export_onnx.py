"""Stage 8 for Paraformer: ONNX export, decoding through funasr-onnx and sherpa-onnx,
and the parity table that must catch an export that decodes differently.

The twin is untrained: its hypotheses are arbitrary token strings with blanks and
eos in the middle, the hardest case for the runtimes' own decoding rules, so
parity here means the export reproduces the PyTorch decode token for token.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from funasr_recipe.datadir import Utt, load_datadir, write_datadir
from funasr_recipe.decoding import Item
from funasr_recipe.engines import run_engine
from funasr_recipe.export_onnx import ONNX_FILES, compact_logits, export_paraformer_onnx
from funasr_recipe.errors import DataError
from funasr_recipe.jsonl import paraformer_lines
from funasr_recipe.parity import (BEGIN, END, ParityRow, Thresholds, identical_keys, judge,
                                  markdown, update_results, write_run)
from funasr_recipe.twin_paraformer import load_arch, make_paraformer_twin
from helpers import ROOT, run_tool, tone

TEXTS = ["你好", "世界", "你好世界", "好"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    utts = []
    for i in range(10):
        wav = d / "wav" / f"s-{i:02d}.wav"
        sec = 0.7 + 0.23 * i
        tone(wav, sec, 110 + 37 * i, i, noise=0.05)
        utts.append(Utt(f"s-{i:02d}", "s", str(wav), TEXTS[i % 4], sec))
    write_datadir(d / "data" / "test", utts)
    jsonl = d / "train.jsonl"
    jsonl.write_text("".join(x + "\n" for x in paraformer_lines(d / "data" / "test")),
                     encoding="utf-8")
    twin = make_paraformer_twin(d / "twin", list("你好世界") + ["ok"], jsonl,
                                load_arch(ROOT / "conf" / "paraformer" / "twin.yaml"), seed=3)
    r = run_tool("export_onnx.py", "--model-dir", twin, "--out", d / "export" / "onnx")
    assert r.returncode == 0, r.stderr[-3000:]
    items = [Item(u.key, u.wav, u.dur) for u in load_datadir(d / "data" / "test")]
    ref = run_engine("pytorch", twin, items, batch_size=4)
    write_run(d / "export" / "decode_pytorch_fp32" / "test", ref.hyps, {
        "engine": "pytorch", "precision": "fp32", "rtf": ref.rtf, "threads": 1})
    return {"dir": d, "twin": twin, "onnx": d / "export" / "onnx", "items": items,
            "ref": ref.hyps}


@pytest.mark.slow
def test_runtime_layout_and_sherpa_metadata(setup):
    import onnx

    onnx_dir = setup["onnx"]
    for name in ("model.onnx", "model_quant.onnx", "config.yaml", "am.mvn", "tokens.json",
                 "tokens.txt", "export.json"):
        assert (onnx_dir / name).is_file(), name
    config = yaml.safe_load((onnx_dir / "config.yaml").read_text(encoding="utf-8"))
    # funasr-onnx passes am.mvn itself (a cmvn_file here is a TypeError) and dithers by default
    assert "cmvn_file" not in config["frontend_conf"] and config["frontend_conf"]["dither"] == 0.0
    tokens = json.loads((onnx_dir / "tokens.json").read_text(encoding="utf-8"))
    lines = (onnx_dir / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [f"{t} {i}" for i, t in enumerate(tokens)]
    for name in ONNX_FILES.values():
        meta = {p.key: p.value for p in onnx.load(str(onnx_dir / name)).metadata_props}
        assert meta["vocab_size"] == str(len(tokens))
        assert (meta["lfr_window_size"], meta["lfr_window_shift"]) == ("7", "6")
        assert len(meta["neg_mean"].split(",")) == len(meta["inv_stddev"].split(",")) == 560
    # funasr-onnx reads the twin's config (no "multiple values for cmvn_file")
    from funasr_onnx import Paraformer
    Paraformer(str(onnx_dir), quantize=True)


@pytest.mark.slow
def test_rerun_skips_and_bad_out_path_is_refused(setup, tmp_path):
    r = run_tool("export_onnx.py", "--model-dir", setup["twin"], "--out", setup["onnx"])
    assert r.returncode == 0 and "already exported from the same model, skipped" in r.stderr
    r = run_tool("export_onnx.py", "--model-dir", setup["twin"],
                 "--out", tmp_path / "x.onnx" / "out")
    assert r.returncode == 1 and "containing '.onnx'" in r.stderr
    r = run_tool("export_onnx.py", "--model-dir", tmp_path, "--out", tmp_path / "o")
    assert r.returncode == 1 and "missing config.yaml" in r.stderr


@pytest.mark.parametrize("engine", ["funasr-onnx", "sherpa-onnx"])
def test_fp32_engines_decode_exactly_as_pytorch_batched_or_not(setup, engine):
    ref = setup["ref"]
    assert any(ref.values())  # the twin does output tokens
    for batch in (4, 1):
        run = run_engine(engine, setup["onnx"], setup["items"], "fp32", 1, batch)
        assert identical_keys(ref, run.hyps) == list(ref), (batch, run.hyps, ref)


def test_compacted_logits_give_pytorch_tokens_under_every_runtime_rule():
    blank, sos, eos, bias = 0, 1, 2, 1
    # ids per position; the second utterance has token_num 4 and an eos and a blank inside
    ids = torch.tensor([[5, 6, 7, 2, 3], [2, 4, 0, 8, 9]])
    token_num = torch.tensor([5, 4], dtype=torch.int32)
    logits = torch.nn.functional.one_hot(ids, 10).float() * 5 - 5
    out, n = compact_logits(logits, token_num, (blank, sos, eos), eos, bias)

    def pytorch_rule(lg, tn):
        return [[t for t in lg[i, :tn[i]].argmax(-1).tolist() if t not in (0, 1, 2)]
                for i in range(len(tn))]

    def sherpa_rule(lg):
        res = []
        for row in lg.argmax(-1).tolist():
            res.append(row[:row.index(eos)] if eos in row else row)
        return res

    def funasr_onnx_rule(lg, tn):
        return [[t for t in lg[i].argmax(-1).tolist() if t not in (0, 2)][:int(tn[i]) - bias]
                for i in range(len(tn))]

    want = pytorch_rule(logits, token_num)
    assert want == [[5, 6, 7, 3], [4, 8]]
    assert sherpa_rule(out) == want
    assert funasr_onnx_rule(out, n) == want
    assert pytorch_rule(out, n - bias) == want
    # without compaction both runtimes disagree with PyTorch on this input
    assert sherpa_rule(logits) != want and funasr_onnx_rule(logits, token_num) != want


def perturbed_copy(src: Path, dst: Path) -> Path:
    """The export with one weight matrix of model.onnx changed: the decoder's output
    projection (the one 2-D weight with the vocabulary as a dimension), 10% of its
    columns' signs flipped."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(src, dst)
    vocab = len(json.loads((src / "tokens.json").read_text(encoding="utf-8")))
    model = onnx.load(str(dst / "model.onnx"))
    target = next(i for i in model.graph.initializer if len(i.dims) == 2 and vocab in i.dims)
    arr = numpy_helper.to_array(target).copy()
    axis = list(target.dims).index(vocab)
    idx = np.arange(0, vocab, 10)
    if axis == 1:
        arr[:, idx] *= -1
    else:
        arr[idx, :] *= -1
    target.CopyFrom(numpy_helper.from_array(arr, target.name))
    onnx.save(model, str(dst / "model.onnx"))
    return dst


def test_parity_table_passes_the_export_and_fails_a_perturbed_one(setup, tmp_path):
    d = setup["dir"]
    data = d / "data"
    for engine in ("funasr-onnx", "sherpa-onnx"):
        for precision in ("fp32", "int8"):
            run = run_engine(engine, setup["onnx"], setup["items"], precision, 1, 4)
            write_run(d / "export" / f"decode_{engine}_{precision}" / "test", run.hyps,
                      {"engine": engine, "precision": precision, "rtf": run.rtf, "threads": 1})
    conf = tmp_path / "export.yaml"
    conf.write_text((ROOT / "conf" / "export.yaml").read_text(encoding="utf-8"))
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\n| model | x |\n", encoding="utf-8")
    args = ["--conf", conf, "--family", "paraformer", "--export", d / "export", "--reference",
            d / "export" / "decode_pytorch_fp32", "--data", data, "--sets", "test",
            "--results", results, "--strict"]
    r = run_tool("export_parity.py", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    md = results.read_text(encoding="utf-8")
    assert md.startswith("# results\n") and md.count(BEGIN) == 1 and md.count(END) == 1
    assert "| test | sherpa-onnx | fp32 | 100.0% (10/10) |" in md
    tsv = (d / "export" / "parity.tsv").read_text(encoding="utf-8").splitlines()
    assert len(tsv) == 1 + 5 and all(line.endswith("\tpass") for line in tsv[1:])

    bad = perturbed_copy(setup["onnx"], tmp_path / "bad")
    run = run_engine("sherpa-onnx", bad, setup["items"], "fp32", 1, 4)
    assert identical_keys(setup["ref"], run.hyps) != list(setup["ref"])
    write_run(d / "export" / "decode_sherpa-onnx_fp32" / "test", run.hyps,
              {"engine": "sherpa-onnx", "precision": "fp32", "rtf": run.rtf, "threads": 1})
    r = run_tool("export_parity.py", *args)
    assert r.returncode == 1 and "fail the parity thresholds" in r.stderr
    md = results.read_text(encoding="utf-8")
    assert md.count(BEGIN) == 1  # replaced, not appended
    assert "| test | sherpa-onnx | fp32 |" in md and "FAIL: identical" in md


def test_judge_thresholds():
    th = Thresholds(99.0, 0.2, 1.0)
    rows = [ParityRow("s", "e", "fp32", 100, 100, 100.0, 10.0, 10, 100, 10.0, 0.1, 1),
            ParityRow("s", "e", "int8", 100, 90, 90.0, 10.9, 11, 100, 10.0, 0.1, 1),
            ParityRow("s", "f", "fp32", 100, 98, 98.0, 10.3, 10, 100, 10.0, 0.1, 1),
            ParityRow("s", "f", "int8", 100, 90, 90.0, 11.5, 11, 100, 10.0, 0.1, 1)]
    v = [r.verdict for r in judge(rows, th)]
    assert v[0] == "pass" and v[1] == "pass"
    assert v[2].startswith("FAIL") and "identical 98.0%" in v[2] and "|Δerror| 0.30" in v[2]
    assert v[3].startswith("FAIL") and "1.20 > 1" in v[3]
    assert "| s | f | fp32 | 98.0% (98/100)" in markdown(rows, th, "m", "ref")


def test_update_results_keeps_the_rest(tmp_path):
    p = tmp_path / "R.md"
    p.write_text("head\n", encoding="utf-8")
    update_results(p, f"{BEGIN}\nA\n{END}\n")
    update_results(p, f"{BEGIN}\nB\n{END}\n")
    assert p.read_text(encoding="utf-8") == f"head\n\n{BEGIN}\nB\n{END}\n"


@pytest.mark.slow
def test_engine_decode_cli_writes_text_and_timing(setup, tmp_path):
    out = tmp_path / "dec"
    r = run_tool("engine_decode.py", "--engine", "sherpa-onnx", "--precision", "int8",
                 "--model", setup["onnx"], "--data-dir", setup["dir"] / "data" / "test",
                 "--out", out, "--conf", ROOT / "conf" / "export.yaml")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((out / "run.json").read_text())
    assert info["engine"] == "sherpa-onnx" and info["precision"] == "int8"
    assert info["utterances"] == 10 and info["rtf"] > 0 and info["threads"] == 1
    assert len((out / "text").read_text(encoding="utf-8").splitlines()) == 10
    r = run_tool("engine_decode.py", "--engine", "funasr-onnx", "--model", tmp_path,
                 "--data-dir", setup["dir"] / "data" / "test", "--out", out)
    assert r.returncode == 1 and "model.onnx: not found" in r.stderr


def test_gpu_check_without_a_gpu_says_so_and_fails(tmp_path):
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}  # no nvidia-smi on it
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True,
                       text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert "no NVIDIA GPU" in r.stderr and "vLLM needs one" in r.stderr


def test_export_refuses_a_nano_dir(tmp_path):
    with pytest.raises(DataError, match="incomplete for paraformer"):
        export_paraformer_onnx(tmp_path, tmp_path / "out")
